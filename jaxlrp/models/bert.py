"""A BERT encoder in plain linen, laid out like Hugging Face's ``BertModel`` state dict.

The network (Devlin et al.) with post-layer-norm residual blocks:

    h₀ = LayerNorm(word[ids] + position[0..n) + token_type[types])
    a  = LayerNorm(h + Dense(Attention(h)))          attention.output.{dense,LayerNorm}
    h' = LayerNorm(a + Dense(GELU(Dense(a))))        intermediate.dense, output.{dense,LayerNorm}

Attention is written out as plain ``jnp`` so that the traced program is the textbook pattern
the LRP rules look for (no fused kernels, no ``MultiHeadDotProductAttention``)::

    scores = einsum(q, k) / sqrt(head_dim)   →   softmax(scores)   →   einsum(probs, v)

GELU is the exact (erf) form BERT uses. Dropout is omitted (inference only); the pooler is not
part of the module (its weights are ignored on conversion).

Parameter names follow the torch keys with ``.`` written ``_`` for list indices, so a key maps
to a Flax path by splitting at the dots (``encoder.layer.3.attention.self.query.weight`` ↔
``params/encoder/layer_3/attention/self/query/kernel``):

==================  ===========================  ==================
Flax leaf           torch leaf                   layout change
==================  ===========================  ==================
``Dense/kernel``    ``Linear.weight`` (out, in)  transpose
``Dense/bias``      ``Linear.bias``              none
``Embed/embedding`` ``Embedding.weight``         none
``LayerNorm/scale`` ``LayerNorm.weight``         none
``LayerNorm/bias``  ``LayerNorm.bias``           none
==================  ===========================  ==================

References:
    J. Devlin, M.-W. Chang, K. Lee and K. Toutanova, "BERT: Pre-training of Deep Bidirectional
    Transformers for Language Understanding", NAACL 2019. Hugging Face ``transformers``,
    ``models/bert/modeling_bert.py`` (parameter names and the attention-mask convention).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.models.convert import param_leaves, set_leaf, torch_prefix

__all__ = [
    "Bert",
    "BertAttention",
    "BertConfig",
    "BertEmbeddings",
    "BertLayer",
    "BertSelfAttention",
    "convert_bert_state_dict",
    "random_bert_variables",
]

# Keys of a BertModel checkpoint that the encoder does not use.
_IGNORED_PREFIXES = ("pooler.", "embeddings.position_ids")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The hyper-parameters of a BERT encoder (names as in Hugging Face's ``config.json``).

    Defaults are all-MiniLM-L6-v2's.
    """

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BertConfig:
        """Read the fields this encoder needs from a Hugging Face ``config.json``.

        Raises:
            ValueError: If the file describes anything but an absolute-position BERT with
                exact GELU.
        """
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {config['hidden_act']!r}, expected 'gelu'")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in fields})

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden_size / num_attention_heads``."""
        return self.hidden_size // self.num_attention_heads


def _dense(config: BertConfig, features: int, name: str) -> nn.Dense:
    init = nn.initializers.normal(config.initializer_range)
    return nn.Dense(features, kernel_init=init, name=name)


def _layer_norm(config: BertConfig) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, name="LayerNorm")


class BertEmbeddings(nn.Module):
    """``LayerNorm(inputs_embeds + position_embeddings + token_type_embeddings)``.

    ``word_embeddings`` is called by :meth:`Bert.embed_tokens`, so that attributions can be
    taken with respect to the word embeddings (as LXT and Hugging Face's ``inputs_embeds`` do).
    """

    config: BertConfig

    def setup(self) -> None:
        config, init = self.config, nn.initializers.normal(self.config.initializer_range)
        self.word_embeddings = nn.Embed(config.vocab_size, config.hidden_size, embedding_init=init)
        self.position_embeddings = nn.Embed(
            config.max_position_embeddings, config.hidden_size, embedding_init=init
        )
        self.token_type_embeddings = nn.Embed(
            config.type_vocab_size, config.hidden_size, embedding_init=init
        )
        self.LayerNorm = _layer_norm(config)

    def __call__(self, inputs_embeds: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        """Add position and token-type embeddings to ``(batch, seq, hidden)`` word embeddings."""
        positions = jnp.arange(inputs_embeds.shape[1])[None, :]
        x = inputs_embeds + self.position_embeddings(positions)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, written out in ``jnp``.

    ``softmax(q kᵀ / sqrt(d) + mask_bias) v`` per head, with ``q``, ``k``, ``v`` the ``query``,
    ``key`` and ``value`` projections split into ``num_attention_heads`` heads of width ``d``.
    """

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array | None) -> jax.Array:
        """Attention output ``(batch, seq, hidden)``, heads concatenated (before ``output``).

        Args:
            x: Hidden states ``(batch, seq, hidden)``.
            mask_bias: Added to the scores, broadcastable to ``(batch, heads, seq, seq)``
                (0 for visible keys, a large negative number for padding), or ``None``.
        """
        config = self.config
        batch, seq, _ = x.shape
        heads = (batch, seq, config.num_attention_heads, config.head_dim)
        q = _dense(config, config.hidden_size, "query")(x).reshape(heads)
        k = _dense(config, config.hidden_size, "key")(x).reshape(heads)
        v = _dense(config, config.hidden_size, "value")(x).reshape(heads)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(config.head_dim)
        if mask_bias is not None:
            scores = scores + mask_bias
        probs = jax.nn.softmax(scores, axis=-1)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        return context.reshape(batch, seq, config.hidden_size)


