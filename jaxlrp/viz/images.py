"""Conversion of input images to RGB, for blending and display.

An image is either ``uint8`` in ``[0, 255]`` or floating point in ``[0, 1]``, laid out as
``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (the alpha channel is dropped), with
an optional leading batch axis when ``batched`` is set.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_FLOAT_TOLERANCE = 1e-3


def to_rgb_float(image: ArrayLike, batched: bool = False) -> np.ndarray:
    """Convert an image to float RGB in ``[0, 1]`` with a trailing axis of size 3.

    ``uint8`` images are divided by 255; float images must already lie in ``[0, 1]`` (a tolerance
    of 1e-3 is clipped away). Grayscale images are repeated over three channels.

    Args:
      image: ``(H, W)`` or ``(H, W, C)`` with ``C`` in ``{1, 3, 4}``; with ``batched``, a
        leading ``N`` axis in addition.
      batched: whether the first axis is a batch axis.

    Returns:
      A float64 array of shape ``(..., H, W, 3)``.

    Raises:
      ValueError: for an unsupported shape, or a float image outside ``[0, 1]`` (e.g. one that
        is still mean/std-normalized for the model, or in ``[0, 255]``).
    """
    a = np.asarray(image)
    spatial = 3 if batched else 2
    if a.dtype == np.uint8:
        x = a.astype(np.float64) / 255.0
    elif a.dtype == np.bool_:
        x = a.astype(np.float64)
    else:
        x = a.astype(np.float64)
        lo, hi = (float(np.nanmin(x)), float(np.nanmax(x))) if x.size else (0.0, 1.0)
        if lo < -_FLOAT_TOLERANCE or hi > 1.0 + _FLOAT_TOLERANCE:
            raise ValueError(
                f"a float image must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "pass the un-normalized image, or a uint8 image in [0, 255]"
            )
        x = np.clip(x, 0.0, 1.0)
    if x.ndim == spatial:
        x = x[..., None]
    if x.ndim != spatial + 1 or x.shape[-1] not in (1, 3, 4):
        layout = "(N, H, W[, C])" if batched else "(H, W[, C])"
        raise ValueError(f"expected an image of shape {layout} with C in 1, 3, 4; got {a.shape}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x[..., :3]


def to_rgb_uint8(image: ArrayLike, batched: bool = False) -> np.ndarray:
    """Convert an image to ``uint8`` RGB; see :func:`to_rgb_float` for accepted inputs."""
    return np.round(to_rgb_float(image, batched=batched) * 255.0).astype(np.uint8)
