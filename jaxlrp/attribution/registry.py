"""Attribution methods by name, and :func:`method` to bind a method's options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from jaxlrp.attribution.gradient import (
    gradient,
    gradient_x_input,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from jaxlrp.attribution.occlusion import occlusion, random
from jaxlrp.attribution.propagation import deconvnet, guided_backprop, lrp

__all__ = ["METHODS", "available", "method"]

METHODS: dict[str, Callable[..., Any]] = {
    "random": random,
    "gradient": gradient,
    "saliency": saliency,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "occlusion": occlusion,
    "lrp": lrp,
}
"""Every method, ``name -> fn(f, *args, target=..., argnums=-1, **options)``."""


def available() -> tuple[str, ...]:
    """The registered method names."""
    return tuple(METHODS)


def method(name: str, **options: Any) -> Callable[..., Any]:
    """The method ``name`` with ``options`` bound, e.g.
    ``method("lrp", composite=composites.EpsilonPlusFlat())(model.apply, variables, x, target=3)``.

    Raises:
      KeyError: for an unknown name (the message lists the known ones).
    """
    try:
        fn = METHODS[name]
    except KeyError:
        known = ", ".join(METHODS)
        raise KeyError(f"unknown attribution method {name!r}; known: {known}") from None
    return functools.partial(fn, **options) if options else fn
