"""LRP-αβ and z⁺ (Bach et al. 2015; Montavon et al. 2017).

.. math::  R_j = \\sum_k \\Big(\\alpha \\frac{(a_j w_{jk})^+}{\\sum_j (a_j w_{jk})^+ + b_k^+}
           - \\beta \\frac{(a_j w_{jk})^-}{\\sum_j (a_j w_{jk})^- + b_k^-}\\Big) R_k,
           \\qquad \\alpha - \\beta = 1

where ``(a w)⁺ = a⁺w⁺ + a⁻w⁻`` and ``(a w)⁻ = a⁺w⁻ + a⁻w⁺`` (inputs of both signs allowed, as in
zennit). z⁺ is α=1, β=0.
"""

from __future__ import annotations

import dataclasses

from jaxlrp.rules.base import (
    Group,
    ModifiedRule,
    Term,
    negative,
    negative_input,
    positive,
    positive_input,
)

PLUS, MINUS = (0.0, 1.0), (1.0, -1.0)  # W⁺ and W⁻ = W − W⁺ in the basis (W, W⁺)


def _positive_part() -> tuple[Term, ...]:
    return (
        Term(positive_input, positive, positive, basis=PLUS),
        Term(negative_input, negative, None, basis=MINUS),
    )


def _negative_part() -> tuple[Term, ...]:
    return (
        Term(positive_input, negative, negative, basis=MINUS),
        Term(negative_input, positive, None, basis=PLUS),
    )


@dataclasses.dataclass(frozen=True)
class AlphaBeta(ModifiedRule):
    """LRP-αβ: positive contributions weighted by α, negative ones by β, with α − β = 1.

    Args:
      alpha: α ≥ 0.
      beta: β ≥ 0, with ``alpha - beta == 1`` (checked).
      stabilizer: added to each denominator with its sign.

    Raises:
      ValueError: if α or β is negative or α − β ≠ 1.

    References:
      Bach et al., "On pixel-wise explanations ... by layer-wise relevance propagation", 2015.
    """

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"AlphaBeta needs alpha, beta >= 0, got {self.alpha}, {self.beta}")
        if abs(self.alpha - self.beta - 1.0) > 1e-9:
            raise ValueError(
                f"AlphaBeta needs alpha - beta == 1 (conservation), got alpha={self.alpha}, "
                f"beta={self.beta}"
            )

    def groups(self) -> tuple[Group, ...]:
        groups = [Group(_positive_part(), coefficient=self.alpha)]
        if self.beta:
            groups.append(Group(_negative_part(), coefficient=-self.beta))
        return tuple(groups)


@dataclasses.dataclass(frozen=True)
class ZPlus(ModifiedRule):
    """LRP-z⁺: only positive contributions, ``R_j = Σ_k (a_j w_jk)⁺ / Σ_j (a_j w_jk)⁺ · R_k``.

    Equal to ``AlphaBeta(alpha=1, beta=0)``.

    References:
      Montavon et al., "Explaining nonlinear classification decisions with deep Taylor
      decomposition", 2017.
    """

    stabilizer: float = 1e-6

    def groups(self) -> tuple[Group, ...]:
        return (Group(_positive_part()),)
