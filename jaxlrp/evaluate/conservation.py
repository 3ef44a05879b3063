"""Conservation (completeness) of relevance: at the input, and stage by stage through a model.

LRP's conservation property: ``Σ_i R_i`` is the same at every layer and equals the explained
output ``f_t(x)``, up to what biases and stabilizers absorb (and what rules such as z^B or flat
inject). :func:`completeness` reports the input-level sums for any composite;
:func:`layerwise_conservation` reads the relevance at the boundaries of a model written as a
chain of stages ``f = f_n ∘ … ∘ f_1`` (a ``flax.linen.Sequential``, or sub-networks you split off
yourself).

Design and limits of the per-stage report: relevance is propagated through one stage at a time
with :func:`jaxlrp.lrp`, handing each stage the *cotangent* its successor produced, so the chain
reproduces the single backward pass over the whole model exactly — provided every layer receives
the same rule in its stage as in the whole model. The composite's ``first`` rule is applied in
the first stage only and ``last`` in the last stage only (they would otherwise hit every stage's
first/last layer). Rules chosen by ``select`` from layer indices (``DepthRecipe``) or by ``paths``
see each stage's own indices and paths, so for those composites build stage-wise composites or
check against :func:`completeness`. Stages must map one array to one array (no skip connections
across a boundary).

References:
  Bach et al., "On pixel-wise explanations for non-linear classifier decisions by layer-wise
  relevance propagation", PLoS ONE 2015; Montavon et al., "Layer-Wise Relevance Propagation: An
  Overview", 2019 (§ conservation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

from jaxlrp.composites import Composite
from jaxlrp.explain import explain, lrp, output_relevance

Array = Any

__all__ = [
    "Completeness",
    "LayerwiseConservation",
    "completeness",
    "layerwise_conservation",
    "sequential_stages",
]


def _batch_sum(r: Array, batch_ndim: int) -> Array:
    return jnp.sum(r, axis=tuple(range(batch_ndim, jnp.ndim(r))))


@dataclasses.dataclass(frozen=True)
class Completeness:
    """Input-level conservation, per example.

    Attributes:
      output: the explained output relevance ``Σ R_out`` (the target logit).
      input: ``Σ_i R_i`` at the explained input.
      absorbed: ``1 − input / output``: the share absorbed (negative: injected).
    """

    output: Array
    input: Array

    @property
    def absorbed(self) -> Array:
        return 1.0 - self.input / self.output


def completeness(
    f: Callable[..., Array],
    *args: Any,
    target: Any,
    composite: Composite | None = None,
    argnums: int = -1,
) -> Completeness:
    """``Σ R_input`` against the explained output ``Σ R_out`` for ``composite``, per example."""
    out = f(*args)
    r_out, _ = output_relevance(out, target)
    r_in = explain(f, *args, target=target, composite=composite, argnums=argnums)
    batch_ndim = out.ndim - 1
    return Completeness(output=jnp.sum(r_out, axis=-1), input=_batch_sum(r_in, batch_ndim))


@dataclasses.dataclass(frozen=True)
class LayerwiseConservation:
    """Relevance sums at every stage boundary, per example.

    Attributes:
      names: boundary names, input first: ``("input", <stage 1>, …, <stage n> = output)``.
      sums: array ``(n + 1, *batch)``; ``sums[k]`` is ``Σ R`` at the output of stage ``k``
        (``sums[0]`` at the input, ``sums[n]`` the output relevance).
      relevance: the relevance arrays at the boundaries, same order.
    """

    names: tuple[str, ...]
    sums: Array
    relevance: tuple[Array, ...]

    @property
    def absorbed(self) -> Array:
        """``(n, *batch)``: share of a stage's incoming relevance it absorbs,
        ``1 − Σ R_in / Σ R_out`` (stage ``k`` is row ``k − 1``)."""
        return 1.0 - self.sums[:-1] / self.sums[1:]

    def table(self) -> str:
        """A printable table (means over the batch)."""
        sums = jnp.reshape(self.sums, (self.sums.shape[0], -1)).mean(axis=1)
        absorbed = jnp.reshape(self.absorbed, (self.absorbed.shape[0], -1)).mean(axis=1)
        width = max(len(n) for n in self.names)
        lines = [f"{'boundary'.ljust(width)}  {'mean ΣR':>12}  {'absorbed by stage':>18}"]
        for k, name in enumerate(self.names):
            share = "" if k == 0 else f"{float(absorbed[k - 1]):18.4f}"
            lines.append(f"{name.ljust(width)}  {float(sums[k]):12.5g}  {share}")
        return "\n".join(lines)


def layerwise_conservation(
    stages: Sequence[Callable[[Array], Array]],
    x: Array,
    *,
    target: Any,
    composite: Composite | None = None,
    names: Sequence[str] | None = None,
) -> LayerwiseConservation:
    """Propagate relevance through ``f = stages[-1] ∘ … ∘ stages[0]`` and sum it per boundary.

    Args:
      stages: functions of one array (closing over their parameters), e.g. from
        :func:`sequential_stages`.
      x: the input.
      target: as for :func:`jaxlrp.explain`.
      composite: the rules (LRP-ε when None); see the module docstring for how ``first``,
        ``last``, ``select`` and ``paths`` behave per stage.
      names: a name per stage (``stage_0``, … when None).

    Returns:
      A :class:`LayerwiseConservation`. ``relevance[0]`` equals ``jaxlrp.explain`` over the
      composed model when every layer gets the same rule in its stage.
    """
    if not stages:
        raise ValueError("layerwise_conservation needs at least one stage")
    composite = composite if composite is not None else Composite()
    names = tuple(names) if names is not None else tuple(f"stage_{k}" for k in range(len(stages)))
    if len(names) != len(stages):
        raise ValueError(f"{len(names)} names for {len(stages)} stages")
    last = len(stages) - 1
    pullbacks = []
    h = x
    for k, stage in enumerate(stages):
        rules = dataclasses.replace(
            composite,
            first=composite.first if k == 0 else None,
            last=composite.last if k == last else None,
        )
        h, relevance_fn = lrp(stage, rules, 0, times_input=(k == 0))(h)
        pullbacks.append((h, relevance_fn))
    out = h
    relevance, cotangent = output_relevance(out, target)
    boundary = [relevance]
    for k in range(last, -1, -1):
        h_in = x if k == 0 else pullbacks[k - 1][0]
        modified = pullbacks[k][1](relevance, cotangent=cotangent)
        if k == 0:
            relevance = modified
        else:  # times_input=False: the cotangent at the boundary; relevance = h ⊙ cotangent
            cotangent, relevance = modified, h_in * modified
        boundary.append(relevance)
    boundary = boundary[::-1]
    batch_ndim = out.ndim - 1
    sums = jnp.stack([_batch_sum(r, batch_ndim) for r in boundary])
    return LayerwiseConservation(("input", *names), sums, tuple(boundary))


def sequential_stages(module: Any, variables: Any) -> tuple[list[Callable], list[str]]:
    """Stages and names of a ``flax.linen.Sequential``: one stage per entry of ``layers``.

    Submodules are bound to their variables (``layers_<i>`` in ``variables['params']``); plain
    functions (``nn.relu``) are used as they are.
    """
    import flax.linen as nn

    if not isinstance(module, nn.Sequential):
        raise TypeError(
            f"sequential_stages needs a flax.linen.Sequential, got {type(module).__name__}; "
            "pass a list of stage functions to layerwise_conservation instead"
        )
    bound = module.bind(variables)
    stages, names = [], []
    for i, layer in enumerate(bound.layers):
        stages.append(layer)
        names.append(f"layers_{i}:{getattr(layer, '__name__', type(layer).__name__)}")
    return stages, names
