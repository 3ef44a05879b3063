"""The MNIST CNN of the ``digit-recognizer-py`` package (``digit_recognizer.model.CNN``).

Three blocks of 3x3 convolution (padding 1) → ReLU → 2x2 max pool (widths 32, 64, 128;
28 → 14 → 7 → 3 pixels, torch's floor mode), then ``Linear(1152, 256)`` → ReLU →
``Linear(256, 10)``. Names follow the torch state dict (``conv_layers_0``, ``fc_layers_2``).
The feature map is flattened in NHWC order; the converter permutes ``fc_layers.0.weight``
from torch's (C, H, W) flatten order accordingly.

References:
    Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to
    document recognition", Proc. IEEE 1998. ``digit-recognizer-py`` 0.1.0 on PyPI.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxlrp.models.layers import he_normal, max_pool, torch_padding

__all__ = ["MnistCNN"]


class MnistCNN(nn.Module):
    """conv32–conv64–conv128 (3x3, ReLU, 2x2 max pool each) → fc 1152→256→num_classes.

    Attributes:
        num_classes: Outputs of the last linear layer (10 digits).
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits (N, num_classes) for normalized NHWC input (N, 28, 28, 1)."""
        for index, width in zip((0, 3, 6), (32, 64, 128), strict=True):
            x = nn.Conv(width, (3, 3), padding=torch_padding(1), kernel_init=he_normal,
                        name=f"conv_layers_{index}")(x)  # fmt: skip
            x = max_pool(nn.relu(x), 2, 2)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(256, kernel_init=he_normal, name="fc_layers_0")(x))
        return nn.Dense(self.num_classes, kernel_init=he_normal, name="fc_layers_2")(x)
