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


Region = tuple[int, int, int, int]
"""``(top, left, height, width)`` of a rectangle of an image, in its pixels."""


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
    resize: bool = False,
    region: Region | None = None,
) -> np.ndarray:
    """Blend a relevance heatmap over the input image.

    ``out = (1 - alpha) * image + alpha * heatmap(relevance)``, per pixel and channel, computed
    in ``[0, 1]`` and returned as ``uint8``.

    The relevance is usually of the model's input, which may be a resized and cropped copy of
    the photo. To draw it over the original photo, pass ``resize=True`` (the per-pixel
    relevance is resized bilinearly before it is coloured) and, for a cropped input, the
    ``region`` of the photo that the input shows, e.g. from :func:`crop_region`; outside the
    region the photo is left as it is::

        from jaxlrp import models
        from jaxlrp.viz import crop_region

        info = models.info("efficientnet_lite0")  # resize 256, centre crop 224
        crop = crop_region(photo.shape, info.input_shape[:2], shorter_side=info.resize)
        rgb = viz.overlay(photo, relevance, resize=True, region=crop)

    Args:
      image: ``(H, W[, C])`` or ``(N, H, W[, C])``; ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]`` (grayscale is repeated to RGB, an alpha channel is dropped).
      relevance: relevance of the same spatial shape (of the ``region``'s, if given), as for
        :func:`heatmap`; of any spatial shape with ``resize=True``.
      alpha: weight of the heatmap, in ``[0, 1]``.
      cmap: as for :func:`heatmap`.
      reduce: as for :func:`heatmap`.
      symmetric: as for :func:`heatmap`.
      percentile: as for :func:`heatmap`.
      gamma: as for :func:`heatmap`.
      channel_axis: as for :func:`heatmap`.
      resize: resize the relevance (after the channel reduction, bilinearly, with
        antialiasing when it shrinks) to the image's size, or to the region's.
      region: ``(top, left, height, width)``: draw the heatmap on this part of the image only.

    Returns:
      ``uint8`` RGB of shape ``(H, W, 3)`` or ``(N, H, W, 3)``.

    Raises:
      ValueError: if ``alpha`` is outside ``[0, 1]``, the region does not lie inside the image,
        or the shapes do not match (the message says how to resize).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    r = _pixel_relevance(relevance, reduce, channel_axis)
    base = to_rgb_float(image, batched=r.ndim == 3)
    size = base.shape[-3:-1]
    top, left, height, width = _check_region(region, size)
    if resize and r.shape[-2:] != (height, width):
        r = _resize(r, (height, width))
    heat = colorize(r, cmap=cmap, symmetric=symmetric, percentile=percentile, gamma=gamma,
                    batched=r.ndim == 3)  # fmt: skip
    if base.shape[:-3] != heat.shape[:-3] or heat.shape[-3:-1] != (height, width):
        where = f"the region {region} of the image" if region is not None else "the image"
        raise ValueError(
            f"image {np.shape(image)} and relevance {np.shape(relevance)} differ in batch or "
            f"spatial size (rendered {heat.shape[:-1]} for {where}, {base.shape[:-3]} + "
            f"{(height, width)}); pass resize=True to resize the relevance to the image, and, "
            "when the model saw a crop of it, region=crop_region(image.shape, input_size, "
            "shorter_side) for where the crop lies"
        )
    out = base.copy()
    window = (..., slice(top, top + height), slice(left, left + width), slice(None))
    out[window] = (1.0 - alpha) * base[window] + alpha * (heat / 255.0)
    return to_uint8(out)


def crop_region(
    image_shape: tuple[int, ...], input_size: tuple[int, int], shorter_side: int | None = None
) -> Region:
    """Where a model's input lies in the original image, for :func:`overlay`'s ``region``.

    The preprocessing of :mod:`jaxlrp.models` (torchvision's evaluation transform): the image
    is resized so that its shorter side is ``shorter_side`` and the centre ``input_size`` is
    cropped; with ``shorter_side=None`` the whole image is resized to ``input_size`` and the
    region is the whole image.

    Args:
      image_shape: the original image's shape, ``(H, W[, C])``.
      input_size: ``(height, width)`` of the model input, e.g. ``(224, 224)``.
      shorter_side: the shorter side before the crop, e.g. ``256``; ``models.info(name).resize``.

    Returns:
      ``(top, left, height, width)`` in the original image's pixels (rounded).

    Raises:
      ValueError: if the crop is larger than the resized image.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    if shorter_side is None:
        return (0, 0, h, w)
    # the same integer sizes and offsets as models.preprocessing (PIL sizes are (width, height))
    if w <= h:
        new_w, new_h = shorter_side, int(shorter_side * h / w)
    else:
        new_w, new_h = int(shorter_side * w / h), shorter_side
    crop_h, crop_w = input_size
    if crop_h > new_h or crop_w > new_w:
        raise ValueError(f"input_size {input_size} is larger than the resized image "
                         f"{(new_h, new_w)}")  # fmt: skip
    top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
    sy, sx = h / new_h, w / new_w
    return (round(top * sy), round(left * sx), round(crop_h * sy), round(crop_w * sx))


def _check_region(region: Region | None, size: tuple[int, int]) -> Region:
    """The region as four ints (the whole image when None), checked to lie inside it."""
    if region is None:
        return (0, 0, int(size[0]), int(size[1]))
    top, left, height, width = (int(v) for v in region)
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > size[0] \
            or left + width > size[1]:  # fmt: skip
        raise ValueError(f"region (top, left, height, width) = {tuple(region)} does not lie "
                         f"inside the image of size {tuple(size)}")  # fmt: skip
    return (top, left, height, width)


def _resize(r: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(H, W)`` or ``(N, H, W)`` to ``size`` (antialiased when shrinking,
    ``jax.image.resize``'s ``"linear"``)."""
    import jax

    shape = (*r.shape[:-2], *size)
    return np.asarray(jax.image.resize(r.astype(np.float32), shape, "linear"), np.float64)
