"""Shared plumbing of the attribution methods: the target score and its gradient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp.explain import _normalize_argnums, output_relevance

Array = Any


def check_argnums(argnums: Any, n: int) -> int:
    """The index of the explained argument (attribution baselines explain one array)."""
    if not isinstance(argnums, int):
        raise TypeError(
            f"attribution baselines explain one argument: argnums must be an int, got {argnums!r}"
        )
    (index,), _ = _normalize_argnums(argnums, n)
    return index


def target_weights(out: Array, target: Any) -> Array:
    """The output weights ``w`` such that the explained score is ``Σ_classes out ⊙ w``.

    An int (or int array of the batch shape) ``target`` gives ``w = onehot(target)``; a float
    array of the output's shape is used as ``w`` itself.
    """
    target_arr = jnp.asarray(target)
    if jnp.issubdtype(target_arr.dtype, jnp.integer) or jnp.issubdtype(
        target_arr.dtype, jnp.bool_
    ):
        return output_relevance(out, target)[1]
    if target_arr.shape != out.shape:
        raise ValueError(
            f"a float target weights the output and needs its shape {out.shape}, "
            f"got {target_arr.shape}"
        )
    return target_arr.astype(out.dtype)


def score_fn(f: Callable[..., Array], args: tuple, argnums: int, target: Any) -> Callable:
    """``x -> per-example score`` (``Σ_classes f(..x..) ⊙ w``, shape ``out.shape[:-1]``)."""

    def score(x: Array) -> Array:
        call_args = list(args)
        call_args[argnums] = x
        out = f(*call_args)
        return jnp.sum(out * target_weights(out, target), axis=-1)

    return score


def gradient_at(f: Callable[..., Array], args: tuple, argnums: int, target: Any) -> Callable:
    """``x -> ∂ Σ score / ∂x``: with independent examples, the per-example gradients."""
    score = score_fn(f, args, argnums, target)
    return jax.grad(lambda x: jnp.sum(score(x)))
