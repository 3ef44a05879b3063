"""Attributions computed by jaxlrp's interpreter: LRP with a composite, guided backprop and
DeconvNet (modified gradients: rules on the activations, plain gradients elsewhere).

Same calling convention as the other baselines: ``method(f, *args, target=..., argnums=-1,
**options)`` returning an array of ``args[argnums]``'s shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxlrp import composites
from jaxlrp.attribution._target import check_argnums, target_weights
from jaxlrp.composites import Composite
from jaxlrp.explain import explain
from jaxlrp.explain import lrp as _lrp

Array = Any

__all__ = ["deconvnet", "guided_backprop", "lrp"]


def lrp(
    f: Callable[..., Array],
    *args: Any,
    target: Any,
    argnums: int = -1,
    composite: Composite | None = None,
    batched: bool | None = None,
) -> Array:
    """Layer-wise relevance propagation: :func:`jaxlrp.explain` with ``composite``.

    The output relevance is the target logit; ``composite`` defaults to LRP-ε everywhere.

    References:
      Bach, Binder, Montavon, Klauschen, Müller, Samek, "On pixel-wise explanations for non-linear
      classifier decisions by layer-wise relevance propagation", PLoS ONE 2015.
    """
    n = check_argnums(argnums, len(args))
    return explain(f, *args, target=target, composite=composite, argnums=n, batched=batched)


def _modified_gradient(composite: Composite, f: Callable[..., Array], args: tuple, target: Any,
                       argnums: int) -> Array:  # fmt: skip
    n = check_argnums(argnums, len(args))
    out, relevance_fn = _lrp(f, composite, n, times_input=False)(*args)
    weights = target_weights(out, target)
    return relevance_fn(out * weights, cotangent=weights)


def guided_backprop(f: Callable[..., Array], *args: Any, target: Any, argnums: int = -1) -> Array:
    """Guided backpropagation: the gradient with negative cotangents zeroed at every ReLU.

    Runs through jaxlrp's interpreter with :func:`jaxlrp.composites.GuidedBackprop`.

    References:
      Springenberg, Dosovitskiy, Brox, Riedmiller, "Striving for simplicity: the all
      convolutional net", ICLR workshop 2015.
    """
    return _modified_gradient(composites.GuidedBackprop(), f, args, target, argnums)


def deconvnet(f: Callable[..., Array], *args: Any, target: Any, argnums: int = -1) -> Array:
    """DeconvNet: the positive part of the cotangent passed back through every activation.

    Runs through jaxlrp's interpreter with :func:`jaxlrp.composites.DeconvNet`.

    References:
      Zeiler, Fergus, "Visualizing and understanding convolutional networks", ECCV 2014.
    """
    return _modified_gradient(composites.DeconvNet(), f, args, target, argnums)
