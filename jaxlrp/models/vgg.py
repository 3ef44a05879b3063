"""VGG-16 (with and without batch norm) in the layout of ``torchvision.models.vgg16``.

Submodule names follow the torch state dict with ``.`` written ``_`` (``features_0``,
``classifier_6``), so ``features.0.weight`` converts to ``params/features_0/kernel``.
Dropout is omitted (inference only). The classifier flattens the NHWC feature map as is; the
weight converter permutes the input axis of ``classifier.0.weight`` from torch's (C, H, W)
order into (H, W, C) order, so the two models compute the same function.

References:
    K. Simonyan and A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", ICLR 2015. torchvision ``models/vgg.py`` (configuration "D").
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxlrp.models.layers import adaptive_avg_pool, he_normal, max_pool, torch_padding

__all__ = ["VGG", "VGG16_CONFIG"]

VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG(nn.Module):
    """torchvision VGG: ``features`` → ``AdaptiveAvgPool2d((7, 7))`` → 3-layer classifier.

    Attributes:
        config: Conv widths and ``"M"`` (2x2 max pool, stride 2) in order.
        batch_norm: Insert ``BatchNorm2d`` (eps 1e-5, running statistics) after each conv.
        num_classes: Outputs of the last linear layer.
    """

    config: tuple[int | str, ...] = VGG16_CONFIG
    batch_norm: bool = False
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of shape (N, num_classes) for NHWC input (N, H, W, 3), H and W >= 32."""
        index = 0
        for item in self.config:
            if item == "M":
                x = max_pool(x, 2, 2)
                index += 1
                continue
            x = nn.Conv(item, (3, 3), padding=torch_padding(1), kernel_init=he_normal,
                        name=f"features_{index}")(x)  # fmt: skip
            index += 1
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=True, epsilon=1e-5,
                                 name=f"features_{index}")(x)  # fmt: skip
                index += 1
            x = nn.relu(x)
            index += 1
        x = adaptive_avg_pool(x, (7, 7))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(4096, kernel_init=he_normal, name="classifier_0")(x))
        x = nn.relu(nn.Dense(4096, kernel_init=he_normal, name="classifier_3")(x))
        return nn.Dense(self.num_classes, kernel_init=he_normal, name="classifier_6")(x)
