"""A Vision Transformer in plain linen, laid out like torchvision's ``VisionTransformer``.

The network (Dosovitskiy et al.) with pre-layer-norm residual blocks, on NHWC images:

    x₀ = [class_token; Conv_p×p/p(image) as (h·w) tokens] + pos_embedding    conv_proj, encoder
    a  = x + out_proj(Attention(in_proj(LayerNorm(x))))                        ln_1, self_attention
    x' = a + Dense(GELU(Dense(LayerNorm(a))))                                  ln_2, mlp.0, mlp.3
    logits = head(LayerNorm(x_L)[:, 0])                                        encoder.ln, heads

Attention is written out as plain ``jnp`` so that the traced program is the textbook pattern
the LRP rules look for (no fused kernels, no ``MultiHeadDotProductAttention``); ``q``, ``k``,
``v`` are slices of one fused projection, as in ``nn.MultiheadAttention``::

    scores = einsum(q, k) / sqrt(head_dim)   →   softmax(scores)   →   einsum(probs, v)

GELU is the exact (erf) form, LayerNorm's ε is 1e-6 (torchvision's). Dropout is omitted
(inference only). Patches are tokens in row-major (h, w) order, like torchvision's
``flatten(2).permute(0, 2, 1)`` of the NCHW feature map.

For LRP the class token (concatenated) and the position embeddings (added) are constants,
like biases: relevance that reaches them stays there and is not passed on to the pixels.

Parameter names follow torchvision's state dict, so a torch key maps to a Flax path by the
dots (``encoder.layers.encoder_layer_3.ln_1.weight`` ↔
``params/encoder/layers/encoder_layer_3/ln_1/scale``). The exceptions and layout changes:

=======================================  ======================================  ===========
Flax leaf (under ``params/``)            torch key                               layout
=======================================  ======================================  ===========
``class_token`` (1, 1, D)                ``class_token``                         none
``conv_proj/kernel`` (p, p, 3, D)        ``conv_proj.weight`` (D, 3, p, p)       OIHW → HWIO
``encoder/pos_embedding`` (1, 1 + n, D)  ``encoder.pos_embedding``               none
``…/self_attention/in_proj/kernel``      ``….self_attention.in_proj_weight``     transpose
``…/self_attention/in_proj/bias``        ``….self_attention.in_proj_bias``       none
``…/self_attention/out_proj/kernel``     ``….self_attention.out_proj.weight``    transpose
``…/mlp_0/kernel``, ``…/mlp_3/kernel``   ``….mlp.0.weight``, ``….mlp.3.weight``  transpose
``…/ln_1/scale``                         ``….ln_1.weight``                       none
``heads/head/kernel`` (D, classes)       ``heads.head.weight``                   transpose
=======================================  ======================================  ===========

Every ``bias`` maps to the torch ``bias`` of the same module (``in_proj`` above is the one
irregular name); ``ln_2`` and ``encoder/ln`` are like ``ln_1``. ``in_proj``'s kernel is
``(D, 3D)`` and its output ``[q | k | v]``, each ``D`` wide with the heads contiguous within
it, exactly as the rows of torch's ``(3D, D)`` ``in_proj_weight``.

References:
    A. Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition
    at Scale", ICLR 2021. torchvision ``models/vision_transformer.py`` (layout and names).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.models.convert import param_leaves, set_leaf

__all__ = [
    "VIT_B16",
    "VIT_TINY",
    "ViT",
    "ViTConfig",
    "ViTEncoderBlock",
    "ViTSelfAttention",
    "convert_vit_state_dict",
    "random_vit_variables",
    "vit_torch_key",
]


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """The hyper-parameters of a ViT (names as in torchvision's ``VisionTransformer``).

    Defaults are ViT-B/16's (``torchvision.models.vit_b_16``).
    """

    image_size: int = 224
    patch_size: int = 16
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    mlp_dim: int = 3072
    num_classes: int = 1000
    layer_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden_dim / num_heads``."""
        return self.hidden_dim // self.num_heads

    @property
    def seq_length(self) -> int:
        """Tokens per image: the class token and ``(image_size / patch_size)²`` patches."""
        return 1 + (self.image_size // self.patch_size) ** 2


VIT_B16 = ViTConfig()
VIT_TINY = ViTConfig(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64,
                     mlp_dim=128, num_classes=10)  # fmt: skip


def _layer_norm(config: ViTConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, name=name)


class ViTSelfAttention(nn.Module):
    """Multi-head self-attention, written out in ``jnp`` (torch: ``nn.MultiheadAttention``).

    ``out_proj(softmax(q kᵀ / sqrt(d)) v)`` per head, with ``[q | k | v] = in_proj(x)`` split
    into ``num_heads`` heads of width ``d``.
    """

    config: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Attention output ``(batch, seq, hidden)`` of hidden states ``(batch, seq, hidden)``."""
        config = self.config
        batch, seq, width = x.shape
        heads = (batch, seq, config.num_heads, config.head_dim)
        qkv = nn.Dense(3 * width, name="in_proj")(x)
        # Plain slices (not jnp.split), so each of q, k, v is a structural view of in_proj.
        q, k, v = (qkv[..., i * width : (i + 1) * width].reshape(heads) for i in range(3))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(config.head_dim)
        probs = jax.nn.softmax(scores, axis=-1)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, seq, width)
        return nn.Dense(width, name="out_proj")(context)


class ViTEncoderBlock(nn.Module):
    """One pre-LN block: ``a = x + attn(ln_1(x))``, then ``a + mlp(ln_2(a))`` (torchvision's
    ``EncoderBlock``; the MLP is ``Dense → exact GELU → Dense``, ``mlp.0`` and ``mlp.3``)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Hidden states after the block, shape ``(batch, seq, hidden)``."""
        config = self.config
        a = x + ViTSelfAttention(config, name="self_attention")(_layer_norm(config, "ln_1")(x))
        y = nn.Dense(config.mlp_dim, name="mlp_0")(_layer_norm(config, "ln_2")(a))
        y = nn.Dense(config.hidden_dim, name="mlp_3")(jax.nn.gelu(y, approximate=False))
        return a + y


class _Layers(nn.Module):
    """The blocks, named ``encoder_layer_0`` … (torch: ``encoder.layers.encoder_layer_N``)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for index in range(self.config.num_layers):
            x = ViTEncoderBlock(self.config, name=f"encoder_layer_{index}")(x)
        return x


class _Encoder(nn.Module):
    """``ln(layers(x + pos_embedding))`` (torch: ``Encoder``)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        config = self.config
        shape = (1, config.seq_length, config.hidden_dim)
        pos_embedding = self.param("pos_embedding", nn.initializers.normal(0.02), shape)
        x = _Layers(config, name="layers")(x + pos_embedding)
        return _layer_norm(config, "ln")(x)


class _Heads(nn.Module):
    """The classifier on the class token (torch: ``heads.head``)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.config.num_classes, name="head")(x)


class ViT(nn.Module):
    """Vision Transformer: NHWC images ``(batch, H, W, 3)`` → logits ``(batch, num_classes)``.

    Attributes:
        config: The hyper-parameters (:data:`VIT_B16` by default).
    """

    config: ViTConfig = VIT_B16

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Logits for float images of ``config.image_size`` squared, channels last.

        Raises:
            ValueError: If the images are not ``(batch, image_size, image_size, C)``.
        """
        config, size = self.config, self.config.image_size
        if images.ndim != 4 or images.shape[1:3] != (size, size):
            raise ValueError(f"ViT expects (batch, {size}, {size}, C) images, got "
                             f"{tuple(images.shape)}")  # fmt: skip
        patch = (config.patch_size, config.patch_size)
        x = nn.Conv(config.hidden_dim, patch, patch, padding="VALID", name="conv_proj")(images)
        batch = x.shape[0]
        x = x.reshape(batch, -1, config.hidden_dim)
        class_token = self.param("class_token", nn.initializers.zeros,
                                 (1, 1, config.hidden_dim))  # fmt: skip
        x = jnp.concatenate([jnp.broadcast_to(class_token, (batch, 1, config.hidden_dim)), x], 1)
        x = _Encoder(config, name="encoder")(x)
        return _Heads(config, name="heads")(x[:, 0])


_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias"}


def vit_torch_key(path: tuple[str, ...]) -> str:
    """Torchvision state-dict key of a Flax parameter path (see the module's table).

    ``("encoder", "layers", "encoder_layer_0", "mlp_3", "kernel")`` →
    ``"encoder.layers.encoder_layer_0.mlp.3.weight"``.
    """
    *modules, leaf = path
    if leaf not in _TORCH_LEAF:  # class_token, pos_embedding: parameters of their own
        return ".".join(path)
    if modules and modules[-1] == "in_proj":
        return ".".join([*modules[:-1], f"in_proj_{_TORCH_LEAF[leaf]}"])
    return ".".join([*(re.sub(r"^mlp_(\d+)$", r"mlp.\1", m) for m in modules), _TORCH_LEAF[leaf]])


def _torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape of a Flax leaf: OIHW for a conv kernel, (out, in) for a dense one."""
    if path[-1] == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(reversed(shape)) if path[-1] == "kernel" else tuple(shape)


def _from_torch_layout(path: tuple[str, ...], array: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel" and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)  # OIHW → HWIO
    if path[-1] == "kernel":
        return array.T
    return array


def convert_vit_state_dict(state_dict: Mapping[str, Any], template: Mapping) -> dict[str, dict]:
    """Turn a torchvision ``VisionTransformer`` state dict into the variables of :class:`ViT`.

    Strict: a missing or unexpected key or a wrong shape is an error. ``vit_b_16``'s weights
    load into ``ViT(VIT_B16)``; any ``VisionTransformer`` without a representation layer
    loads into the :class:`ViT` of the same :class:`ViTConfig`.

    Args:
        state_dict: Torch key → array (numpy, or anything ``np.asarray`` accepts).
        template: The module's variables or ``jax.eval_shape`` of its ``init``.

    Returns:
        ``{"params": ...}`` as nested dicts of ``jax.Array`` in the template's dtypes.

    Raises:
        ValueError: Naming every missing and unexpected key, or the first key whose shape
            differs from the model's (both in torch layout).
    """
    leaves = param_leaves(template["params"])
    plan = {vit_torch_key(path): (path, leaf) for path, leaf in leaves.items()}
    missing = sorted(set(plan) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(plan))
    if missing or unexpected:
        raise ValueError(
            f"state dict does not match the ViT: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    params: dict[str, Any] = {}
    for key, (path, leaf) in plan.items():
        array = np.asarray(state_dict[key])
        expected = _torch_shape(path, tuple(leaf.shape))
        if tuple(array.shape) != expected:
            raise ValueError(
                f"state dict entry {key!r} has shape {tuple(array.shape)}, "
                f"the model expects {expected}"
            )
        set_leaf(params, path, jnp.asarray(_from_torch_layout(path, array), dtype=leaf.dtype))
    return {"params": params}


def random_vit_variables(template: Mapping, seed: int) -> dict[str, dict]:
    """Random ViT variables drawn with numpy from the shapes of ``template``.

    Kernels (conv and dense) are LeCun-normal, ``N(0, 1 / fan_in)`` (fan_in: all kernel axes
    but the last, as torchvision initialises ``conv_proj``); the class token and position
    embeddings ``N(0, 0.02²)``; biases zero; layer-norm scales one. Unlike torchvision the
    head is random (torchvision zeroes it, which makes every logit 0).

    Args:
        template: Variables or their ``jax.ShapeDtypeStruct`` (``jax.eval_shape`` of ``init``).
        seed: Seed of the numpy generator; the same seed gives the same variables.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    for path, leaf in param_leaves(template["params"]).items():
        shape = tuple(leaf.shape)
        if path[-1] == "kernel":
            std = np.float32(1.0 / math.sqrt(int(np.prod(shape[:-1]))))
            value = std * rng.standard_normal(shape, dtype=np.float32)
        elif path[-1] in ("class_token", "pos_embedding"):
            value = np.float32(0.02) * rng.standard_normal(shape, dtype=np.float32)
        elif path[-1] == "scale":
            value = np.ones(shape, np.float32)
        else:
            value = np.zeros(shape, np.float32)
        set_leaf(params, path, jnp.asarray(value, dtype=leaf.dtype))
    return {"params": params}