class BertAttention(nn.Module):
    """``LayerNorm(x + dense(self_attention(x)))`` (torch: ``attention.self``/``.output``)."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array | None) -> jax.Array:
        """Post-LN residual attention block, shape preserved."""
        context = BertSelfAttention(self.config, name="self")(x, mask_bias)
        output = _BertOutput(self.config, name="output")
        return output(context, x)


class _BertOutput(nn.Module):
    """``LayerNorm(residual + dense(x))``: torch's ``BertSelfOutput`` and ``BertOutput``."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, residual: jax.Array) -> jax.Array:
        x = _dense(self.config, self.config.hidden_size, "dense")(x)
        return _layer_norm(self.config)(residual + x)


class BertLayer(nn.Module):
    """One encoder layer: attention block, then ``LayerNorm(a + dense(GELU(dense(a))))``."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array | None) -> jax.Array:
        """Hidden states after the layer, shape ``(batch, seq, hidden)``."""
        config = self.config
        a = BertAttention(config, name="attention")(x, mask_bias)
        intermediate = _Intermediate(config, name="intermediate")(a)
        return _BertOutput(config, name="output")(intermediate, a)


class _Intermediate(nn.Module):
    """``GELU(dense(x))`` with exact (erf) GELU: torch's ``BertIntermediate``."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _dense(self.config, self.config.intermediate_size, "dense")(x)
        return jax.nn.gelu(x, approximate=False)


