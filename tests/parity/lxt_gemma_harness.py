"""Shared code of the LXT Gemma 3 parity test: explain transformers' ``Gemma3ForCausalLM`` with
LXT 2.1's efficient AttnLRP and CP-LRP patches (``lxt.efficient.models.gemma3``, PyTorch) and
jaxlrp's :class:`~jaxlrp.models.gemma3.Gemma3` on the same weights, and compare the relevance of
the input embeddings.

The explained function is the same on both sides: scaled input embeddings ``e``
(``embed_tokens[ids] · √hidden``, ``(1, seq, hidden)``, computed by jaxlrp and handed to both)
→ the decoder blocks → final RMSNorm → tied unembedding → the logit of one token at the last
position (``R_out = logit ⊙ onehot``). LXT's relevance is ``e ⊙ ∂̃logit/∂e`` (gradient × input
with modified gradients); a token's relevance is the sum over the hidden features.

LXT's side runs in a child process (``python tests/parity/lxt_gemma_harness.py IN OUT``): its
patches replace methods of ``Gemma3MLP``, ``Gemma3RMSNorm`` and ``modeling_gemma3``'s
attention functions for the whole process, and the AttnLRP and CP-LRP maps cannot both be
applied to one process (the second is refused as "already patched"), so there is one child per
variant. The child needs only numpy, torch, transformers (with ``Gemma3ForCausalLM``) and lxt.

Two dtype-only changes are made in the child, so that float64 stays float64 (the rules are
LXT's, untouched): ``Gemma3RMSNorm.forward`` computes ``_norm(x) · (1 + w)`` (LXT's patched
``_norm``) without transformers' ``x.float()`` / ``type_as`` round trip, and the attention
softmax ignores its ``dtype=torch.float32`` for float64 scores. In float32 both are no-ops.

LXT is BSD-3-Clause; nothing here is taken from its code, it is only called.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np

# beside this file (on sys.path as a script or a test); agreement is the tests' measure
from lxt_harness import agreement, run_child  # noqa: F401

VARIANTS = ("attnlrp", "cp")

# Three blocks: two local (sliding window 4) and one global, shorter than the sequence (10), so
# that the window matters; grouped-query attention (2 query heads on 1 key/value head).
TINY = dict(
    vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
    sliding_window_pattern=3, query_pre_attn_scalar=16.0, rope_theta=10_000.0,
    rope_local_base_freq=100.0, max_position_embeddings=64,
)  # fmt: skip
SEQ = 10


def tiny_config() -> Any:
    """jaxlrp's :class:`~jaxlrp.models.gemma3.Gemma3Config` of the tiny model."""
    from jaxlrp.models.gemma3 import Gemma3Config

    return Gemma3Config(**TINY)


def hf_config_kwargs(config: Any) -> dict[str, Any]:
    """``Gemma3TextConfig`` keyword arguments of a jaxlrp ``Gemma3Config`` (written out field by
    field: the layer types, GELU-tanh, eager attention and no soft-capping made explicit)."""
    return dict(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim,
        hidden_activation="gelu_pytorch_tanh", rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta, rope_local_base_freq=config.rope_local_base_freq,
        sliding_window=config.sliding_window, layer_types=list(config.layer_types),
        query_pre_attn_scalar=config.query_pre_attn_scalar, rope_scaling=None,
        attn_logit_softcapping=None, final_logit_softcapping=None,
        max_position_embeddings=config.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip


def random_variables(config: Any, seed: int = 0) -> dict[str, Any]:
    """Random float32 variables of the tiny model: projections and embedding ``N(0, 1/fan_in)``
    (embedding ``N(0, 1/hidden)``), every RMSNorm multiplier ``U(0.7, 1.3)`` (so that the
    ``1 + w`` convention is exercised)."""
    import jax
    import jax.numpy as jnp

    from jaxlrp.models.convert import param_leaves, set_leaf
    from jaxlrp.models.gemma3 import Gemma3

    module = Gemma3(config)
    template = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, SEQ), jnp.int32))
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    for path, leaf in sorted(param_leaves(template["params"]).items()):
        shape = tuple(leaf.shape)
        if path[-1] == "scale":
            value = rng.uniform(0.7, 1.3, shape)
        else:
            value = rng.standard_normal(shape) / np.sqrt(shape[-1] if path[-1] == "embedding"
                                                         else shape[0])  # fmt: skip
        set_leaf(params, path, np.asarray(value, np.float32))
    return {"params": params}


def hf_state_dict(variables: dict[str, Any]) -> dict[str, np.ndarray]:
    """``Gemma3ForCausalLM``'s state dict of jaxlrp's variables: kernels transposed to
    ``(out, in)``, RMSNorm multipliers minus one (``Gemma3RMSNorm`` computes ``x·(1 + w)``).
    ``lm_head.weight`` is left out (it is the tied embedding; the child ties it)."""
    from jaxlrp.models.convert import param_leaves

    state = {}
    for path, value in param_leaves(variables["params"]).items():
        value = np.asarray(value, np.float32)
        *stem, leaf = path
        stem = [p.replace("layers_", "layers.") for p in stem]
        key = "model." + ".".join(stem) + ".weight"
        if leaf == "kernel":
            value = value.T
        elif leaf == "scale":
            value = value - np.float32(1.0)
        state[key] = np.ascontiguousarray(value)
    return state


def token_ids(config: Any, seed: int = 0) -> np.ndarray:
    """``(1, SEQ)`` random token ids, ``<bos>`` (2) first."""
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(3, config.vocab_size, (1, SEQ))
    ids[0, 0] = 2
    return ids.astype(np.int32)


