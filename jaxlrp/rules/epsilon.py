"""LRP-0 and LRP-ε (Bach et al. 2015; Montavon et al. 2019, §10.2.1).

.. math::  R_j = \\sum_k \\frac{a_j w_{jk}}{\\epsilon\\,\\mathrm{sign}(z_k) + z_k} R_k,
           \\qquad z_k = \\sum_j a_j w_{jk} + b_k
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxlrp.rules.base import Array, Group, LayerContext, ModifiedRule, Term


@dataclasses.dataclass(frozen=True)
class Epsilon(ModifiedRule):
    """LRP-ε: ``R_a = a ⊙ Wᵀ (R / (z + ε·sign(z)))``.

    Args:
      epsilon: ε, added to the denominator with its sign (sign(0) = +1). Larger ε absorbs weak or
        contradictory relevance and gives sparser, less noisy explanations.

    References:
      Bach et al., "On pixel-wise explanations ... by layer-wise relevance propagation", 2015.
    """

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        if self.epsilon < 0:
            raise ValueError(f"Epsilon needs epsilon >= 0, got {self.epsilon}")

    @property
    def stabilizer(self) -> float:  # type: ignore[override]
        return self.epsilon

    def groups(self) -> tuple[Group, ...]:
        return (Group((Term(),)),)


@dataclasses.dataclass(frozen=True)
class Zero(ModifiedRule):
    """LRP-0: ``R_a = a ⊙ Wᵀ (R / z)``, stabilized only against division by zero.

    On a bias-free ReLU network this is gradient × input and conserves relevance exactly. The
    denominator is ``sign(z)·max(|z|, stabilizer)``: exact wherever ``|z| >= stabilizer``
    (``Epsilon(1e-6)`` instead adds ε everywhere, as zennit does).

    Args:
      stabilizer: the smallest magnitude of a denominator (default 1e-6).
    """

    stabilizer: float = 1e-6
    clip: bool = dataclasses.field(default=True, init=False, repr=False)

    def groups(self) -> tuple[Group, ...]:
        return (Group((Term(),)),)


@dataclasses.dataclass(frozen=True)
class RelativeEpsilon(ModifiedRule):
    """LRP-ε with ε relative to the layer's pre-activations: ``ε = factor · std(z)``.

    The standard deviation is taken per example (over all axes but the batch axis when the input
    is batched), so explaining one example alone or in a batch gives the same numbers. The
    overview's recipe for VGG-16 uses ``factor = 0.25`` on the upper convolutions.

    Args:
      factor: multiple of ``std(z)`` used as ε.
      stabilizer: added to ε (keeps the denominator non-zero when ``std(z) = 0``).

    References:
      Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019, §10.3.
    """

    factor: float = 0.25
    stabilizer: float = 1e-6

    def stabilizer_for(self, ctx: LayerContext) -> Array:
        z = ctx.z
        axes = tuple(range(1, z.ndim)) if (ctx.batched and z.ndim > 1) else None
        std = jnp.std(z, axis=axes, keepdims=axes is not None)
        return self.factor * std + self.stabilizer

    def groups(self) -> tuple[Group, ...]:
        return (Group((Term(),)),)