class _Encoder(nn.Module):
    """The stack of layers, named ``layer_0`` … (torch: ``encoder.layer.N``)."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array | None) -> jax.Array:
        for index in range(self.config.num_hidden_layers):
            x = BertLayer(self.config, name=f"layer_{index}")(x, mask_bias)
        return x


class Bert(nn.Module):
    """BERT encoder: token ids → last hidden states ``(batch, seq, hidden_size)``.

    Besides ``__call__``, two methods split the model at the word embeddings, where
    token-level attributions are usually read::

        embeds = module.apply(variables, ids, method="embed_tokens")
        hidden = module.apply(variables, embeds, method="from_embeddings")

    Attributes:
        config: The hyper-parameters.
    """

    config: BertConfig = BertConfig()

    def setup(self) -> None:
        self.embeddings = BertEmbeddings(self.config)
        self.encoder = _Encoder(self.config)

    def __call__(
        self,
        token_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
    ) -> jax.Array:
        """Last hidden states for ``(batch, seq)`` integer token ids.

        Args:
            token_ids: ``(batch, seq)`` integer ids (``[CLS] … [SEP]`` as the tokenizer gives).
            attention_mask: ``(batch, seq)``, 1 for real tokens and 0 for padding; ``None``
                (default) attends to every token and adds no mask term to the program.
            token_type_ids: ``(batch, seq)`` segment ids; default zeros.

        Returns:
            float32 array ``(batch, seq, hidden_size)``.
        """
        return self.from_embeddings(self.embed_tokens(token_ids), attention_mask, token_type_ids)

    def embed_tokens(self, token_ids: jax.Array) -> jax.Array:
        """Word embeddings ``(batch, seq, hidden_size)`` (HF's ``inputs_embeds``)."""
        return self.embeddings.word_embeddings(token_ids)

    def from_embeddings(
        self,
        inputs_embeds: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
    ) -> jax.Array:
        """Last hidden states from word embeddings; arguments as in ``__call__``.

        Masked keys get ``finfo(float32).min`` added to their scores, as in ``BertModel``.
        """
        batch, seq = inputs_embeds.shape[:2]
        if token_type_ids is None:
            token_type_ids = jnp.zeros((batch, seq), jnp.int32)
        mask_bias = None
        if attention_mask is not None:
            visible = jnp.asarray(attention_mask)[:, None, None, :] > 0
            mask_bias = jnp.where(visible, 0.0, jnp.finfo(inputs_embeds.dtype).min)
        x = self.embeddings(inputs_embeds, token_type_ids)
        return self.encoder(x, mask_bias)


_TORCH_LEAF = {"kernel": "weight", "embedding": "weight", "scale": "weight", "bias": "bias"}


def convert_bert_state_dict(state_dict: Mapping[str, Any], template: Mapping) -> dict[str, dict]:
    """Turn a Hugging Face ``BertModel`` state dict into the variables of :class:`Bert`.

    Keys without a prefix (``embeddings.…``, ``encoder.…``) and with ``bert.`` (as a
    ``BertFor…`` head model saves them) are both accepted. The pooler and
    ``embeddings.position_ids`` are ignored; any other key the module does not have is an
    error, as is a missing key or a wrong shape.

    Args:
        state_dict: Torch key → array (numpy, or anything ``np.asarray`` accepts).
        template: The module's variables or ``jax.eval_shape`` of its ``init``.

    Returns:
        ``{"params": ...}`` as nested dicts of ``jax.Array`` in the template's dtypes.

    Raises:
        ValueError: Naming every missing and unexpected key, or the first key whose shape
            differs from the model's.
    """
    state = {key.removeprefix("bert."): value for key, value in state_dict.items()}
    plan = {}
    for path, leaf in param_leaves(template["params"]).items():
        key = f"{torch_prefix(path[:-1])}.{_TORCH_LEAF[path[-1]]}"
        plan[key] = (path, leaf)
    missing = sorted(set(plan) - set(state))
    unexpected = sorted(
        key for key in set(state) - set(plan) if not key.startswith(_IGNORED_PREFIXES)
    )
    if missing or unexpected:
        raise ValueError(
            f"state dict does not match the BERT encoder: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    params: dict[str, Any] = {}
    for key, (path, leaf) in plan.items():
        array = np.asarray(state[key])
        if path[-1] == "kernel":
            array = array.T
        if tuple(array.shape) != tuple(leaf.shape):
            raise ValueError(
                f"state dict entry {key!r} has shape {tuple(np.asarray(state[key]).shape)}, "
                f"the model expects {tuple(leaf.shape)} (after transposing Linear weights)"
            )
        set_leaf(params, path, jnp.asarray(array, dtype=leaf.dtype))
    return {"params": params}


def random_bert_variables(template: Mapping, seed: int, std: float = 0.02) -> dict[str, dict]:
    """BERT's initialisation drawn with numpy: kernels and embeddings ``N(0, std²)``, biases
    zero, layer-norm scales one (as ``BertPreTrainedModel._init_weights``).

    Drawing from the shapes avoids compiling ``init`` (seconds on CPU for 22M parameters).

    Args:
        template: Variables or their ``jax.ShapeDtypeStruct`` (``jax.eval_shape`` of ``init``).
        seed: Seed of the numpy generator.
        std: Standard deviation of kernels and embeddings (``initializer_range``).
    """
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    for path, leaf in param_leaves(template["params"]).items():
        shape = tuple(leaf.shape)
        if path[-1] in ("kernel", "embedding"):
            value = np.float32(std) * rng.standard_normal(shape, dtype=np.float32)
        elif path[-1] == "scale":
            value = np.ones(shape, np.float32)
        else:
            value = np.zeros(shape, np.float32)
        set_leaf(params, path, jnp.asarray(value, dtype=leaf.dtype))
    return {"params": params}
