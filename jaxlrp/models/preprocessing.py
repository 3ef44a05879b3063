"""Turn images into model inputs: resize and crop with PIL, then normalize per channel.

ImageNet models use torchvision's evaluation transform: resize the shorter side to 256
(bilinear), center-crop 224, scale ``(pixel - mean) / std`` with pixel values in [0, 255].
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["center_crop", "normalize", "resize_shorter_side", "to_pil"]


def to_pil(image: Any, mode: str) -> Any:
    """Convert a path, PIL image or array to a PIL image in ``mode`` ("RGB" or "L").

    Arrays are (H, W) or (H, W, C); uint8 arrays hold [0, 255], float arrays [0, 1]
    (scikit-image's convention). An alpha channel is dropped.

    Raises:
        ImportError: If pillow is not installed.
    """
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError("image preprocessing needs pillow; run: pip install pillow") from err
    if isinstance(image, str | os.PathLike):
        image = Image.open(image)
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        image = Image.fromarray(array[..., :3] if array.ndim == 3 else array)
    return image.convert(mode)


def resize_shorter_side(image: Any, size: int) -> Any:
    """Bilinear resize so the shorter side is ``size`` (torchvision ``Resize(size)``)."""
    from PIL import Image

    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image.resize(new, Image.BILINEAR)


def center_crop(image: Any, height: int, width: int) -> Any:
    """Center crop to (height, width) with torchvision's rounding of the offsets."""
    image_width, image_height = image.size
    top = int(round((image_height - height) / 2.0))
    left = int(round((image_width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def normalize(pixels: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(pixels - mean) / std`` per channel (last axis), pixels on the [0, 255] scale.

    Returns:
        float32 array of the same shape.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    return (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
