"""Model-randomization sanity check (Adebayo et al. 2018) and explanation-similarity measures.

Cascading randomization: the parameter groups of a model are re-drawn at random one after the
other, from the output layer down to the input; after each step the explanation of the partly
randomized model is compared with the trained model's. An explanation method that passes the
check produces increasingly *dissimilar* maps; one whose maps stay similar explains the input
more than the model.

References:
  Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity checks for saliency maps",
  NeurIPS 2018.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Array = Any

__all__ = [
    "RandomizationResult",
    "cascading_randomization",
    "parameter_groups",
    "randomize_group",
    "spearman",
    "ssim",
]


def _rank(x: Array) -> Array:
    return jnp.argsort(jnp.argsort(x, axis=-1), axis=-1).astype(jnp.float32)


def spearman(a: Array, b: Array, batch_ndim: int = 1) -> Array:
    """Spearman rank correlation between two maps per example (ties ranked by position).

    The leading ``batch_ndim`` axes are batch axes; the rest are flattened.
    """
    a = jnp.reshape(a, (*jnp.shape(a)[:batch_ndim], -1))
    b = jnp.reshape(b, (*jnp.shape(b)[:batch_ndim], -1))
    ra, rb = _rank(a), _rank(b)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    return (ra * rb).sum(-1) / jnp.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))


def _gaussian_filter(img: Array, sigma: float, radius: int) -> Array:
    t = jnp.arange(-radius, radius + 1, dtype=img.dtype)
    k = jnp.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    flat = img.reshape((-1, 1, *img.shape[-2:]))
    out = jax.lax.conv_general_dilated(flat, k[None, None, :, None], (1, 1), "VALID")
    out = jax.lax.conv_general_dilated(out, k[None, None, None, :], (1, 1), "VALID")
    return out.reshape((*img.shape[:-2], *out.shape[-2:]))


def ssim(a: Array, b: Array, sigma: float = 1.5, data_range: float | None = None) -> Array:
    """Structural similarity of two 2-D maps ``(..., H, W)``, averaged per map.

    Gaussian window (σ = 1.5, radius 3σ, valid part only), ``C₁ = (0.01 L)²``,
    ``C₂ = (0.03 L)²`` with ``L = data_range`` (the joint range of the two maps per example when
    None). Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 2004.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    radius = min(int(3 * sigma + 0.5), (min(a.shape[-2:]) - 1) // 2)
    if data_range is None:
        hi = jnp.maximum(a.max((-2, -1)), b.max((-2, -1)))
        lo = jnp.minimum(a.min((-2, -1)), b.min((-2, -1)))
        data_range = jnp.maximum(hi - lo, 1e-12)[..., None, None]
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a = _gaussian_filter(a, sigma, radius)
    mu_b = _gaussian_filter(b, sigma, radius)
    var_a = _gaussian_filter(a * a, sigma, radius) - mu_a**2
    var_b = _gaussian_filter(b * b, sigma, radius) - mu_b**2
    cov = _gaussian_filter(a * b, sigma, radius) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    s = numerator / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean((-2, -1))


def parameter_groups(variables: Any, collection: str = "params") -> list[tuple[str, ...]]:
    """The top-level submodules of ``variables[collection]`` as groups of paths, output first.

    Each group is a path prefix such as ``("params", "fc2")``; the order is the reverse of the
    dictionary's insertion order, which for Flax is the order of definition (input → output).
    """
    names = list(variables[collection].keys())
    return [(collection, name) for name in reversed(names)]


def randomize_group(variables: Any, prefix: Sequence[str], key: Array,
                    how: str = "normal") -> Any:  # fmt: skip
    """Re-draw every leaf under ``prefix`` (a path of dictionary keys).

    ``how="normal"``: ``N(0, std(leaf)²)`` of the leaf's own standard deviation (a biases' std of 0
    leaves it at zero); ``how="permute"``: the leaf's values shuffled.
    """
    if how not in ("normal", "permute"):
        raise ValueError(f"how must be 'normal' or 'permute', got {how!r}")

    def visit(tree: Any, path: tuple[str, ...], key: Array) -> Any:
        if path:
            head, *rest = path
            if head not in tree:
                raise KeyError(f"no variables under {prefix!r} (missing {head!r})")
            new = dict(tree)
            new[head] = visit(tree[head], tuple(rest), key)
            return new
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        keys = jax.random.split(key, max(len(leaves), 1))
        out = []
        for leaf, k in zip(leaves, keys, strict=False):
            if how == "normal":
                out.append(jnp.std(leaf) * jax.random.normal(k, leaf.shape, leaf.dtype))
            else:
                out.append(jax.random.permutation(k, leaf.ravel()).reshape(leaf.shape))
        return jax.tree_util.tree_unflatten(treedef, out)

    return visit(variables, tuple(prefix), key)


@dataclasses.dataclass(frozen=True)
class RandomizationResult:
    """Similarities after each cascading step.

    Attributes:
      groups: the randomized groups in order (step ``k`` has groups ``0..k`` randomized).
      spearman: ``(steps, batch)`` Spearman rank correlation with the trained model's maps.
      spearman_abs: the same between absolute values.
      ssim: ``(steps, batch)`` SSIM between the maps normalized by their max |value|.
    """

    groups: tuple[tuple[str, ...], ...]
    spearman: Array
    spearman_abs: Array
    ssim: Array


def cascading_randomization(
    explain_fn: Callable[[Any, Array], Array],
    variables: Any,
    x: Array,
    *,
    key: Array,
    groups: Sequence[Sequence[str]] | None = None,
    how: str = "normal",
    reduce_axis: int | None = -1,
) -> RandomizationResult:
    """The cascading model-randomization check of Adebayo et al. (2018).

    Args:
      explain_fn: ``(variables, x) -> attribution of x`` for a batch ``x`` (bind the model,
        target and method, e.g. ``lambda v, x: attribution.gradient(model.apply, v, x,
        target=t)``; jit it for speed).
      variables: the trained variables (nested dictionaries).
      x: a batch of inputs ``(batch, H, W[, C])``.
      key: PRNG key of the randomization.
      groups: path prefixes to randomize in order (top-down); by default
        :func:`parameter_groups` — the top-level submodules, output layer first.
      how: see :func:`randomize_group`.
      reduce_axis: the channel axis summed before comparing (None: maps are ``(batch, H, W)``).

    Returns:
      A :class:`RandomizationResult`.
    """
    groups = [tuple(g) for g in (groups if groups is not None else parameter_groups(variables))]

    def as_map(r: Array) -> Array:
        return r.sum(axis=reduce_axis) if reduce_axis is not None else r

    def normalized(m: Array) -> Array:
        scale = jnp.max(jnp.abs(m), axis=(-2, -1), keepdims=True)
        return m / jnp.where(scale > 0, scale, 1.0)

    reference = as_map(explain_fn(variables, x))
    keys = jax.random.split(key, len(groups))
    randomized = variables
    rho, rho_abs, sim = [], [], []
    for group, k in zip(groups, keys, strict=True):
        randomized = randomize_group(randomized, group, k, how)
        current = as_map(explain_fn(randomized, x))
        rho.append(spearman(reference, current))
        rho_abs.append(spearman(jnp.abs(reference), jnp.abs(current)))
        sim.append(ssim(normalized(reference), normalized(current), data_range=2.0))
    return RandomizationResult(tuple(groups), jnp.stack(rho), jnp.stack(rho_abs), jnp.stack(sim))
