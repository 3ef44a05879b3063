"""Random weights for zoo models, drawn quickly with numpy from a seed.

Kernels (conv and dense) are He-normal, ``N(0, 2 / fan_in)`` with fan_in the product of all
kernel axes but the last (``kh * kw * in_per_group`` or ``in``); biases are zero. Every batch
norm gets non-trivial values so that batch-norm folding is really exercised: scale ~
U(0.5, 1.5), bias ~ N(0, 0.1²), running mean ~ N(0, 0.1²), running var ~ U(0.5, 1.5).

Drawing with numpy from the shapes (``jax.eval_shape`` of ``init``) avoids compiling the
initialisation, which takes seconds per model on CPU.

References:
    K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers", ICCV 2015.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.models.convert import set_leaf

__all__ = ["random_variables"]


def random_variables(template: Mapping, seed: int) -> dict[str, Any]:
    """Random variables with the structure, shapes and dtypes of ``template``.

    Args:
        template: Variables or their ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape``).
        seed: Seed of the numpy generator; the same seed gives the same variables.

    Returns:
        Nested dicts of ``jax.Array`` mirroring ``template``.
    """
    rng = np.random.default_rng(seed)
    flat, _ = jax.tree_util.tree_flatten_with_path(template)
    paths = [tuple(str(getattr(k, "key", k)) for k in key_path) for key_path, _ in flat]
    norms = {p[1:-1] for p in paths if p[0] == "params" and p[-1] == "scale"}
    out: dict[str, Any] = {}
    for path, (_, leaf) in zip(paths, flat, strict=True):
        value = _draw_leaf(rng, path, tuple(leaf.shape), path[1:-1] in norms)
        set_leaf(out, path, jnp.asarray(value, dtype=leaf.dtype))
    return out


def _draw_leaf(
    rng: np.random.Generator, path: tuple[str, ...], shape: tuple[int, ...], batch_norm: bool
) -> np.ndarray:
    collection, leaf = path[0], path[-1]
    if batch_norm and leaf in ("scale", "var"):
        return rng.uniform(0.5, 1.5, shape)
    if batch_norm and leaf in ("bias", "mean"):
        return 0.1 * rng.standard_normal(shape, dtype=np.float32)
    if collection == "params" and leaf == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        return np.float32(np.sqrt(2.0 / fan_in)) * rng.standard_normal(shape, dtype=np.float32)
    return np.zeros(shape, np.float32)
