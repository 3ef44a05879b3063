"""Relevance of tokens rendered as coloured text, for HTML (notebooks) and terminals.

Each token's background is ``cmap(normalize(r))`` with the same symmetric scaling as images
(``r / max|r|``, zero at the colour map's centre), and the text colour is black or white,
whichever contrasts better with the background.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from jaxlrp.viz.colormaps import ColorMap
from jaxlrp.viz.heatmap import colorize
from jaxlrp.viz.normalize import Reduction, reduce_channels

_ESC = "\x1b"


def _token_relevance(tokens: Sequence[str], relevance: ArrayLike, reduce: Reduction) -> np.ndarray:
    """Per-token relevance of shape ``(T,)``; ``(T, D)`` (e.g. embeddings) is reduced over D."""
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim == 2:
        r = reduce_channels(r, how=reduce, axis=-1)
    if r.ndim != 1:
        raise ValueError(f"expected relevance of shape (T,) or (T, D), got {np.shape(relevance)}")
    if len(tokens) != r.shape[0]:
        raise ValueError(f"got {len(tokens)} tokens but {r.shape[0]} relevance values")
    return r


def _text_color(background: np.ndarray) -> tuple[int, int, int]:
    """Black or white, whichever is more legible on ``background`` (Rec. 601 luma)."""
    luma = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luma >= 128 else (255, 255, 255)


def tokens_to_html(
    tokens: Sequence[str],
    relevance: ArrayLike,
    cmap: str | ColorMap = "bwr",
    percentile: float | None = None,
    gamma: float | None = None,
    separator: str = " ",
    reduce: Reduction = "sum",
) -> str:
    """Render tokens as HTML spans whose background colour shows their relevance.

    Every token becomes one ``<span>`` with an inline ``background-color``, a contrasting text
    colour and a ``title`` attribute holding the raw relevance (shown on hover). Tokens are
    HTML-escaped. Scaling is symmetric for diverging maps: ``r / max|r|`` with zero at the
    centre of ``cmap`` (white for ``bwr``). In a notebook, show the result with
    ``IPython.display.HTML``.

    Args:
      tokens: the token strings, ``T`` of them.
      relevance: ``(T,)`` relevance per token, or ``(T, D)`` reduced over ``D`` with ``reduce``.
      cmap: colour map name or :class:`ColorMap`.
      percentile: optional percentile of ``|r|`` used as the scale.
      gamma: optional exponent applied to the normalized magnitude.
      separator: text placed between tokens (use ``""`` for sub-word tokens that carry
        their own spaces).
      reduce: channel reduction for ``(T, D)`` relevance.

    Returns:
      An HTML fragment: a ``<div>`` containing one ``<span>`` per token.

    Raises:
      ValueError: if the number of tokens and relevance values differ, or ``cmap`` is unknown.
    """
    r = _token_relevance(tokens, relevance, reduce)
    colors = colorize(r, cmap=cmap, percentile=percentile, gamma=gamma)
    spans = []
    for token, value, color in zip(tokens, r, colors, strict=True):
        fg = _text_color(color)
        style = (
            f"background-color: rgb({color[0]}, {color[1]}, {color[2]}); "
            f"color: rgb({fg[0]}, {fg[1]}, {fg[2]}); padding: 0 1px; white-space: pre"
        )
        spans.append(
            f'<span style="{style}" title="{value:.4g}">{html.escape(str(token))}</span>'
        )
    body = html.escape(separator).join(spans)
    return f'<div class="jaxlrp-tokens" style="line-height: 1.8">{body}</div>'


def tokens_to_ansi(
    tokens: Sequence[str],
    relevance: ArrayLike,
    cmap: str | ColorMap = "bwr",
    percentile: float | None = None,
    gamma: float | None = None,
    separator: str = " ",
    reduce: Reduction = "sum",
) -> str:
    """Render tokens with 24-bit ANSI background colours showing their relevance.

    Each token is wrapped in ``ESC[48;2;R;G;Bm`` (background), ``ESC[38;2;R;G;Bm`` (black or
    white text, for contrast) and ``ESC[0m`` (reset), so ``print()`` shows it in colour in
    terminals with true-colour support. Colours are computed as in :func:`tokens_to_html`.

    Args:
      tokens: the token strings, ``T`` of them.
      relevance: ``(T,)`` relevance per token, or ``(T, D)`` reduced over ``D`` with ``reduce``.
      cmap: colour map name or :class:`ColorMap`.
      percentile: optional percentile of ``|r|`` used as the scale.
      gamma: optional exponent applied to the normalized magnitude.
      separator: uncoloured text placed between tokens.
      reduce: channel reduction for ``(T, D)`` relevance.

    Returns:
      The coloured string.

    Raises:
      ValueError: if the number of tokens and relevance values differ, or ``cmap`` is unknown.
    """
    r = _token_relevance(tokens, relevance, reduce)
    colors = colorize(r, cmap=cmap, percentile=percentile, gamma=gamma)
    parts = []
    for token, color in zip(tokens, colors, strict=True):
        fg = _text_color(color)
        parts.append(
            f"{_ESC}[48;2;{color[0]};{color[1]};{color[2]}m"
            f"{_ESC}[38;2;{fg[0]};{fg[1]};{fg[2]}m{token}{_ESC}[0m"
        )
    return separator.join(parts)
