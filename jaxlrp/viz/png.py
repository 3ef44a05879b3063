"""Writing a single image or heatmap to a PNG file."""

from __future__ import annotations

import os
from pathlib import Path

from numpy.typing import ArrayLike

from jaxlrp.viz._optional import require
from jaxlrp.viz.images import to_rgb_uint8


def save_png(image: ArrayLike, path: str | os.PathLike) -> Path:
    """Write an RGB image, e.g. the output of :func:`jaxlrp.viz.heatmap`, as a PNG file.

    The pixels are written as they are, one file pixel per array pixel (no resampling, no
    axes). For several images with titles use :func:`jaxlrp.viz.grid` with ``path=``.

    Args:
      image: ``(H, W[, C])``, ``uint8`` or float in ``[0, 1]``.
      path: destination file.

    Returns:
      The path written, as a ``pathlib.Path``.

    Raises:
      ImportError: if Pillow is not installed (``pip install "jaxlrp[viz]"``).
    """
    pil_image = require("PIL.Image", "jaxlrp.viz.save_png")
    path = Path(path)
    pil_image.fromarray(to_rgb_uint8(image)).save(path, format="PNG")
    return path
