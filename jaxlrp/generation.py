"""Explaining a causal language model's continuation: every generated token, in one call.

A causal LM maps ids ``x_0 … x_{L-1}`` to logits ``f(x)`` of shape ``(batch, L, vocab)``, the
logits at position ``p − 1`` scoring the token at position ``p``. For a prompt of ``P`` tokens
continued by ``G`` tokens ``t_0 … t_{G-1}`` (greedily generated, or given), the explanation of
the continuation is the ``(G, L)`` matrix, ``L = P + G``,

    M[k, j] = R_j( f(x)[0, P + k − 1, t_k] ),   zero for j ≥ P + k (causality),

the LRP relevance of input token ``j`` for the logit of the ``k``-th generated token, all
computed from the full sequence ``x = prompt + continuation``. All rows come from *one* LRP
forward pass (:func:`jaxlrp.lrp`) whose relevance pull-back is ``jax.vmap``-ed over the ``G``
output relevances ``f(x) ⊙ onehot(P + k − 1, t_k)``: one compiled program, the forward shared.
Row ``k`` equals ``jaxlrp.explain`` of that single target on the same sequence.

Any function ``apply_fn(variables, ids)`` giving ``(batch, seq, vocab)`` logits works (a Flax
``module.apply`` of :class:`~jaxlrp.models.gemma3.Gemma3`, or any other causal LM). For
transformers the composites are :func:`~jaxlrp.composites.AttnLRP` (the default) or
:func:`~jaxlrp.composites.CPLRP`.

References:
    R. Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
    Transformers", ICML 2024. A. Ali et al., "XAI for Transformers: Better Explanations through
    Conservative Propagation", ICML 2022.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp import compiled
from jaxlrp import composites as _composites
from jaxlrp.composites import Composite
from jaxlrp.explain import lrp

__all__ = ["ContinuationExplanation", "explain_continuation", "greedy_continuation"]


@dataclasses.dataclass(frozen=True)
class ContinuationExplanation:
    """The relevance of every input token for every generated token (host NumPy arrays).

    Attributes:
        token_ids: ``(L,)`` int32, prompt then continuation.
        prompt_length: ``P``, the number of prompt tokens.
        relevance: ``(G, L)`` float32; row ``k`` explains the logit of ``token_ids[P + k]`` at
            position ``P + k − 1``, and is zero from column ``P + k`` on.
        logits: ``(G,)`` the explained logits (``R_out`` of each row).
        tokens: ``L`` token strings when a ``decode`` function was given, else ``None``.
    """

    token_ids: np.ndarray
    prompt_length: int
    relevance: np.ndarray
    logits: np.ndarray
    tokens: tuple[str, ...] | None = None

    @property
    def generated(self) -> np.ndarray:
        """``(G,)`` the continuation's ids (the explained targets)."""
        return self.token_ids[self.prompt_length :]

    @property
    def next_token(self) -> np.ndarray:
        """``(P,)`` relevance of the prompt tokens for the first generated token."""
        return self.relevance[0, : self.prompt_length]

    def _strings(self) -> tuple[str, ...]:
        return self.tokens if self.tokens is not None else tuple(map(str, self.token_ids))

    def _shown(self, row: int, drop_first: bool) -> np.ndarray:
        """Row ``row`` over the tokens before its target (``<bos>`` zeroed if asked)."""
        shown = self.relevance[row, : self.prompt_length + row].copy()
        if drop_first:
            shown[0] = 0.0
        return shown

    def to_ansi(self, row: int = 0, drop_first: bool = False, cmap: str = "bwr") -> str:
        """The tokens before row ``row``'s target, coloured by their relevance for it (24-bit
        ANSI, :func:`~jaxlrp.viz.tokens_to_ansi`); ``drop_first`` leaves the first token
        (``<bos>``, often an attention sink) out of the colour scale."""
        from jaxlrp.viz.text import tokens_to_ansi

        words = self._strings()[: self.prompt_length + row]
        return tokens_to_ansi(words, self._shown(row, drop_first), cmap=cmap, separator="")

    def to_html(self, title: str = "", drop_first: bool = False, cmap: str = "bwr") -> str:
        """A standalone HTML page: the prompt coloured for the next token, then one line per
        generated token (its preceding tokens coloured for it, each line scaled on its own)."""
        import html

        from jaxlrp.viz.text import tokens_to_html

        words, p = self._strings(), self.prompt_length

        def line(k: int) -> str:
            return tokens_to_html(words[: p + k], self._shown(k, drop_first), cmap=cmap,
                                  separator="")  # fmt: skip

        rows = "".join(
            f"<tr><td style='white-space: pre; padding-right: 1em'><b>{html.escape(words[p + k])}"
            f"</b></td><td>{self.logits[k]:.3f}</td><td>{line(k)}</td></tr>"
            for k in range(len(self.generated))
        )
        continuation = html.escape("".join(words[p:]))
        return (
            f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h2>{html.escape(title)}</h2><p><b>continuation:</b> "
            f"<span style='white-space: pre'>{continuation}</span></p>"
            f"<h3>Next token {html.escape(repr(words[p]))} (logit {self.logits[0]:.3f})</h3>"
            f"{line(0)}<h3>Every generated token: the relevance of the tokens before it</h3>"
            "<table><tr><th>token</th><th>logit</th><th>relevance of the preceding tokens</th>"
            f"</tr>{rows}</table></body></html>"
        )


