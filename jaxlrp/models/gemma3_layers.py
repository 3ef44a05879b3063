"""Per-layer token relevance of Gemma 3 (:class:`~jaxlrp.models.gemma3.Gemma3`): the relevance
of a next-token logit at the input and at every block's output, from one LRP pass with
``record=`` (:mod:`jaxlrp.record`) at each block's last residual sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxlrp import compiled
from jaxlrp.models.gemma3 import Gemma3

__all__ = ["LayerRelevance", "block_output_key", "explain_layers"]


def block_output_key(layer: int) -> str:
    """The ``record=`` key (:mod:`jaxlrp.record`) of block ``layer``'s output relevance.

    A block ends with its second residual sum, ``h + RMSNorm_post_ffw(…)``: that sum node's
    output is the block's output (``layers_N/sum#0`` is the attention's residual sum).
    """
    return f"layers_{layer}/sum#1:out"


class LayerRelevance(NamedTuple):
    """Token relevance at the input and at every block's output (:func:`explain_layers`).

    Attributes:
        input: ``(batch, seq)``, the relevance of the input tokens (what ``jaxlrp.explain``
            gives for token ids).
        blocks: ``(batch, num_hidden_layers, seq)``, the relevance of each block's output at
            each position, summed over the hidden features: row ``l`` is what block ``l + 1``
            (or, for the last block, the final norm and unembedding) hands down per position.
        logits: ``(batch,)``, the explained logits.
    """

    input: jax.Array
    blocks: jax.Array
    logits: jax.Array


def explain_layers(
    module: Gemma3,
    variables: Mapping,
    token_ids: Any,
    target: Any,
    composite: Any = None,
) -> LayerRelevance:
    """Per-layer token relevance of a next-token logit: the relevance at the input and at every
    block's output, from one LRP pass (``jaxlrp.explain(..., record=...)``).

    The explained logit is ``target`` at the last position (the prediction of the token after
    ``token_ids``); all positions share the sequence length (pad nothing: the last position is
    the one explained). Under CP-LRP every row of ``blocks`` sums to the logit (up to the ε
    stabilizers: CP-LRP is conservative and Gemma has no biases); under AttnLRP relevance is
    lost or gained only at the softmax nodes, so the row sums change from block to block. The
    last block's row is zero except at the last position (only it reaches the logit).

    Args:
        module: A :class:`Gemma3`.
        variables: Its variables.
        token_ids: ``(batch, seq)`` or ``(seq,)`` int ids (``<bos>`` first).
        target: The token whose logit is explained: an int or a ``(batch,)`` int array.
        composite: The rules; :func:`~jaxlrp.composites.AttnLRP` when ``None``.

    Returns:
        A :class:`LayerRelevance` (without a batch axis for ``(seq,)`` ids).
    """
    from jaxlrp import composites

    ids = jnp.asarray(token_ids, jnp.int32)
    single = ids.ndim == 1
    if single:
        ids = ids[None]
    if ids.ndim != 2:
        raise ValueError(f"token_ids must be (batch, seq) or (seq,), got shape {ids.shape}")
    composite = composites.AttnLRP() if composite is None else composite
    target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), (ids.shape[0],))
    result = _explain_layers_compiled(module, composite)(variables, ids, target)
    return LayerRelevance(*(x[0] for x in result)) if single else result


def _last_position_logits(module: Gemma3) -> Any:
    """``(variables, ids) → (batch, vocab)``: the logits at the last position only."""

    def last(m: Gemma3, token_ids: jax.Array) -> jax.Array:
        return m.unembed(m.hidden_states(m.embed(token_ids))[:, -1])

    def logits(variables: Mapping, token_ids: jax.Array) -> jax.Array:
        return module.apply(variables, token_ids, method=last)

    return logits


_COMPILED = compiled.Cache(maxsize=8)


def _explain_layers_compiled(module: Gemma3, composite: Any) -> Any:
    """One jitted LRP pass per module and composite value: the logits and the recorded
    relevance (:mod:`jaxlrp.compiled`)."""
    return _COMPILED.get(module, composite, ("gemma3 layers",),
                         lambda: _make_explain_layers(module, composite)).run  # fmt: skip


def _make_explain_layers(module: Gemma3, composite: Any) -> Any:
    from jaxlrp import lrp

    keys = [block_output_key(i) for i in range(module.config.num_hidden_layers)]
    fn = _last_position_logits(module)

    @jax.jit
    def run(variables: Mapping, ids: jax.Array, target: jax.Array) -> LayerRelevance:
        logits, relevance_fn = lrp(fn, composite, record=keys)(variables, ids)
        onehot = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
        recorded = relevance_fn(logits * onehot, cotangent=onehot)
        blocks = jnp.stack([recorded.layers[key].sum(-1) for key in keys], axis=1)
        explained = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
        return LayerRelevance(recorded.input, blocks, explained)

    return run
