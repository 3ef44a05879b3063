"""Gradient-type rules for dense/conv layers (not LRP; for baselines such as guided backprop)."""

from __future__ import annotations

import dataclasses

from jaxlrp.rules.base import Array, LayerContext, LayerRule, Relevance


@dataclasses.dataclass(frozen=True)
class LayerGradient(LayerRule):
    """The plain gradient through the layer: ``c_a = Wᵀ c_z`` (``R_a = a ⊙ Wᵀ c_z``).

    With this rule on every layer and :class:`~jaxlrp.rules.Gradient` on activations, ``explain``
    returns gradient × input.
    """

    def __call__(self, ctx: LayerContext, relevance: Array) -> Relevance:
        return Relevance(times_input=ctx.backward(ctx.w, ctx.cotangent))
