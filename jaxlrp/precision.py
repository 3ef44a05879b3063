"""The precision rules compute in: at least float32, whatever the model's precision.

A model in bfloat16 (8 bits of mantissa) keeps its own precision for its forward pass and for the
linear maps a rule applies (``W⁺a``, the transposed layer), but a rule's sums, denominators and
stabilizers are float32: ``z + ε·sign(z)`` with ε = 1e-6 is ``z`` in bfloat16 for any
``|z| > 2.6e-4``, and the ratios ``R / z`` of nearly cancelling sums lose every digit.

:func:`rule_dtype` is the dtype a rule sees; :func:`at_rule_precision` wraps a function of the
model's precision so that it takes and returns arrays of the rule's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

Array = Any

RULE_FLOOR = jnp.float32
"""The lowest floating-point precision a rule computes in."""


def is_low_precision(dtype: Any) -> bool:
    """True for floating dtypes with fewer bits than :data:`RULE_FLOOR` (bfloat16, float16, …)."""
    dtype = jnp.dtype(dtype)
    return jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < jnp.dtype(RULE_FLOOR).itemsize


def rule_dtype(dtype: Any) -> Any:
    """The dtype a rule computes in for model values of ``dtype``."""
    return jnp.dtype(RULE_FLOOR) if is_low_precision(dtype) else jnp.dtype(dtype)


def upcast(x: Array) -> Array:
    """``x`` in its rule precision (unchanged unless it is low precision)."""
    x = jnp.asarray(x)
    return x.astype(RULE_FLOOR) if is_low_precision(x.dtype) else x


def any_low_precision(values: Sequence[Array]) -> bool:
    """True when one of ``values`` is of a low-precision floating dtype."""
    return any(is_low_precision(jnp.result_type(v)) for v in values)


def at_rule_precision(fn: Callable[..., Array], dtypes: Sequence[Any]) -> Callable[..., Array]:
    """``fn`` taking arguments of rule precision: each is cast back to the model's dtype in
    ``dtypes`` before ``fn`` runs, and the result is cast up. The casts are linear, so
    ``jax.vjp`` and ``jax.linear_transpose`` of the wrapped function stay exact."""

    def wrapped(*args: Array) -> Array:
        out = fn(*(jnp.asarray(a).astype(d) for a, d in zip(args, dtypes, strict=True)))
        return upcast(out)

    return wrapped
