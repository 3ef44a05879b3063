"""Checks shared by the neuralized models: parameters in, points in, clear errors out.

Every check looks at shapes (always known, also under ``jax.jit``) and, where a value is
concrete, at values; traced values pass unchecked.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxlrp.rules.base import concrete

Array = Any


def parameter_matrix(value: Any, attribute: str, what: str, fix: str) -> Array:
    """``value`` (an array, or a fitted estimator holding it in ``attribute``) as a 2-D float
    JAX array of shape ``(n, features)``."""
    value = getattr(value, attribute, value)
    try:
        array = jnp.asarray(value)
    except TypeError as error:
        raise ValueError(
            f"{what} must be an array of shape (n, features) or an object with a "
            f"`{attribute}` attribute, got {type(value).__name__}; {fix}"
        ) from error
    if array.ndim != 2:
        raise ValueError(f"{what} must have shape (n, features), got shape {array.shape}; {fix}")
    if not jnp.issubdtype(array.dtype, jnp.inexact):
        array = array.astype(jnp.result_type(float))
    values = concrete(array)
    if values is not None and not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN or infinite entries; {fix}")
    return array


def positive_scalar(value: Any, name: str, meaning: str) -> Any:
    """``value`` unchanged after checking it is a positive finite scalar (when concrete)."""
    values = concrete(value)
    if values is None:
        return value
    if values.ndim != 0 or not np.isfinite(values) or not values > 0:
        raise ValueError(f"{name} must be a positive finite number ({meaning}), got {value!r}")
    return value


def points(x: Any, n_features: int, dtype: Any, owner: str) -> Array:
    """``x`` as a float array of shape ``(..., n_features)``: one point per row."""
    x = jnp.asarray(x)
    if x.ndim == 0 or x.shape[-1] != n_features:
        got = "a scalar" if x.ndim == 0 else f"{x.shape[-1]} features (shape {x.shape})"
        raise ValueError(
            f"x has {got}, but the {owner} has {n_features} features; pass points of shape "
            f"({n_features},) or (..., {n_features}), with the features on the last axis"
        )
    if jnp.issubdtype(x.dtype, jnp.inexact):
        dtype = jnp.promote_types(x.dtype, dtype)
    return x.astype(dtype)