@functools.partial(jax.jit, static_argnums=0)
def _next_token(apply_fn: Callable, variables: Any, buffer: jax.Array, length: jax.Array):
    logits = apply_fn(variables, buffer)
    return jnp.argmax(logits[0, length - 1], axis=-1).astype(jnp.int32)


def greedy_continuation(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    variables: Any,
    prompt_ids: Any,
    steps: int,
    eos_id: int | None = None,
) -> np.ndarray:
    """Greedy continuation ``t_k = argmax f(prompt + t_{<k})[0, P + k − 1]`` of one prompt.

    No key/value cache: every step reruns a buffer of fixed length (``P + steps`` rounded up to
    a multiple of 32, zero-padded on the right) so that one compiled step serves all steps and
    most prompts; causal attention ignores the padding.

    Args:
        apply_fn: ``(variables, ids (1, seq)) -> logits (1, seq, vocab)`` of a causal LM.
        variables: Its variables.
        prompt_ids: ``(P,)`` the prompt's ids (with ``<bos>`` where the model expects it).
        steps: The most tokens to generate.
        eos_id: Stop after generating this id (``None``: never stop early).

    Returns:
        int32 ``(G,)``, ``G ≤ steps``: the generated ids (``eos_id`` included when reached).
    """
    def next_token(buffer: jax.Array, length: int) -> int:
        return int(_next_token(apply_fn, variables, buffer, jnp.asarray(length)))

    return greedy_decode(next_token, prompt_ids, steps, eos_id)


