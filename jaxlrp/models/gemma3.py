"""Gemma 3 decoder-only language models in plain linen, and the pretrained Gemma 3 270M.

Each of the ``num_hidden_layers`` blocks is a "sandwich" of RMS norms around attention and a
gated MLP (Gemma Team 2025), with ``RMSNorm(x) = x · rsqrt(mean(x²) + ε) · scale``:

    h   = x + RMSNorm_post_attn(Attention(RMSNorm_in(x)))
    out = h + RMSNorm_post_ffw(down(GELU_tanh(gate(a)) · up(a))),  a = RMSNorm_pre_ffw(h)

Attention has ``num_attention_heads`` query heads sharing ``num_key_value_heads`` key/value
heads (grouped-query attention), RMS norms on queries and keys (per head), rotary position
embeddings (the "rotate half" form) and, on "local" layers, a causal sliding window:

    scores = (RoPE(RMSNorm_q(q)) · RoPE(RMSNorm_k(k))ᵀ) / sqrt(query_pre_attn_scalar) + bias
    out    = o_proj(softmax(scores) · v)

with ``bias = 0`` where key position ``j`` is visible from query ``i`` (``j ≤ i``, and
``i − j < sliding_window`` on local layers) and ``finfo(dtype).min`` elsewhere. Five of every
six layers are local (RoPE base ``rope_local_base_freq``); every sixth is global (base
``rope_theta``). The input is ``embed_tokens[ids] · sqrt(hidden_size)`` (the factor rounded
to the model's dtype); the output projection is the transposed embedding (tied).

Attention, norms and the MLP are written out in ``jnp`` so that the traced program is the
textbook pattern the LRP rules look for (``einsum`` → ``softmax`` → ``einsum``). In bfloat16,
RMS norms and the softmax are computed in float32 and rounded back, as in Hugging Face's
``Gemma3ForCausalLM``; in float32 (and float64, for reference computations) these casts are
no-ops and leave no trace in the program.

``scale`` is the multiplier itself: Gemma's checkpoints store ``w`` and compute ``x·(1 + w)``;
GGUF files store ``1 + w`` (llama.cpp adds the 1 on conversion), which is used directly.

Parameter names follow Hugging Face's ``Gemma3ForCausalLM`` (``model.`` dropped, list indices
as ``_N``): ``embed_tokens/embedding``, ``layers_3/self_attn/q_proj/kernel``,
``layers_3/mlp/gate_proj/kernel``, ``layers_3/input_layernorm/scale``, …, ``norm/scale``. The
pretrained model and its tokenizer live in :mod:`jaxlrp.models.gemma3_270m`.

References:
    Gemma Team, "Gemma 3 Technical Report", arXiv:2503.19786, 2025. J. Su et al.,
    "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021. J. Ainslie et al.,
    "GQA", EMNLP 2023. Hugging Face ``transformers``, ``models/gemma3/modeling_gemma3.py``
    (the reference implementation); llama.cpp ``src/llama-model.cpp`` (the GGUF conventions).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.generation import greedy_decode
from jaxlrp.models.convert import param_leaves, set_leaf

__all__ = [
    "GEMMA3_270M",
    "Gemma3",
    "Gemma3Attention",
    "Gemma3Config",
    "Gemma3DecoderLayer",
    "Gemma3MLP",
    "RMSNorm",
    "convert_gemma3_tensors",
    "greedy_generate",
    "random_gemma3_variables",
    "rotary_embedding",
]


@dataclasses.dataclass(frozen=True)
class Gemma3Config:
    """Hyper-parameters of a Gemma 3 text model (names as in Hugging Face's config).

    Defaults are Gemma 3 270M's. ``rope_scaling_factor`` divides the positions of global
    layers (linear RoPE scaling of the 4B–27B models; 1 for 270M).
    """

    vocab_size: int = 262144
    hidden_size: int = 640
    intermediate_size: int = 2048
    num_hidden_layers: int = 18
    num_attention_heads: int = 4
    num_key_value_heads: int = 1
    head_dim: int = 256
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_local_base_freq: float = 10_000.0
    rope_scaling_factor: float = 1.0
    sliding_window: int = 512
    sliding_window_pattern: int = 6
    query_pre_attn_scalar: float = 256.0
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02

    @property
    def layer_types(self) -> tuple[str, ...]:
        """``"sliding_attention"`` or ``"full_attention"`` per layer (every sixth is full)."""
        pattern = self.sliding_window_pattern
        return tuple(
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
            for i in range(self.num_hidden_layers)
        )

    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, Any], vocab_size: int) -> Gemma3Config:
        """The config of a ``gemma3`` GGUF file's metadata (:func:`~.gguf_loader.read_metadata`).

        The file stores sizes, ε, the global RoPE base and the window. What it leaves out is
        fixed by llama.cpp's Gemma 3 code, and taken as such: local RoPE base 10⁴, a global
        layer every sixth, ``query_pre_attn_scalar = head_dim`` (27B excepted: there it is
        ``hidden_size / num_attention_heads``), no soft-capping unless the keys are present.

        Raises:
            ValueError: If the architecture is not ``gemma3``, or keys and values differ in
                width.
        """
        arch = metadata.get("general.architecture")
        if arch != "gemma3":
            raise ValueError(f"expected a gemma3 GGUF file, got architecture {arch!r}")

        def get(key, default=None):
            return metadata.get(f"{arch}.{key}", default)

        if get("attention.key_length") != get("attention.value_length"):
            raise ValueError("keys and values of different widths are not supported")
        heads, hidden = int(get("attention.head_count")), int(get("embedding_length"))
        blocks, head_dim = int(get("block_count")), int(get("attention.key_length"))
        scalar = hidden / heads if blocks == 62 else head_dim  # llama.cpp: 27B has 62 blocks
        scaling = 1.0
        if get("rope.scaling.type") == "linear":
            scaling = float(get("rope.scaling.factor", 1.0))
        return cls(
            vocab_size=int(vocab_size),
            hidden_size=hidden,
            intermediate_size=int(get("feed_forward_length")),
            num_hidden_layers=blocks,
            num_attention_heads=heads,
            num_key_value_heads=int(get("attention.head_count_kv")),
            head_dim=head_dim,
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            rope_theta=float(get("rope.freq_base")),
            rope_scaling_factor=scaling,
            sliding_window=int(get("attention.sliding_window")),
            query_pre_attn_scalar=float(scalar),
            attn_logit_softcapping=get("attn_logit_softcapping"),
            final_logit_softcapping=get("final_logit_softcapping"),
            max_position_embeddings=int(get("context_length")),
        )


GEMMA3_270M = Gemma3Config(rms_norm_eps=float(np.float32(1e-6)))
"""Gemma 3 270M, as its GGUF metadata gives it (ε is float32's 1e-6), for random weights."""


def _at_least_float32(dtype: Any) -> Any:
    """``dtype`` widened to float32 if narrower (bfloat16 → float32; float64 stays float64)."""
    return jnp.promote_types(dtype, jnp.float32)


def _dense(module: nn.Module, features: int, name: str) -> nn.Dense:
    init = nn.initializers.normal(module.config.initializer_range)
    return nn.Dense(
        features, use_bias=False, dtype=module.dtype, param_dtype=module.dtype,
        kernel_init=init, name=name,
    )  # fmt: skip


class RMSNorm(nn.Module):
    """``x · rsqrt(mean(x²) + eps) · scale`` over the last axis (Zhang and Sennrich 2019).

    ``scale`` multiplies directly (Gemma's ``1 + w``, as GGUF stores it); it starts at one.
    Computed in at least float32 (bfloat16 is widened, float64 kept) and rounded back to
    ``x``'s dtype.
    """

    eps: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.dtype)
        wide = _at_least_float32(x.dtype)
        x32 = x.astype(wide)
        mean_square = jnp.mean(x32 * x32, axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(mean_square + self.eps) * scale.astype(wide)
        return y.astype(x.dtype)


def rotary_embedding(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding, "rotate half" form, of ``(batch, seq, heads, dim)`` vectors.

    ``x·cos(pθ) + rotate_half(x)·sin(pθ)`` with ``θ_i = base^(−2i/dim)`` repeated over both
    halves and ``rotate_half([x₁, x₂]) = [−x₂, x₁]`` (Su et al.; Hugging Face's layout, so
    GGUF's q/k weights need no permutation). Angles in float32, cos/sin in ``x``'s dtype.

    Args:
        x: Queries or keys.
        positions: ``(seq,)`` or ``(batch, seq)`` positions (float, so that scaled ones work).
        base: The RoPE base.
    """
    dim = x.shape[-1]
    inv_freq = (1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)).astype(np.float32)
    angles = jnp.asarray(positions, jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)
    if angles.ndim == 2:
        angles = angles[None]
    cos = jnp.cos(angles).astype(x.dtype)[:, :, None, :]
    sin = jnp.sin(angles).astype(x.dtype)[:, :, None, :]
    half = dim // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def _attention_bias(seq: int, window: int | None, dtype: Any) -> jax.Array:
    """``(seq, seq)``: 0 where key ``j`` is visible from query ``i``, ``finfo.min`` elsewhere."""
    query = np.arange(seq)[:, None]
    key = np.arange(seq)[None, :]
    visible = key <= query
    if window is not None:
        visible &= query - key < window
    return jnp.where(jnp.asarray(visible), 0.0, jnp.finfo(dtype).min).astype(dtype)


class Gemma3Attention(nn.Module):
    """Grouped-query attention with q/k RMS norms, RoPE and an optional sliding window."""

    config: Gemma3Config
    sliding: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``(batch, seq, hidden)`` → ``(batch, seq, hidden)``; positions are ``0 … seq-1``."""
        config = self.config
        batch, seq, _ = x.shape
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        dim, groups = config.head_dim, heads // kv_heads
        q = _dense(self, heads * dim, "q_proj")(x).reshape(batch, seq, heads, dim)
        k = _dense(self, kv_heads * dim, "k_proj")(x).reshape(batch, seq, kv_heads, dim)
        v = _dense(self, kv_heads * dim, "v_proj")(x).reshape(batch, seq, kv_heads, dim)
        q = RMSNorm(config.rms_norm_eps, self.dtype, name="q_norm")(q)
        k = RMSNorm(config.rms_norm_eps, self.dtype, name="k_norm")(k)
        positions = jnp.arange(seq, dtype=jnp.float32)
        if self.sliding:
            base = config.rope_local_base_freq
        else:
            base, positions = config.rope_theta, positions / config.rope_scaling_factor
        q = rotary_embedding(q, positions, base).reshape(batch, seq, kv_heads, groups, dim)
        k = rotary_embedding(k, positions, base)
        scale = config.query_pre_attn_scalar**-0.5
        scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k) * jnp.asarray(scale, self.dtype)
        if config.attn_logit_softcapping is not None:
            cap = config.attn_logit_softcapping
            scores = jnp.tanh(scores / cap) * cap
        window = config.sliding_window if self.sliding else None
        scores = scores + _attention_bias(seq, window, scores.dtype)
        wide = _at_least_float32(scores.dtype)
        probs = jax.nn.softmax(scores.astype(wide), axis=-1).astype(self.dtype)
        context = jnp.einsum("bkgqs,bskd->bqkgd", probs, v).reshape(batch, seq, heads * dim)
        return _dense(self, config.hidden_size, "o_proj")(context)


class Gemma3MLP(nn.Module):
    """``down(GELU_tanh(gate(x)) · up(x))`` (GeGLU, Shazeer 2020)."""

    config: Gemma3Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        size = self.config.intermediate_size
        gate = jax.nn.gelu(_dense(self, size, "gate_proj")(x), approximate=True)
        up = _dense(self, size, "up_proj")(x)
        return _dense(self, self.config.hidden_size, "down_proj")(gate * up)


class Gemma3DecoderLayer(nn.Module):
    """One block: normed attention and normed MLP, each normed again before its residual."""

    config: Gemma3Config
    sliding: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        eps, dtype = self.config.rms_norm_eps, self.dtype
        a = RMSNorm(eps, dtype, name="input_layernorm")(x)
        a = Gemma3Attention(self.config, self.sliding, dtype, name="self_attn")(a)
        h = x + RMSNorm(eps, dtype, name="post_attention_layernorm")(a)
        m = RMSNorm(eps, dtype, name="pre_feedforward_layernorm")(h)
        m = Gemma3MLP(self.config, dtype, name="mlp")(m)
        return h + RMSNorm(eps, dtype, name="post_feedforward_layernorm")(m)


class Gemma3(nn.Module):
    """Gemma 3 causal language model: ``(batch, seq)`` token ids → ``(batch, seq, vocab)`` logits.

    The logits at position ``t`` predict token ``t + 1``. Sequences of a batch share positions
    ``0 … seq-1``; pad on the right (causal attention keeps real tokens blind to the padding).
    Besides ``__call__``, methods split the model where attributions are usually read::

        embeds = module.apply(variables, ids, method="embed")           # HF's inputs_embeds
        logits = module.apply(variables, embeds, method="from_embeddings")
        next_logits = module.apply(variables, ids, lengths, method="next_token_logits")

    Attributes:
        config: The hyper-parameters.
        dtype: Parameter and computation dtype (``jnp.float32`` or ``jnp.bfloat16``).
    """

    config: Gemma3Config = GEMMA3_270M
    dtype: Any = jnp.float32

    def setup(self) -> None:
        config = self.config
        self.embed_tokens = nn.Embed(
            config.vocab_size, config.hidden_size, dtype=self.dtype, param_dtype=self.dtype,
            embedding_init=nn.initializers.normal(config.initializer_range),
        )  # fmt: skip
        self.layers = [
            Gemma3DecoderLayer(config, kind == "sliding_attention", self.dtype)
            for kind in config.layer_types
        ]
        self.norm = RMSNorm(config.rms_norm_eps, self.dtype)

    def __call__(self, token_ids: jax.Array) -> jax.Array:
        """Logits ``(batch, seq, vocab_size)`` in the model's dtype for integer ``token_ids``."""
        return self.from_embeddings(self.embed(token_ids))

    def embed(self, token_ids: jax.Array) -> jax.Array:
        """Scaled embeddings ``embed_tokens[ids] · sqrt(hidden_size)``, ``(batch, seq, hidden)``."""
        scale = jnp.asarray(math.sqrt(self.config.hidden_size), self.dtype)
        return self.embed_tokens(token_ids) * scale

    def hidden_states(self, inputs_embeds: jax.Array) -> jax.Array:
        """The final-normed hidden states ``(batch, seq, hidden)`` from :meth:`embed`'s output."""
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def unembed(self, hidden: jax.Array) -> jax.Array:
        """Logits from final hidden states: ``hidden · embed_tokensᵀ`` (soft-capped if set)."""
        logits = self.embed_tokens.attend(hidden)
        cap = self.config.final_logit_softcapping
        return logits if cap is None else jnp.tanh(logits / cap) * cap

    def from_embeddings(self, inputs_embeds: jax.Array) -> jax.Array:
        """Logits ``(batch, seq, vocab_size)`` from scaled embeddings (:meth:`embed`)."""
        return self.unembed(self.hidden_states(inputs_embeds))

    def next_token_logits(self, token_ids: jax.Array, lengths: jax.Array) -> jax.Array:
        """Logits ``(batch, vocab_size)`` of the token after the first ``lengths[b]`` tokens.

        Only one position per row is projected onto the vocabulary (cheap for long inputs).
        """
        hidden = self.hidden_states(self.embed(token_ids))
        index = jnp.asarray(lengths, jnp.int32)[:, None, None] - 1
        last = jnp.take_along_axis(hidden, index, axis=1)[:, 0]
        return self.unembed(last)


@functools.partial(jax.jit, static_argnums=0)
def _greedy_step(module: Gemma3, variables: Mapping, buffer: jax.Array, length: jax.Array):
    logits = module.apply(variables, buffer, length, method="next_token_logits")
    return jnp.argmax(logits, axis=-1)


def greedy_generate(
    module: Gemma3,
    variables: Mapping,
    token_ids: Any,
    max_new_tokens: int,
    eos_id: int | None = 1,
) -> np.ndarray:
    """Greedy continuation (argmax at every step) of one prompt, without a key/value cache.

    The prompt sits in a buffer of fixed length (``len(prompt) + max_new_tokens`` rounded up
    to a multiple of 32) so that one compiled step serves every position and most prompts;
    each step reruns the whole buffer (causal attention ignores what lies beyond).

    Args:
        module: A :class:`Gemma3`.
        variables: Its variables.
        token_ids: The prompt's ids, ``(seq,)`` (``<bos>`` first, as the tokenizer gives).
        max_new_tokens: How many tokens to add at most.
        eos_id: Stop after this id (``None``: never stop early).

    Returns:
        int32 ``(new,)``: the generated ids (``eos_id`` included when reached).
    """

    def next_token(buffer: jax.Array, length: int) -> int:
        return int(_greedy_step(module, variables, buffer, jnp.asarray([length]))[0])

    return greedy_decode(next_token, token_ids, max_new_tokens, eos_id)


# GGUF tensor names (llama.cpp) → Flax paths; "blk.N." becomes "layers_N/".
_GGUF_BLOCK = {
    "attn_norm": ("input_layernorm", "scale"),
    "attn_q": ("self_attn", "q_proj", "kernel"),
    "attn_k": ("self_attn", "k_proj", "kernel"),
    "attn_v": ("self_attn", "v_proj", "kernel"),
    "attn_output": ("self_attn", "o_proj", "kernel"),
    "attn_q_norm": ("self_attn", "q_norm", "scale"),
    "attn_k_norm": ("self_attn", "k_norm", "scale"),
    "post_attention_norm": ("post_attention_layernorm", "scale"),
    "ffn_norm": ("pre_feedforward_layernorm", "scale"),
    "ffn_gate": ("mlp", "gate_proj", "kernel"),
    "ffn_up": ("mlp", "up_proj", "kernel"),
    "ffn_down": ("mlp", "down_proj", "kernel"),
    "post_ffw_norm": ("post_feedforward_layernorm", "scale"),
}
_GGUF_TOP = {"token_embd": ("embed_tokens", "embedding"), "output_norm": ("norm", "scale")}


def _flax_path(key: str) -> tuple[tuple[str, ...], bool] | None:
    """Flax path of a GGUF or Hugging Face key, and whether the value is a Gemma ``w`` (add 1)."""
    stem = key.removesuffix(".weight")
    if stem in _GGUF_TOP:
        return _GGUF_TOP[stem], False
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    if match and match.group(2) in _GGUF_BLOCK:
        return (f"layers_{match.group(1)}", *_GGUF_BLOCK[match.group(2)]), False
    hf = key.removeprefix("model.")
    if hf == "lm_head.weight":
        return None
    hf = re.sub(r"^layers\.(\d+)\.", r"layers_\1.", hf)
    parts = hf.removesuffix(".weight").split(".")
    if parts[-1] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        return (*parts, "kernel"), False
    if parts[-1].endswith("norm") or parts[-1].endswith("layernorm"):
        return (*parts, "scale"), True
    if parts == ["embed_tokens"]:
        return ("embed_tokens", "embedding"), False
    return None


def convert_gemma3_tensors(tensors: Mapping[str, Any], template: Mapping) -> dict[str, dict]:
    """Variables of :class:`Gemma3` from GGUF tensors or a Hugging Face state dict.

    GGUF names (``token_embd.weight``, ``blk.3.attn_q.weight``…; norms hold ``1 + w``) and
    ``Gemma3ForCausalLM`` keys (``model.layers.3.self_attn.q_proj.weight``…; norms hold ``w``,
    1 is added; ``lm_head.weight`` is skipped: it is the tied embedding) are both accepted.
    Projections are transposed from ``(out, in)`` to Flax's ``(in, out)``. Each array is cast to
    the template's dtype as it is placed, so peak memory stays near one float32 copy.

    Args:
        tensors: Name → array (numpy, or anything ``np.asarray`` accepts).
        template: The module's variables or ``jax.eval_shape`` of its ``init``.

    Returns:
        ``{"params": ...}`` as nested dicts of ``jax.Array``.

    Raises:
        ValueError: Naming every missing and unexpected key, or the first wrong shape.
    """
    wanted = param_leaves(template["params"])
    params: dict[str, Any] = {}
    placed, unexpected = set(), []
    for key, value in tensors.items():
        found = _flax_path(key)
        if found is None:
            if key != "lm_head.weight":
                unexpected.append(key)
            continue
        path, add_one = found
        if path not in wanted:
            unexpected.append(key)
            continue
        array = np.asarray(value, np.float32)
        if path[-1] == "kernel":
            array = array.T
        if add_one:
            array = array + 1.0
        if tuple(array.shape) != tuple(wanted[path].shape):
            raise ValueError(
                f"tensor {key!r} has shape {np.shape(value)}, the model expects "
                f"{tuple(wanted[path].shape)} (after transposing projections)"
            )
        set_leaf(params, path, jnp.asarray(array, dtype=wanted[path].dtype))
        placed.add(path)
    missing = sorted("/".join(path) for path in set(wanted) - placed)
    if missing or unexpected:
        raise ValueError(
            f"tensors do not match the Gemma 3 model: missing {missing}, "
            f"unexpected {sorted(unexpected)}"
        )
    return {"params": params}


def random_gemma3_variables(template: Mapping, seed: int, std: float = 0.02) -> dict[str, dict]:
    """Random variables drawn with numpy: projections and embedding ``N(0, std²)``, norm scales
    one (Hugging Face's initialisation, with the norms' ``1 + 0`` written as the multiplier).

    Args:
        template: Variables or their ``jax.ShapeDtypeStruct`` (``jax.eval_shape`` of ``init``).
        seed: Seed of the numpy generator.
        std: Standard deviation (``initializer_range``).
    """
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    for path, leaf in param_leaves(template["params"]).items():
        shape = tuple(leaf.shape)
        if path[-1] == "scale":
            value = np.ones(shape, np.float32)
        else:
            value = np.float32(std) * rng.standard_normal(shape, dtype=np.float32)
        set_leaf(params, path, jnp.asarray(value, dtype=leaf.dtype))
    return {"params": params}
