"""Visualization of relevance: heatmaps, overlays, image grids and coloured text.

Everything here runs on the host with NumPy (JAX arrays are accepted and converted). Heatmaps
need only NumPy; ``grid`` needs matplotlib and ``save_png`` needs Pillow, both provided by
``pip install "jaxlrp[viz]"``.

Typical use::

    from jaxlrp import viz
    rgb = viz.heatmap(relevance, cmap="bwr")          # (H, W, 3) or (N, H, W, 3) uint8
    viz.grid([image, rgb], titles=["input", "LRP"], path="lrp.png")
"""

from jaxlrp.viz.colormaps import (
    COLORMAPS,
    ColorMap,
    apply_colormap,
    available_colormaps,
    get_colormap,
)
from jaxlrp.viz.grid import grid
from jaxlrp.viz.heatmap import colorize, crop_region, heatmap, overlay
from jaxlrp.viz.images import to_rgb_float, to_rgb_uint8
from jaxlrp.viz.normalize import normalize, reduce_channels, relevance_scale
from jaxlrp.viz.png import save_png
from jaxlrp.viz.text import tokens_to_ansi, tokens_to_html

__all__ = [
    "COLORMAPS",
    "ColorMap",
    "apply_colormap",
    "available_colormaps",
    "colorize",
    "crop_region",
    "get_colormap",
    "grid",
    "heatmap",
    "normalize",
    "overlay",
    "reduce_channels",
    "relevance_scale",
    "save_png",
    "to_rgb_float",
    "to_rgb_uint8",
    "tokens_to_ansi",
    "tokens_to_html",
]
