"""Named colour maps for relevance, defined as piecewise-linear RGB ramps.

The maps users of LRP tools expect are built in, so heatmaps need only NumPy:

- diverging (zero at the centre): ``bwr`` (blue-white-red), ``seismic`` (dark blue-blue-white-
  red-dark red), ``coldnhot`` (cyan-blue-black-red-yellow: cold colours for negative, hot
  colours for positive relevance, black at zero);
- sequential (zero at the bottom): ``hot`` (black-red-yellow-white), ``cold`` (black-blue-cyan),
  ``gray`` / ``grey`` (black-white).

``bwr``, ``seismic``, ``hot`` and ``gray`` follow matplotlib's definitions of the same names,
but are interpolated exactly (no 256-entry lookup table), so the centre of ``bwr`` is pure
white. Any other name is looked up in matplotlib, if it is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from jaxlrp.viz._optional import require

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class ColorMap:
    """A piecewise-linear colour map from ``[0, 1]`` to RGB.

    Attributes:
      name: the name under which the map is registered.
      positions: increasing anchor positions, starting at 0 and ending at 1.
      colors: one RGB triple in ``[0, 1]`` per anchor.
      diverging: True if the map's centre (``0.5``) is its neutral colour, i.e. it is meant for
        signed relevance normalized symmetrically; False for sequential maps whose neutral
        colour is at ``0``.
    """

    name: str
    positions: tuple[float, ...]
    colors: tuple[RGB, ...]
    diverging: bool

    def __post_init__(self) -> None:
        if len(self.positions) != len(self.colors) or len(self.positions) < 2:
            raise ValueError("a ColorMap needs at least two anchors and one colour per anchor")
        if self.positions[0] != 0.0 or self.positions[-1] != 1.0:
            raise ValueError("ColorMap anchors must start at 0 and end at 1")
        if any(b < a for a, b in zip(self.positions, self.positions[1:], strict=False)):
            raise ValueError("ColorMap anchors must be non-decreasing")

    def __call__(self, x: ArrayLike) -> np.ndarray:
        """Map values in ``[0, 1]`` (clipped) to float RGB; appends an axis of size 3."""
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        table = np.asarray(self.colors, dtype=np.float64)
        return np.stack([np.interp(x, self.positions, table[:, c]) for c in range(3)], axis=-1)


def _evenly(name: str, colors: Sequence[RGB], diverging: bool) -> ColorMap:
    """A colour map whose anchors are evenly spaced over ``[0, 1]``."""
    positions = tuple(np.linspace(0.0, 1.0, len(colors)).tolist())
    return ColorMap(name, positions, tuple(colors), diverging)


_BLACK, _WHITE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
_RED, _BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
_CYAN, _YELLOW = (0.0, 1.0, 1.0), (1.0, 1.0, 0.0)

_GRAY = _evenly("gray", [_BLACK, _WHITE], diverging=False)

#: The built-in colour maps by name.
COLORMAPS: dict[str, ColorMap] = {
    "bwr": _evenly("bwr", [_BLUE, _WHITE, _RED], diverging=True),
    "seismic": _evenly(
        "seismic", [(0.0, 0.0, 0.3), _BLUE, _WHITE, _RED, (0.5, 0.0, 0.0)], diverging=True
    ),
    "coldnhot": _evenly("coldnhot", [_CYAN, _BLUE, _BLACK, _RED, _YELLOW], diverging=True),
    "hot": ColorMap(
        "hot",
        (0.0, 0.365079, 0.746032, 1.0),
        ((0.0416, 0.0, 0.0), _RED, _YELLOW, _WHITE),
        diverging=False,
    ),
    "cold": _evenly("cold", [_BLACK, _BLUE, _CYAN], diverging=False),
    "gray": _GRAY,
    "grey": _GRAY,
}


class _MatplotlibColorMap:
    """Adapter giving a matplotlib colour map the :class:`ColorMap` call interface."""

    def __init__(self, name: str, cmap: Callable[[np.ndarray], np.ndarray]) -> None:
        self.name = name
        self.diverging = True
        self._cmap = cmap

    def __call__(self, x: ArrayLike) -> np.ndarray:
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        return np.asarray(self._cmap(x), dtype=np.float64)[..., :3]


def available_colormaps() -> tuple[str, ...]:
    """Names of the built-in colour maps (matplotlib's are accepted in addition)."""
    return tuple(COLORMAPS)


def get_colormap(cmap: str | ColorMap) -> ColorMap | _MatplotlibColorMap:
    """Resolve a colour map by name.

    Built-in names (:func:`available_colormaps`) are tried first, then matplotlib's registry
    if matplotlib is installed (such maps are treated as diverging).

    Args:
      cmap: a name such as ``"bwr"`` or ``"coldnhot"``, or a :class:`ColorMap`.

    Returns:
      A callable mapping values in ``[0, 1]`` to float RGB, with ``name`` and ``diverging``.

    Raises:
      ValueError: if the name is unknown; the message lists the valid built-in names.
    """
    if isinstance(cmap, ColorMap):
        return cmap
    if cmap in COLORMAPS:
        return COLORMAPS[cmap]
    try:
        matplotlib = require("matplotlib", "a matplotlib colour map")
        if cmap in matplotlib.colormaps:
            return _MatplotlibColorMap(cmap, matplotlib.colormaps[cmap])
        extra = "or any matplotlib colour map name"
    except ImportError:
        extra = 'or, with matplotlib installed (pip install "jaxlrp[viz]"), its colour map names'
    valid = ", ".join(available_colormaps())
    raise ValueError(f"unknown colour map {cmap!r}; valid ones are {valid}, {extra}")


def to_uint8(rgb: ArrayLike) -> np.ndarray:
    """Convert float colours in ``[0, 1]`` (clipped) to ``uint8`` in ``[0, 255]`` by rounding."""
    return np.round(np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def apply_colormap(x: ArrayLike, cmap: str | ColorMap = "bwr") -> np.ndarray:
    """Colour already-normalized values: ``uint8`` RGB of ``cmap(x)``.

    Args:
      x: values in ``[0, 1]`` (clipped), any shape, e.g. the output of
        :func:`jaxlrp.viz.normalize`.
      cmap: colour map name or :class:`ColorMap`.

    Returns:
      A ``uint8`` array of shape ``x.shape + (3,)``.
    """
    return to_uint8(get_colormap(cmap)(x))
