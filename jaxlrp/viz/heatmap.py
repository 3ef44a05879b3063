"""Rendering relevance as RGB heatmaps, alone or blended over the input image."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from jaxlrp.viz.colormaps import ColorMap, get_colormap, to_uint8
from jaxlrp.viz.images import to_rgb_float
from jaxlrp.viz.normalize import Reduction, normalize, reduce_channels


def colorize(
    relevance: ArrayLike,
    cmap: str | ColorMap = "bwr",
    symmetric: bool | None = None,
    percentile: float | None = None,
    gamma: float | None = None,
    batched: bool = False,
) -> np.ndarray:
    """Colour a relevance map that has one value per pixel: ``cmap(normalize(r))`` as ``uint8``.

    Args:
      relevance: relevance of any shape, e.g. ``(H, W)``; no channel reduction is done.
      cmap: colour map name (see :func:`jaxlrp.viz.available_colormaps`) or :class:`ColorMap`.
      symmetric: normalization mode (see :func:`jaxlrp.viz.normalize`); by default symmetric
        for diverging maps (``bwr``, ``seismic``, ``coldnhot``) and absolute for sequential
        ones (``hot``, ``cold``, ``gray``).
      percentile: optional percentile of ``|r|`` used as the scale, e.g. ``99.5``.
      gamma: optional exponent applied to the normalized magnitude.
      batched: if True, each entry of the leading axis is normalized on its own.

    Returns:
      A ``uint8`` array of shape ``relevance.shape + (3,)``.
    """
    colormap = get_colormap(cmap)
    if symmetric is None:
        symmetric = colormap.diverging
    x = normalize(relevance, symmetric=symmetric, percentile=percentile, gamma=gamma,
                  batched=batched)
    return to_uint8(colormap(x))


def _pixel_relevance(relevance: ArrayLike, reduce: Reduction | None, channel_axis: int):
    """Reduce channels if asked and check the result is ``(H, W)`` or ``(N, H, W)``."""
    r = np.asarray(relevance, dtype=np.float64)
    if reduce is not None:
        if r.ndim not in (3, 4):
            raise ValueError(
                f"expected relevance of shape (H, W, C) or (N, H, W, C), got {r.shape}; "
                "pass reduce=None for relevance without a channel axis"
            )
        r = reduce_channels(r, how=reduce, axis=channel_axis)
    if r.ndim not in (2, 3):
        raise ValueError(f"expected per-pixel relevance (H, W) or (N, H, W), got {r.shape}")
    return r


def heatmap(
    relevance: ArrayLike,
    cmap: str | ColorMap = "bwr",
    reduce: Reduction | None = "sum",
    symmetric: bool | None = None,
    percentile: float | None = None,
    gamma: float | None = None,
    channel_axis: int = -1,
) -> np.ndarray:
    """Render input relevance as an RGB heatmap.

    Channels are reduced with :func:`jaxlrp.viz.reduce_channels` (sum by default), the result
    is normalized per image with :func:`jaxlrp.viz.normalize` (``r / max|r|``, zero at the
    centre of diverging maps) and coloured with ``cmap``.

    Args:
      relevance: ``(H, W, C)`` or ``(N, H, W, C)`` NumPy or JAX array (``(H, W)`` or
        ``(N, H, W)`` with ``reduce=None``).
      cmap: colour map name or :class:`ColorMap`; ``"bwr"`` shows positive relevance red,
        negative blue and zero white.
      reduce: channel reduction (``"sum"``, ``"abs"``, ``"pos"``, ``"norm"``) or None.
      symmetric: normalization mode; defaults to the colour map's (see :func:`colorize`).
      percentile: optional percentile of ``|r|`` used as the scale, e.g. ``99.5``, so a few
        extreme pixels do not wash out the rest.
      gamma: optional exponent applied to the normalized magnitude.
      channel_axis: the channel axis of ``relevance`` (last for NHWC / HWC).

    Returns:
      ``uint8`` RGB of shape ``(H, W, 3)``, or ``(N, H, W, 3)`` for a batch.
    """
    r = _pixel_relevance(relevance, reduce, channel_axis)
    return colorize(r, cmap=cmap, symmetric=symmetric, percentile=percentile, gamma=gamma,
                    batched=r.ndim == 3)


def overlay(
    image: ArrayLike,
    relevance: ArrayLike,
    alpha: float = 0.5,
    cmap: str | ColorMap = "bwr",
    reduce: Reduction | None = "sum",
    symmetric: bool | None = None,
    percentile: float | None = None,
    gamma: float | None = None,
    channel_axis: int = -1,
) -> np.ndarray:
    """Blend a relevance heatmap over the input image.

    ``out = (1 - alpha) * image + alpha * heatmap(relevance)``, per pixel and channel, computed
    in ``[0, 1]`` and returned as ``uint8``.

    Args:
      image: ``(H, W[, C])`` or ``(N, H, W[, C])``; ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]`` (grayscale is repeated to RGB, an alpha channel is dropped).
      relevance: relevance of the same spatial shape, as for :func:`heatmap`.
      alpha: weight of the heatmap, in ``[0, 1]``.
      cmap, reduce, symmetric, percentile, gamma, channel_axis: as for :func:`heatmap`.

    Returns:
      ``uint8`` RGB of shape ``(H, W, 3)`` or ``(N, H, W, 3)``.

    Raises:
      ValueError: if ``alpha`` is outside ``[0, 1]`` or the shapes do not match.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    heat = heatmap(relevance, cmap=cmap, reduce=reduce, symmetric=symmetric,
                   percentile=percentile, gamma=gamma, channel_axis=channel_axis)
    base = to_rgb_float(image, batched=heat.ndim == 4)
    if base.shape != heat.shape:
        raise ValueError(
            f"image {np.shape(image)} and relevance {np.shape(relevance)} differ in batch or "
            f"spatial size (rendered {base.shape[:-1]} vs {heat.shape[:-1]})"
        )
    return to_uint8((1.0 - alpha) * base + alpha * (heat / 255.0))
