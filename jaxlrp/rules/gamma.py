"""LRP-γ, generalized to inputs and outputs of both signs (Montavon et al. 2019, §10.2.1;
Andéol et al. 2021).

For a positive output (z > 0) the positive contributions are favoured,

.. math::  R_j = \\sum_k \\frac{a_j^+ (w_{jk} + \\gamma w_{jk}^+)
                 + a_j^- (w_{jk} + \\gamma w_{jk}^-)}
           {\\sum_j a_j^+ (w_{jk} + \\gamma w_{jk}^+) + a_j^- (w_{jk} + \\gamma w_{jk}^-)
            + (b_k + \\gamma b_k^+)}\\, R_k ,

and for a negative output the negative ones (``w + γw⁻`` on ``a⁺``, ``w + γw⁺`` on ``a⁻``). On
non-negative inputs and positive outputs this is the original γ rule. Same convention as
zennit's ``Gamma``.

``Gamma(generalized=False)`` is the overview's own rule (Montavon et al. 2019, §10.2.1),

.. math::  R_j = \\sum_k \\frac{a_j (w_{jk} + \\gamma w_{jk}^+)}
           {\\sum_j a_j (w_{jk} + \\gamma w_{jk}^+) + (b_k + \\gamma b_k^+)}\\, R_k ,

one modified weight for every output: one extra forward pass and one transposed pass with
``W + γW⁺`` (the generalized rule needs ``W⁺a`` and two transposed passes). It is meant for
non-negative inputs (after a ReLU), as in the overview.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxlrp.rules.base import (
    Array,
    Group,
    ModifiedRule,
    Term,
    identity_input,
    negative_input,
    positive_input,
)


@dataclasses.dataclass(frozen=True)
class Gamma(ModifiedRule):
    """LRP-γ (generalized): favour contributions of the output's own sign by ``γ``.

    Args:
      gamma: γ ≥ 0; 0 gives LRP-0, large γ approaches z⁺.
      stabilizer: added to each denominator with its sign.
      generalized: True (default, as zennit): the sign-aware form above; False: the overview's
        original rule ``a (w + γw⁺)`` for every output, cheaper (one modified weight) and equal
        to the generalized rule wherever the input is non-negative and the output positive.

    References:
      Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019.
      Andéol et al., "Learning domain invariant representations by joint Wasserstein distance
      minimization", 2021 (the generalized form used by zennit).
    """

    gamma: float = 0.25
    stabilizer: float = 1e-6
    generalized: bool = True

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise ValueError(f"Gamma needs gamma >= 0, got {self.gamma}")

    def groups(self) -> tuple[Group, ...]:
        g = self.gamma

        def up(p: Array) -> Array:
            return p + g * jnp.maximum(p, 0)

        def down(p: Array) -> Array:
            return p + g * jnp.minimum(p, 0)

        if not self.generalized:
            # One term on the plain input without a basis: the generic path computes it with the
            # single weight W + γW⁺ (one forward, one transposed pass), cheaper than the basis
            # form ``Wa + γW⁺a`` (which needs two transposed passes).
            return (Group((Term(identity_input, up, up),)),)
        up_basis, down_basis = (1.0, g), (1.0 + g, -g)  # W + γW⁺, W + γW⁻ = (1+γ)W − γW⁺
        positive_out = Group(
            (Term(positive_input, up, up, basis=up_basis),
             Term(negative_input, down, None, basis=down_basis)),
            mask=lambda z: z > 0,
        )
        negative_out = Group(
            (Term(positive_input, down, down, basis=down_basis),
             Term(negative_input, up, None, basis=up_basis)),
            mask=lambda z: z < 0,
        )
        return positive_out, negative_out
