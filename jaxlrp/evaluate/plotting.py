"""Plots of perturbation curves and randomization checks (matplotlib, imported when called)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Array = Any

__all__ = ["plot_curves", "plot_randomization"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting needs matplotlib: pip install 'jaxlrp[viz]'"
        ) from err
    return plt


def plot_curves(
    curves: Mapping[str, Array],
    *,
    ax: Any = None,
    title: str | None = None,
    relative: bool = True,
    xlabel: str = "perturbation steps",
) -> Any:
    """Plot perturbation curves, one line per method (the mean over the batch).

    Args:
      curves: ``name -> curve`` of shape ``(L + 1,)`` or ``(batch, L + 1)``.
      ax: a matplotlib axes (a new figure when None).
      title: the axes title.
      relative: plot ``f(x⁽ᵏ⁾) − f(x⁽⁰⁾)`` (every curve starts at 0) rather than the raw score.

    Returns:
      The axes.
    """
    if ax is None:
        plt = _pyplot()
        _, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        c = np.asarray(curve, dtype=np.float64)
        c = c.reshape(-1, c.shape[-1])
        if relative:
            c = c - c[:, :1]
        ax.plot(np.arange(c.shape[-1]), c.mean(0), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("target score change" if relative else "target score")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_randomization(
    similarities: Mapping[str, Array], groups: Any, *, ax: Any = None, title: str | None = None,
    ylabel: str = "Spearman rank correlation",
) -> Any:  # fmt: skip
    """Plot a cascading-randomization check: similarity per method against randomized groups.

    Args:
      similarities: ``name -> (steps,)`` or ``(steps, batch)`` similarities.
      groups: the randomized groups (tick labels), e.g. ``RandomizationResult.groups``.
    """
    if ax is None:
        plt = _pyplot()
        _, ax = plt.subplots(figsize=(6, 4))
    labels = ["/".join(g[1:]) if isinstance(g, tuple) else str(g) for g in groups]
    for name, s in similarities.items():
        s = np.asarray(s, dtype=np.float64)
        s = s.reshape(s.shape[0], -1).mean(1)
        ax.plot(np.arange(len(s)), s, marker="o", label=name)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right")
    ax.set_xlabel("randomized up to (top-down)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax
