"""A titled grid of images and heatmaps as a matplotlib figure."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from jaxlrp.viz._optional import require
from jaxlrp.viz.images import to_rgb_uint8

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _as_list(images: ArrayLike | Sequence[ArrayLike]) -> list[np.ndarray]:
    """Split an ``(N, H, W[, C])`` batch array into images; keep a sequence as it is."""
    if hasattr(images, "shape") and np.ndim(images) == 4:
        return list(np.asarray(images))
    if hasattr(images, "shape") and np.ndim(images) in (2, 3):
        return [np.asarray(images)]
    return [np.asarray(image) for image in images]


def grid(
    images: ArrayLike | Sequence[ArrayLike],
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    path: str | os.PathLike | None = None,
    cell_size: float = 3.0,
    dpi: int = 100,
) -> Figure:
    """Lay out images and heatmaps side by side in a matplotlib figure, with optional titles.

    Each item is shown as RGB (see :func:`jaxlrp.viz.images.to_rgb_float` for accepted
    shapes and dtypes; render relevance with :func:`jaxlrp.viz.heatmap` first). The figure is
    built without ``pyplot``, so no window opens and no global figure state is touched; it
    still displays inline in Jupyter.

    Args:
      images: a sequence of images, or one ``(N, H, W[, C])`` batch array.
      titles: optional title per image (same length as ``images``).
      ncols: number of columns; at most 4 by default.
      path: if given, the figure is also written there (PNG unless the suffix says otherwise).
      cell_size: size of one cell in inches.
      dpi: resolution used when saving.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      ValueError: if there are no images, or ``titles`` has the wrong length.
      ImportError: if matplotlib is not installed (``pip install "jaxlrp[viz]"``).
    """
    figure_module = require("matplotlib.figure", "jaxlrp.viz.grid")
    items = _as_list(images)
    if not items:
        raise ValueError("grid needs at least one image")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"got {len(titles)} titles for {len(items)} images")
    ncols = min(len(items), 4) if ncols is None else ncols
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    nrows = math.ceil(len(items) / ncols)
    title_space = 0.3 if titles is not None else 0.0
    fig = figure_module.Figure(
        figsize=(cell_size * ncols, (cell_size + title_space) * nrows), dpi=dpi,
        layout="constrained",
    )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index < len(items):
            ax.imshow(to_rgb_uint8(items[index]), interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[index]))
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)
    return fig
