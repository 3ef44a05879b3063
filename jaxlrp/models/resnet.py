"""ResNet-18 and ResNet-50 in the layout of ``torchvision.models.resnet18``/``resnet50``.

torchvision's "v1.5" variant: in a bottleneck block the stride sits on the 3x3 convolution.
Projection shortcuts (``downsample``: 1x1 conv with stride, then batch norm) are used where
the stride or the width changes. Residual additions are plain ``+``. Submodule names follow
the torch state dict with ``.`` written ``_`` (``layer2_0/downsample_0``).

References:
    K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image Recognition",
    CVPR 2016. torchvision ``models/resnet.py``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxlrp.models.layers import global_avg_pool, he_normal, max_pool, torch_padding

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=torch_padding(kernel // 2),
                   use_bias=False, kernel_init=he_normal, name=name)  # fmt: skip


def _bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the (projected) input.

    Attributes:
        planes: Width of both convolutions and of the output.
        stride: Stride of the first convolution and of the projection.
    """

    planes: int
    stride: int = 1
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Block output ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = nn.relu(_bn("bn1")(_conv(self.planes, 3, self.stride, "conv1")(x)))
        out = _bn("bn2")(_conv(self.planes, 3, 1, "conv2")(out))
        return nn.relu(out + _shortcut(x, self.planes, self.stride))


class Bottleneck(nn.Module):
    """1x1 reduce → 3x3 (strided) → 1x1 expand by 4, each with batch norm, plus shortcut.

    Attributes:
        planes: Width of the inner convolutions; the output has ``4 * planes`` channels.
        stride: Stride of the 3x3 convolution and of the projection.
    """

    planes: int
    stride: int = 1
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Block output ``relu(bn3(conv3(...)) + shortcut(x))``."""
        out = nn.relu(_bn("bn1")(_conv(self.planes, 1, 1, "conv1")(x)))
        out = nn.relu(_bn("bn2")(_conv(self.planes, 3, self.stride, "conv2")(out)))
        out = _bn("bn3")(_conv(self.planes * 4, 1, 1, "conv3")(out))
        return nn.relu(out + _shortcut(x, self.planes * 4, self.stride))


def _shortcut(x: jax.Array, features: int, stride: int) -> jax.Array:
    if stride == 1 and x.shape[-1] == features:
        return x
    return _bn("downsample_1")(_conv(features, 1, stride, "downsample_0")(x))


class ResNet(nn.Module):
    """torchvision ResNet: 7x7/2 stem, 3x3/2 max pool, four stages, global average, ``fc``.

    Attributes:
        block: ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50/101/152).
        layers: Number of blocks in each of the four stages.
        num_classes: Outputs of ``fc``.
    """

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of shape (N, num_classes) for NHWC input (N, H, W, 3)."""
        x = nn.relu(_bn("bn1")(_conv(64, 7, 2, "conv1")(x)))
        x = max_pool(x, 3, 2, padding=1)
        for stage, blocks in enumerate(self.layers):
            planes = 64 * 2**stage
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                x = self.block(planes, stride, name=f"layer{stage + 1}_{index}")(x)
        x = global_avg_pool(x)
        return nn.Dense(self.num_classes, kernel_init=he_normal, name="fc")(x)
