"""First-layer rules that do not multiply by the input: z^B (ZBox), w², flat.

.. math::  \\text{z}^B:\\; R_i = \\sum_j \\frac{x_i w_{ij} - l_i w_{ij}^+ - h_i w_{ij}^-}
           {\\sum_i x_i w_{ij} - l_i w_{ij}^+ - h_i w_{ij}^-} R_j
.. math::  w^2:\\; R_i = \\sum_j \\frac{w_{ij}^2}{\\sum_i w_{ij}^2} R_j \\qquad
           \\text{flat}:\\; R_i = \\sum_j \\frac{1}{\\sum_i 1} R_j

(Montavon et al. 2017, 2019; Lapuschkin et al. 2019 for flat.) These give relevance to inputs
that are exactly zero (black pixels); jaxlrp returns it exactly when the layer is fed by the
explained input through data movement only (reshape, transpose, pad, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxlrp.rules.base import (
    Group,
    ModifiedRule,
    Term,
    concrete,
    constant_input,
    keep,
    negative,
    ones_input,
    positive,
    value_key,
)


def _short(bound: Any) -> str:
    """A bound for printing: the number, or the array's range and shape."""
    if isinstance(bound, int | float):
        return repr(bound)
    value = concrete(bound)
    if value is None:
        return "<traced>"
    if value.ndim == 0:
        return f"{float(value):g}"
    return f"[{value.min():.3g}..{value.max():.3g}] shape {tuple(value.shape)}"


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class ZBox(ModifiedRule):
    """z^B rule for inputs bounded by ``low <= x <= high`` (pixels).

    Args:
      low: lowest possible input value; a scalar or an array broadcastable to the input (e.g.
        per-channel bounds of shape ``(3,)`` for NHWC images after normalization).
      high: highest possible input value, same conventions.
      stabilizer: added to the denominator with its sign.

    Raises:
      ValueError: if a bound is missing.

    References:
      Montavon et al., "Explaining nonlinear classification decisions with deep Taylor
      decomposition", 2017.
    """

    low: Any = None
    high: Any = None
    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        if self.low is None or self.high is None:
            raise ValueError(
                "ZBox needs both bounds of the input domain, e.g. ZBox(low=0.0, high=1.0) for "
                "images in [0, 1] (in the model's input space, after normalization)"
            )
        low, high = concrete(self.low), concrete(self.high)
        if low is not None and high is not None and np.any(low > high):
            raise ValueError(f"ZBox needs low <= high, got low={self.low}, high={self.high}")

    def _key(self) -> tuple:
        return (value_key(self.low), value_key(self.high), self.stabilizer)

    def __eq__(self, other: object) -> bool:
        """Equal when the bounds are equal by value (per-channel arrays by content)."""
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        return (
            f"ZBox(low={_short(self.low)}, high={_short(self.high)}, "
            f"stabilizer={self.stabilizer})"
        )

    def groups(self) -> tuple[Group, ...]:
        return (
            Group(
                (
                    Term(),
                    Term(constant_input(self.low, "low"), positive, positive, sign=-1.0),
                    Term(constant_input(self.high, "high"), negative, negative, sign=-1.0),
                )
            ),
        )


@dataclasses.dataclass(frozen=True)
class WSquare(ModifiedRule):
    """w² rule: relevance redistributed in proportion to the squared weights (bias squared too).

    References:
      Montavon et al., "Explaining nonlinear classification decisions with deep Taylor
      decomposition", 2017.
    """

    stabilizer: float = 1e-6

    def groups(self) -> tuple[Group, ...]:
        return (Group((Term(ones_input, jnp.square, jnp.square),)),)


@dataclasses.dataclass(frozen=True)
class Flat(ModifiedRule):
    """Flat rule: relevance spread uniformly over each output's receptive field (no bias).

    References:
      Lapuschkin et al., "Unmasking Clever Hans predictors and assessing what machines really
      learn", 2019.
    """

    stabilizer: float = 1e-6

    def groups(self) -> tuple[Group, ...]:
        return (Group((Term(ones_input, jnp.ones_like, None),)),)


__all__ = ["ZBox", "WSquare", "Flat", "keep", "negative", "positive"]
