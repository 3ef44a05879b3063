"""Token-pair relevance (a BiLRP matrix, see :func:`jaxlrp.bilrp`) as a table or a figure.

A pair matrix ``R`` of shape ``(T_a, T_b)`` holds the relevance of every pair of tokens of two
texts for their similarity. It is rendered with the same symmetric scaling as images and
token strips (``r / max|r|``, zero at the colour map's centre): as an HTML table
(:func:`pairs_to_html`), as coloured terminal cells (:func:`pairs_to_ansi`) or as a
matplotlib heatmap (:func:`pairs_figure`); :func:`top_pairs` lists the strongest pairs.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from jaxlrp.viz._optional import require
from jaxlrp.viz.colormaps import ColorMap
from jaxlrp.viz.heatmap import colorize
from jaxlrp.viz.text import _text_color

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["pairs_figure", "pairs_to_ansi", "pairs_to_html", "top_pairs"]

_ESC = "\x1b"


def _pair_matrix(tokens_a: Sequence[str], tokens_b: Sequence[str], relevance: ArrayLike):
    r = np.asarray(relevance, dtype=np.float64)
    if r.shape != (len(tokens_a), len(tokens_b)):
        raise ValueError(
            f"a pair matrix for {len(tokens_a)} x {len(tokens_b)} tokens needs shape "
            f"({len(tokens_a)}, {len(tokens_b)}), got {r.shape}"
        )
    return r


def top_pairs(
    tokens_a: Sequence[str], tokens_b: Sequence[str], relevance: ArrayLike, k: int = 5,
    by: str = "value",
) -> list[tuple[int, int, str, str, float]]:  # fmt: skip
    """The ``k`` strongest token pairs of a pair matrix, strongest first.

    Args:
      tokens_a, tokens_b: the tokens of the rows and of the columns.
      relevance: ``(T_a, T_b)`` pair relevance.
      k: how many pairs.
      by: ``"value"`` (most positive first) or ``"abs"`` (largest magnitude first).

    Returns:
      ``(i, j, tokens_a[i], tokens_b[j], R_ij)`` tuples.
    """
    r = _pair_matrix(tokens_a, tokens_b, relevance)
    if by not in ("value", "abs"):
        raise ValueError(f"by must be 'value' or 'abs', got {by!r}")
    key = r if by == "value" else np.abs(r)
    order = np.argsort(-key, axis=None, kind="stable")[:k]
    out = []
    for flat in order:
        i, j = divmod(int(flat), r.shape[1])
        out.append((i, j, str(tokens_a[i]), str(tokens_b[j]), float(r[i, j])))
    return out


def pairs_to_html(
    tokens_a: Sequence[str],
    tokens_b: Sequence[str],
    relevance: ArrayLike,
    cmap: str | ColorMap = "bwr",
    percentile: float | None = None,
    gamma: float | None = None,
    digits: int = 2,
) -> str:
    """An HTML table: rows are ``tokens_a``, columns ``tokens_b``, cells coloured by ``R_ij``.

    Each cell shows the value with ``digits`` decimals and holds the raw value in its
    ``title`` (shown on hover); colours as in :func:`jaxlrp.viz.tokens_to_html`.

    Returns:
      An HTML fragment (a ``<table>``).

    Raises:
      ValueError: if the matrix shape does not match the tokens.
    """
    r = _pair_matrix(tokens_a, tokens_b, relevance)
    colors = colorize(r, cmap=cmap, percentile=percentile, gamma=gamma)
    cell = "padding: 2px 4px; text-align: right; font-family: monospace"
    head = "".join(f'<th style="padding: 2px 4px">{html.escape(str(t))}</th>' for t in tokens_b)
    rows = [f"<tr><th></th>{head}</tr>"]
    for i, token in enumerate(tokens_a):
        cells = []
        for j in range(len(tokens_b)):
            bg, fg = colors[i, j], _text_color(colors[i, j])
            style = (f"background-color: rgb({bg[0]}, {bg[1]}, {bg[2]}); "
                     f"color: rgb({fg[0]}, {fg[1]}, {fg[2]}); {cell}")  # fmt: skip
            cells.append(f'<td style="{style}" title="{r[i, j]:.4g}">{r[i, j]:.{digits}f}</td>')
        rows.append(f'<tr><th style="text-align: right; padding: 2px 4px">'
                    f'{html.escape(str(token))}</th>{"".join(cells)}</tr>')  # fmt: skip
    body = "\n".join(rows)
    return f'<table class="jaxlrp-pairs" style="border-collapse: collapse">\n{body}\n</table>'


def pairs_to_ansi(
    tokens_a: Sequence[str],
    tokens_b: Sequence[str],
    relevance: ArrayLike,
    cmap: str | ColorMap = "bwr",
    percentile: float | None = None,
    gamma: float | None = None,
    digits: int = 1,
) -> str:
    """The pair matrix as a terminal table with 24-bit ANSI background colours.

    Rows are ``tokens_a`` (left-aligned labels), columns ``tokens_b`` (header line); every cell
    shows ``R_ij`` with ``digits`` decimals on its colour (as :func:`jaxlrp.viz.tokens_to_ansi`).

    Returns:
      The table as one string (lines joined with ``\\n``).
    """
    r = _pair_matrix(tokens_a, tokens_b, relevance)
    colors = colorize(r, cmap=cmap, percentile=percentile, gamma=gamma)
    values = [[f"{v:.{digits}f}" for v in row] for row in r]
    width = max([len(str(t)) for t in tokens_b] + [len(v) for row in values for v in row])
    label = max(len(str(t)) for t in tokens_a)
    lines = [" " * label + " " + " ".join(str(t).rjust(width) for t in tokens_b)]
    for i, token in enumerate(tokens_a):
        cells = []
        for j, text in enumerate(values[i]):
            bg, fg = colors[i, j], _text_color(colors[i, j])
            cells.append(f"{_ESC}[48;2;{bg[0]};{bg[1]};{bg[2]}m{_ESC}[38;2;{fg[0]};{fg[1]};"
                         f"{fg[2]}m{text.rjust(width)}{_ESC}[0m")  # fmt: skip
        lines.append(str(token).ljust(label) + " " + " ".join(cells))
    return "\n".join(lines)


def pairs_figure(
    tokens_a: Sequence[str],
    tokens_b: Sequence[str],
    relevance: ArrayLike,
    cmap: str = "bwr",
    title: str | None = None,
    path: str | os.PathLike | None = None,
    annotate: bool = True,
    dpi: int = 100,
) -> Figure:
    """The pair matrix as a matplotlib heatmap, symmetric around zero, tokens as tick labels.

    Args:
      tokens_a, tokens_b: labels of the rows (y axis) and columns (x axis).
      relevance: ``(T_a, T_b)`` pair relevance.
      cmap: a matplotlib colour map name (diverging, e.g. ``"bwr"``).
      title: optional figure title.
      path: if given, the figure is written there (PNG unless the suffix says otherwise).
      annotate: write each cell's value in it.
      dpi: resolution used when saving.

    Returns:
      The ``matplotlib.figure.Figure`` (built without ``pyplot``: no window opens).

    Raises:
      ImportError: if matplotlib is not installed (``pip install "jaxlrp[viz]"``).
    """
    figure_module = require("matplotlib.figure", "jaxlrp.viz.pairs_figure")
    r = _pair_matrix(tokens_a, tokens_b, relevance)
    scale = float(np.abs(r).max()) or 1.0
    size = (1.0 + 0.55 * len(tokens_b), 0.8 + 0.45 * len(tokens_a))
    fig = figure_module.Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(r, cmap=cmap, vmin=-scale, vmax=scale, interpolation="nearest")
    ax.set_xticks(range(len(tokens_b)), [str(t) for t in tokens_b], rotation=60, ha="right")
    ax.set_yticks(range(len(tokens_a)), [str(t) for t in tokens_a])
    if annotate:
        for i in range(r.shape[0]):
            for j in range(r.shape[1]):
                strong = abs(r[i, j]) > 0.6 * scale
                ax.text(j, i, f"{r[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if strong else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8)
    if title is not None:
        ax.set_title(title)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)
    return fig