def lxt_matching_composite(variant: str) -> Any:
    """jaxlrp's composite computing what LXT's efficient Gemma 3 patches compute.

    ``"attnlrp"``: LXT's ``gemma3.attnLRP`` map: ``1/rms`` detached in every ``Gemma3RMSNorm``
    (including the q/k norms: the ``SignalTakesAll`` norm rule), GELU's identity rule
    (``Pass``), the gradient halved at the GeGLU product ``GELU(gate)·up`` and at ``q·kᵀ`` and
    ``A·v`` (``UniformProduct``), the softmax's plain gradient (``TaylorAtInput``); everything
    else (the projections, RoPE, the norms' ``1 + w``, the residual sums, the unembedding) is
    LRP-0 without a stabilizer: ``AttnLRP(epsilon=0, stabilizer=0)`` with ``Zero(1e-30)`` on
    the layers. ``"cp"``: the same on jaxlrp's ``CPLRP`` (``A`` held constant in ``A·v``).
    LXT's CP map also detaches the GeGLU gate (all relevance of the product to ``up``), as
    ``CPLRP`` does (``SignalTakesAll`` on products gated by an activation,
    ``patterns.mark_gated_products``).
    """
    from jaxlrp import composites, rules

    base = {"attnlrp": composites.AttnLRP, "cp": composites.CPLRP}[variant]
    lrp0 = rules.Zero(stabilizer=1e-30)
    composite = dataclasses.replace(
        base(epsilon=0.0, stabilizer=0.0), default=lrp0, dense=lrp0, conv=lrp0, affine=lrp0,
        name=f"{base.__name__}-as-LXT",
    )  # fmt: skip
    return composite


def jaxlrp_relevance(
    module: Any, variables: Any, ids: np.ndarray, target: int, composite: Any,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """jaxlrp's relevance of the scaled embeddings ``(1, seq, hidden)``, the embeddings and the
    last-position logits, all in ``dtype`` (``"float64"`` needs ``jax.enable_x64`` and a
    ``Gemma3(dtype=jnp.float64)`` module). Jitted: one XLA compilation."""
    import jax
    import jax.numpy as jnp

    import jaxlrp

    variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), variables)

    def last_logits(variables, embeds):
        return module.apply(variables, embeds, method="from_embeddings")[:, -1]

    @jax.jit
    def run(variables):
        embeds = module.apply(variables, jnp.asarray(ids), method="embed")
        relevance = jaxlrp.explain(last_logits, variables, embeds,
                                   target=jnp.asarray([target]), composite=composite)  # fmt: skip
        return relevance, embeds, last_logits(variables, embeds)

    relevance, embeds, logits = run(variables)
    return np.asarray(relevance), np.asarray(embeds), np.asarray(logits)


def lxt_relevance(
    variant: str, config_kwargs: dict[str, Any], state: dict[str, np.ndarray],
    embeds: np.ndarray, target: int, dtypes: tuple[str, ...] = ("float64", "float32"),
    timeout: float = 300,
) -> dict[str, np.ndarray]:  # fmt: skip
    """LXT's relevance in a child process, for each of ``dtypes`` (``embeds`` float64; cast
    there). Returns ``{"R_<dtype>": (1, seq, hidden), "logits_<dtype>": (1, vocab)}``.

    Raises:
        RuntimeError: With the child's output if it fails.
    """
    import json

    return run_child(__file__, timeout, variant=np.array(variant), embeds=embeds,
                     target=np.array(target), dtypes=np.array(dtypes),
                     config=np.array(json.dumps(config_kwargs)),
                     **{f"state/{k}": v for k, v in state.items()})  # fmt: skip


def _keep_dtype_rms_norm_forward(self, x):
    """``Gemma3RMSNorm.forward`` without the float32 round trip (``_norm`` is LXT's)."""
    return self._norm(x) * (1.0 + self.weight)


def _lxt_main(inputs: str, outputs: str) -> None:
    """The child process: patch ``modeling_gemma3`` with one LXT map, load the weights,
    explain the last-position logit from the given embeddings."""
    import json

    import torch
    import transformers.models.gemma3.modeling_gemma3 as modeling_gemma3
    from lxt.efficient import monkey_patch
    from lxt.efficient.models import gemma3 as lxt_gemma3

    with np.load(inputs) as data:
        args = {key: data[key] for key in data.files}
    variant = str(args["variant"])
    monkey_patch(modeling_gemma3, {"attnlrp": lxt_gemma3.attnLRP, "cp": lxt_gemma3.cp_LRP}[variant])
    modeling_gemma3.Gemma3RMSNorm.forward = _keep_dtype_rms_norm_forward
    softmax = torch.nn.functional.softmax

    def keep_float64_softmax(x, dim=None, _stacklevel=3, dtype=None):
        return softmax(x, dim=dim, dtype=None if x.dtype == torch.float64 else dtype)

    torch.nn.functional.softmax = keep_float64_softmax
    config = modeling_gemma3.Gemma3TextConfig(**json.loads(str(args["config"])))
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = modeling_gemma3.Gemma3ForCausalLM(config).eval()
    state = {k[len("state/"):]: torch.from_numpy(v) for k, v in args.items()
             if k.startswith("state/")}  # fmt: skip
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    del state
    target = int(args["target"])
    results = {}
    for dtype_name in args["dtypes"]:
        dtype = getattr(torch, str(dtype_name))
        model = model.to(dtype)
        embeds = torch.from_numpy(args["embeds"]).to(dtype).requires_grad_(True)
        logits = model(inputs_embeds=embeds, use_cache=False).logits[:, -1]
        logits[0, target].backward()
        results[f"R_{dtype_name}"] = (embeds * embeds.grad).detach().numpy()
        results[f"logits_{dtype_name}"] = logits.detach().numpy()
    np.savez(outputs, **results)


if __name__ == "__main__":
    _lxt_main(sys.argv[1], sys.argv[2])
