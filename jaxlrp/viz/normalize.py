"""Channel reduction and scaling of relevance maps into the unit interval.

Relevance is signed: positive evidence for the explained output, negative evidence against it.
To render it faithfully, zero relevance must land on the neutral centre of a diverging colour
map, and the two signs must be scaled by the *same* factor, so that ``r`` and ``-r`` give
mirrored images. The functions here work on NumPy or JAX arrays and always return NumPy arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

Reduction = Literal["sum", "abs", "pos", "norm"]
REDUCTIONS: tuple[str, ...] = ("sum", "abs", "pos", "norm")


def reduce_channels(relevance: ArrayLike, how: Reduction = "sum", axis: int = -1) -> np.ndarray:
    """Collapse the colour-channel axis of a relevance map into one value per pixel.

    With ``r_c`` the relevance of channel ``c`` at a pixel:

    - ``"sum"``:  ``sum_c r_c`` (signed; conserves total relevance, the LRP default),
    - ``"abs"``:  ``sum_c |r_c|``,
    - ``"pos"``:  ``sum_c max(r_c, 0)``,
    - ``"norm"``: ``sqrt(sum_c r_c**2)``.

    Args:
      relevance: array with a channel axis, e.g. ``(H, W, C)`` or ``(N, H, W, C)``.
      how: one of ``"sum"``, ``"abs"``, ``"pos"``, ``"norm"``.
      axis: the channel axis (last by default, i.e. NHWC / HWC layout).

    Returns:
      A float NumPy array with ``axis`` removed.

    Raises:
      ValueError: for an unknown ``how``.
    """
    r = np.asarray(relevance, dtype=np.float64)
    if how == "sum":
        return r.sum(axis=axis)
    if how == "abs":
        return np.abs(r).sum(axis=axis)
    if how == "pos":
        return np.maximum(r, 0.0).sum(axis=axis)
    if how == "norm":
        return np.sqrt(np.square(r).sum(axis=axis))
    raise ValueError(f"unknown channel reduction {how!r}; valid ones are {', '.join(REDUCTIONS)}")


def relevance_scale(
    relevance: ArrayLike, percentile: float | None = None, batched: bool = False
) -> np.ndarray:
    """The scale ``s`` by which relevance is divided: ``max |r|`` or a percentile of ``|r|``.

    Args:
      relevance: any-shaped array.
      percentile: if given (in ``(0, 100]``), ``s`` is this percentile of ``|r|`` instead of
        its maximum; larger values will be clipped by :func:`normalize`.
      batched: if True, one scale per entry of the leading axis (shape ``(N,)``); otherwise
        one scale for the whole array (shape ``()``).

    Returns:
      The non-negative scale(s); NaNs in ``relevance`` are ignored.
    """
    if percentile is not None and not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    a = np.abs(np.asarray(relevance, dtype=np.float64))
    if batched:
        a = a.reshape(a.shape[0], -1)
    else:
        a = a.reshape(1, -1)
    if a.shape[1] == 0 or np.all(np.isnan(a)):
        scale = np.zeros(a.shape[0])
    elif percentile is None:
        scale = np.nanmax(a, axis=1)
    else:
        scale = np.nanpercentile(a, percentile, axis=1)
    return scale if batched else scale[0]


def normalize(
    relevance: ArrayLike,
    symmetric: bool = True,
    percentile: float | None = None,
    gamma: float | None = None,
    batched: bool = False,
) -> np.ndarray:
    """Scale relevance into ``[0, 1]`` for a colour map, keeping zero at a fixed position.

    With ``s = max |r|`` (or the ``percentile``-th percentile of ``|r|``) and
    ``x = clip(r / s, -1, 1)``, optionally sharpened by ``x <- sign(x) * |x| ** gamma``:

    - symmetric mode (default): ``(x + 1) / 2``, so zero maps to ``0.5`` (the centre of a
      diverging map), ``+s`` to ``1`` and ``-s`` to ``0``; ``normalize(-r) == 1 - normalize(r)``
      and ``normalize(c * r) == normalize(r)`` for any ``c > 0``.
    - absolute mode (``symmetric=False``): ``|x|``, so zero maps to ``0`` (the bottom of a
      sequential map such as ``hot`` or ``gray``) regardless of sign.

    An all-zero map (``s == 0``) maps entirely to the neutral value. This is the symmetric
    normalization used for LRP heatmaps since Bach et al. (2015); percentile clipping keeps a
    few extreme pixels from washing out the rest.

    Args:
      relevance: any-shaped NumPy or JAX array, already reduced to one value per pixel.
      symmetric: signed (diverging) mode if True, absolute (magnitude) mode if False.
      percentile: optional percentile of ``|r|`` used as the scale, e.g. ``99.5``.
      gamma: optional exponent ``> 0`` applied to the magnitude; ``< 1`` brightens weak relevance.
      batched: if True, each entry of the leading axis is scaled independently.

    Returns:
      A float NumPy array of the same shape with values in ``[0, 1]``.

    References:
      Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
      Layer-Wise Relevance Propagation", PLOS ONE 10(7), 2015.
    """
    if gamma is not None and gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    r = np.asarray(relevance, dtype=np.float64)
    scale = relevance_scale(r, percentile=percentile, batched=batched)
    if batched:
        scale = scale.reshape((-1,) + (1,) * (r.ndim - 1))
    safe = np.where(scale > 0, scale, 1.0)
    x = np.where(scale > 0, r / safe, 0.0)
    x = np.clip(np.nan_to_num(x, nan=0.0), -1.0, 1.0)
    if gamma is not None:
        x = np.sign(x) * np.abs(x) ** gamma
    return (x + 1.0) / 2.0 if symmetric else np.abs(x)