def greedy_decode(
    next_token: Callable[[jax.Array, int], int],
    prompt_ids: Any,
    steps: int,
    eos_id: int | None = None,
) -> np.ndarray:
    """The greedy decoding loop: ``next_token(buffer, length)`` is the argmax token after the
    first ``length`` ids of ``buffer`` (int32 ``(1, S)``), appended until ``steps`` tokens or
    ``eos_id``.

    The buffer has a fixed length (``len(prompt) + steps`` rounded up to a multiple of 32) so
    that one compiled step serves every position and most prompts; causal attention ignores
    what lies beyond ``length``.

    Returns:
        int32 ``(G,)``, ``G ≤ steps``: the generated ids (``eos_id`` included when reached).
    """
    prompt = np.asarray(prompt_ids, np.int32).reshape(-1)
    size = -(-(prompt.size + steps) // 32) * 32
    buffer = np.zeros((1, size), np.int32)
    buffer[0, : prompt.size] = prompt
    out = []
    for length in range(prompt.size, prompt.size + steps):
        token = next_token(jnp.asarray(buffer), length)
        out.append(token)
        buffer[0, length] = token
        if token == eos_id:
            break
    return np.asarray(out, np.int32)


def _rows(apply_fn: Callable, composite: Composite, variables: Any, ids: jax.Array,
          prompt_length: int) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """``(G, L)`` relevance and ``(G,)`` logits: one LRP forward, the pull-back vmapped."""
    length = ids.shape[-1]
    positions = jnp.arange(prompt_length - 1, length - 1)  # logits position of each target
    targets = ids[0, prompt_length:]
    out, relevance_fn = lrp(apply_fn, composite, argnums=1)(variables, ids)
    vocab = out.shape[-1]
    # cotangent k: one-hot at (0, positions[k], targets[k]); R_out = out ⊙ cotangent
    onehot = (jax.nn.one_hot(positions, length, dtype=out.dtype)[:, :, None]
              * jax.nn.one_hot(targets, vocab, dtype=out.dtype)[:, None, :])[:, None]  # fmt: skip
    rows = jax.vmap(lambda c: relevance_fn(out * c, cotangent=c))(onehot)[:, 0]
    causal = jnp.arange(length)[None, :] <= positions[:, None]
    return jnp.where(causal, rows, 0.0), out[0, positions, targets]


_ROWS = compiled.Cache(maxsize=8)


def _compiled_rows(apply_fn: Callable, composite: Composite) -> Callable:
    """``_rows`` of ``apply_fn`` and ``composite``, jitted once per function object and
    composite value (the prompt length is static)."""
    return _ROWS.get(apply_fn, composite, ("continuation",), lambda: jax.jit(
        functools.partial(_rows, apply_fn, composite), static_argnums=2)).run


def explain_continuation(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    variables: Any,
    prompt_ids: Any,
    steps: int | None = None,
    *,
    generated: Any = None,
    composite: Composite | None = None,
    eos_id: int | None = None,
    decode: Callable[[int], str] | None = None,
) -> ContinuationExplanation:
    """Explain every token of a continuation of ``prompt_ids`` in one compiled call.

    The continuation is ``generated`` if given, else ``steps`` greedy tokens
    (:func:`greedy_continuation`). Then, on the full sequence ``x`` (length ``L = P + G``), one
    LRP forward pass of ``apply_fn`` and ``G`` pull-backs (``jax.vmap`` over the output
    relevances ``R_out^k = f(x) ⊙ onehot(P + k − 1, t_k)``) give
    ``M[k, j] = R_j(f(x)[0, P + k − 1, t_k])``; entries at and after the target's position
    (``j ≥ P + k``) are set to zero, which is what a causal model gives anyway.

    The explanation is compiled (``jax.jit``) once per ``(apply_fn, composite, L, P)``; pass
    the same ``apply_fn`` object to reuse it. Call it eagerly (it returns NumPy arrays).

    Args:
        apply_fn: ``(variables, ids (1, seq) int32) -> logits (1, seq, vocab)`` of a causal LM
            (e.g. ``module.apply`` of a :class:`~jaxlrp.models.gemma3.Gemma3`).
        variables: Its variables.
        prompt_ids: ``(P,)`` the prompt's ids, ``P ≥ 1``.
        steps: How many tokens to generate greedily (when ``generated`` is not given).
        generated: ``(G,)`` ids of a given continuation to explain instead (teacher forcing).
        composite: The rules (default :func:`~jaxlrp.composites.AttnLRP`).
        eos_id: Stop generating after this id.
        decode: ``id -> str`` to fill :attr:`ContinuationExplanation.tokens`.

    Returns:
        A :class:`ContinuationExplanation`: ids, ``(G, L)`` relevance, explained logits, tokens.

    Raises:
        ValueError: Neither or both of ``steps`` and ``generated``, an empty prompt or
            continuation, or ``steps < 1``.

    References:
        Achtibat et al., "AttnLRP", ICML 2024 (explaining generated tokens of LLMs).
    """
    prompt = np.asarray(prompt_ids, np.int32).reshape(-1)
    if prompt.size == 0:
        raise ValueError("prompt_ids is empty: the first target needs at least one input token")
    if (steps is None) == (generated is None):
        raise ValueError("give exactly one of steps (generate greedily) and generated (ids)")
    if generated is None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        generated = greedy_continuation(apply_fn, variables, prompt, steps, eos_id)
    continuation = np.asarray(generated, np.int32).reshape(-1)
    if continuation.size == 0:
        raise ValueError("the continuation is empty: nothing to explain")
    ids = np.concatenate([prompt, continuation])
    composite = composite if composite is not None else _composites.AttnLRP()
    run = _compiled_rows(apply_fn, composite)
    relevance, logits = run(variables, jnp.asarray(ids[None]), int(prompt.size))
    tokens = None if decode is None else tuple(decode(int(i)) for i in ids)
    return ContinuationExplanation(ids, int(prompt.size), np.asarray(relevance, np.float32),
                                   np.asarray(logits, np.float32), tokens)  # fmt: skip
