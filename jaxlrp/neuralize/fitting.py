"""k-means in pure JAX: k-means++ seeding followed by Lloyd's iterations, compiled with jit."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

Array = Any


def _squared_distances(x: Array, centroids: Array) -> Array:
    """``||x_n − μ_k||²`` of shape ``(N, K)``, never negative."""
    d = (
        jnp.sum(x * x, axis=-1)[:, None]
        - 2.0 * x @ centroids.T
        + jnp.sum(centroids * centroids, axis=-1)[None, :]
    )
    return jnp.maximum(d, 0.0)


def _seed(x: Array, k: int, key: Array) -> Array:
    """k-means++ seeding: each centre is a point drawn with probability ∝ its squared distance
    to the nearest centre chosen so far (the first one, and any one drawn when all points
    coincide with chosen centres, uniformly)."""
    n, features = x.shape

    def add_centre(i: Array, state: tuple[Array, Array]) -> tuple[Array, Array]:
        centroids, nearest = state
        weight = jnp.where(jnp.sum(nearest) > 0, nearest, 1.0)
        index = jax.random.categorical(jax.random.fold_in(key, i), jnp.log(weight))
        nearest = jnp.minimum(nearest, _squared_distances(x, x[index][None])[:, 0])
        return centroids.at[i].set(x[index]), nearest

    start = (jnp.zeros((k, features), x.dtype), jnp.zeros((n,), x.dtype))
    centroids, _ = jax.lax.fori_loop(0, k, add_centre, start)
    return centroids


def _lloyd_step(x: Array, centroids: Array) -> Array:
    """Assign every point to its nearest centre, move each centre to the mean of its points
    (a centre that lost all its points stays where it is)."""
    k = centroids.shape[0]
    onehot = jax.nn.one_hot(jnp.argmin(_squared_distances(x, centroids), axis=-1), k, dtype=x.dtype)
    counts = jnp.sum(onehot, axis=0)
    sums = onehot.T @ x
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centroids)


@functools.partial(jax.jit, static_argnames=("k", "steps"))
def kmeans(x: Array, k: int, key: Array, steps: int = 100) -> Array:
    """Fit k-means to the points ``x`` and return the centroids.

    Minimizes ``Σ_n min_k ||x_n − μ_k||²`` by k-means++ seeding (Arthur & Vassilvitskii, 2007)
    and ``steps`` Lloyd iterations (Lloyd, 1982): assign each point to its nearest centroid,
    then move each centroid to the mean of its points. A centroid left without points stays
    in place. One seeding only: run several keys and keep the lowest inertia if needed.

    The function is compiled with ``jax.jit`` (``k`` and ``steps`` are static) and is pure, so
    it also runs inside a user's ``jit`` or ``vmap`` (e.g. over keys).

    Args:
      x: data of shape ``(n_points, n_features)``.
      k: number of clusters, ``2 <= k <= n_points``.
      key: a ``jax.random`` key for the seeding.
      steps: number of Lloyd iterations (a fixed count, so that the function compiles; 100 is
        ample for well-separated clusters).

    Returns:
      Centroids of shape ``(k, n_features)``, ready for
      :class:`jaxlrp.neuralize.KMeansNetwork`.

    Raises:
      ValueError: when ``x`` is not 2-D or ``k`` is out of range.

    References:
      Lloyd, "Least squares quantization in PCM", IEEE Trans. Information Theory 28(2), 1982.
      Arthur, Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"kmeans needs data of shape (n_points, n_features), got {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    if not 2 <= k <= x.shape[0]:
        raise ValueError(
            f"k = {k} clusters for {x.shape[0]} points: choose 2 <= k <= n_points (the "
            "neuralized network needs at least one competitor per cluster)"
        )
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    # Centred data keep the expanded distances ||x||² − 2x·μ + ||μ||² accurate.
    centre = jnp.mean(x, axis=0)
    x = x - centre
    centroids = _seed(x, k, key)
    centroids = jax.lax.fori_loop(0, steps, lambda _, c: _lloyd_step(x, c), centroids)
    return centroids + centre


__all__ = ["kmeans"]
