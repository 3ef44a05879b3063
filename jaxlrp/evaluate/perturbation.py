"""Region perturbation (pixel flipping): MoRF and LeRF curves, AOPC and the LeRF−MoRF area.

The input is cut into a grid of non-overlapping ``patch``-sized regions over its two spatial axes;
each region's relevance is the sum of the attribution over it (and over the channels). Regions
are replaced by a *perturbation* of the input, most relevant first (MoRF) or least relevant first
(LeRF), ``steps`` times, and the target score is recorded after every step: a curve of
``steps + 1`` points starting at the unperturbed score. Everything is array code: wrap the call
in ``jax.jit`` and it is one compiled computation over the whole batch (the perturbed copies are
evaluated with ``lax.map`` in chunks of ``chunk_size``).

References:
  Samek, Binder, Montavon, Lapuschkin, Müller, "Evaluating the visualization of what a deep
  neural network has learned", IEEE TNNLS 28(11), 2017.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp.attribution._target import check_argnums, score_fn
from jaxlrp.attribution.occlusion import _pair

Array = Any

__all__ = [
    "Blur",
    "Constant",
    "PerturbationCurves",
    "UniformNoise",
    "aopc",
    "area_between",
    "perturbation_curve",
    "region_perturbation",
    "region_scores",
]


@dataclasses.dataclass(frozen=True)
class UniformNoise:
    """Replace regions by i.i.d. ``U[low, high)`` noise (Samek et al. 2017)."""

    low: float = 0.0
    high: float = 1.0

    def __call__(self, x: Array, key: Array, axes: tuple[int, int]) -> Array:
        return jax.random.uniform(key, x.shape, x.dtype, self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Constant:
    """Replace regions by a constant (a scalar or an array broadcastable to the input)."""

    value: Any = 0.0

    def __call__(self, x: Array, key: Array, axes: tuple[int, int]) -> Array:
        return jnp.broadcast_to(jnp.asarray(self.value, x.dtype), x.shape)


@dataclasses.dataclass(frozen=True)
class Blur:
    """Replace regions by a Gaussian blur of the input (std ``sigma`` pixels, edges reflected)."""

    sigma: float = 2.0

    def __call__(self, x: Array, key: Array, axes: tuple[int, int]) -> Array:
        radius = max(1, int(3 * self.sigma + 0.5))
        t = jnp.arange(-radius, radius + 1, dtype=x.dtype)
        kernel = jnp.exp(-0.5 * (t / self.sigma) ** 2)
        kernel = kernel / kernel.sum()
        out = x
        for axis in axes:
            moved = jnp.moveaxis(out, axis, -1)
            pad = [(0, 0)] * (moved.ndim - 1) + [(radius, radius)]
            padded = jnp.pad(moved, pad, mode="reflect")
            flat = padded.reshape(-1, 1, padded.shape[-1])
            smooth = jax.lax.conv_general_dilated(flat, kernel[None, None], (1,), "VALID")
            out = jnp.moveaxis(smooth.reshape(moved.shape), -1, axis)
        return out


Perturbation = Callable[[Array, Array, tuple[int, int]], Array]


def region_scores(relevance: Array, patch: tuple[int, int], axes: tuple[int, int],
                  batch_ndim: int) -> Array:  # fmt: skip
    """Relevance summed per ``patch`` region: shape ``(*batch, nH, nW)``.

    The spatial sizes must be multiples of the patch size; axes other than the batch and
    spatial ones (channels) are summed.
    """
    r = jnp.moveaxis(relevance, axes, (-2, -1))
    height, width = r.shape[-2:]
    if height % patch[0] or width % patch[1]:
        raise ValueError(
            f"the spatial size {(height, width)} is not a multiple of the patch {patch}"
        )
    r = r.reshape((*r.shape[:-2], height // patch[0], patch[0], width // patch[1], patch[1]))
    r = r.sum(axis=(-3, -1))
    extra = tuple(range(batch_ndim, r.ndim - 2))
    return r.sum(axis=extra) if extra else r


def _ranks(scores: Array, key: Array | None) -> Array:
    """Rank of every region, 0 = most relevant; ties broken at random with ``key``."""
    flat = scores.reshape((*scores.shape[:-2], -1))
    if key is None:
        order = jnp.argsort(-flat, axis=-1, stable=True)
    else:
        tiebreak = jax.random.uniform(key, flat.shape)
        order = jnp.lexsort((tiebreak, -flat), axis=-1)
    return jnp.argsort(order, axis=-1).reshape(scores.shape)


def _setup(x: Array, patch: Any, axes: Sequence[int], steps: int | None, batch_ndim: int):
    patch_hw = _pair(patch)
    ax = tuple(a % x.ndim for a in axes)
    n_regions = (x.shape[ax[0]] // patch_hw[0]) * (x.shape[ax[1]] // patch_hw[1])
    steps = n_regions if steps is None else int(steps)
    if not 1 <= steps <= n_regions:
        raise ValueError(f"steps must be in [1, {n_regions}] (the number of regions), got {steps}")
    # number of regions perturbed after step k = round(k · n / steps)
    counts = jnp.round(jnp.arange(steps + 1) * (n_regions / steps)).astype(jnp.int32)
    return patch_hw, ax, counts


def _region_mask(ranks: Array, count: Array, patch: tuple[int, int], ax: tuple[int, int],
                 x: Array, batch_ndim: int) -> Array:  # fmt: skip
    """Boolean mask of ``x``'s shape: True on the regions with rank < ``count``."""
    chosen = ranks < count  # (*batch, nH, nW)
    up = jnp.repeat(jnp.repeat(chosen, patch[0], axis=-2), patch[1], axis=-1)
    # place (*batch, H, W) onto x's axes: batch leading, spatial at ax, channels of size 1
    rest = [i for i in range(x.ndim) if i not in ax]
    order = rest[:batch_ndim] + list(ax)
    up = jnp.transpose(up, [order.index(i) for i in sorted(order)])
    shape = [1] * x.ndim
    for i in order:
        shape[i] = x.shape[i]
    return jnp.broadcast_to(up.reshape(shape), x.shape)


def perturbation_curve(
    f: Callable[..., Array],
    *args: Any,
    relevance: Array,
    target: Any,
    argnums: int = -1,
    order: str = "morf",
    patch: int | Sequence[int] = 4,
    steps: int | None = None,
    perturbation: Perturbation = UniformNoise(),
    key: Array | None = None,
    axes: Sequence[int] = (-3, -2),
    chunk_size: int | None = None,
) -> Array:
    """One region-perturbation curve: the target score after each perturbation step.

    Args:
      f: the model, as for :func:`jaxlrp.explain`.
      *args: its arguments, as for :func:`jaxlrp.explain`.
      target: the explained output, as for :func:`jaxlrp.explain`.
      argnums: which argument is perturbed, as for :func:`jaxlrp.explain`.
      relevance: an attribution of ``args[argnums]`` (same shape).
      order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
      patch: region size ``(ph, pw)`` or an int; the spatial sizes must be multiples of it.
      steps: number of steps ``L``; after step ``k``, ``round(k·n/L)`` of the ``n`` regions are
        perturbed (all ``n`` one by one when None).
      perturbation: :class:`UniformNoise`, :class:`Constant`, :class:`Blur` or any
        ``(x, key, axes) -> replacement`` of ``x``'s shape. One replacement image is drawn per
        call, so MoRF and LeRF of the same ``key`` replace a region by the same values.
      key: PRNG key for the noise and for random tie-breaking between regions of equal relevance
        (without a key, ties go in raster order — which biases methods that give many regions
        exactly zero relevance).
      axes: the two spatial axes (default NHWC: ``(-3, -2)``).
      chunk_size: perturbed copies evaluated at once (all ``L + 1`` when None).

    Returns:
      Scores of shape ``(*batch, L + 1)``, the first the unperturbed score.
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    n = check_argnums(argnums, len(args))
    x = args[n]
    score = score_fn(f, args, n, target)
    batch_ndim = len(jax.eval_shape(score, x).shape)
    patch_hw, ax, counts = _setup(x, patch, axes, steps, batch_ndim)
    noise_key, tie_key = (None, None) if key is None else jax.random.split(key)
    replacement = perturbation(x, noise_key if noise_key is not None else jax.random.key(0), ax)
    regions = region_scores(relevance, patch_hw, ax, batch_ndim)
    if order == "lerf":
        regions = -regions
    ranks = _ranks(regions, tie_key)

    def step(count: Array) -> Array:
        mask = _region_mask(ranks, count, patch_hw, ax, x, batch_ndim)
        return score(jnp.where(mask, replacement, x))

    curve = jax.lax.map(step, counts, batch_size=chunk_size)  # (L + 1, *batch)
    return jnp.moveaxis(curve, 0, -1)


@dataclasses.dataclass(frozen=True)
class PerturbationCurves:
    """MoRF and LeRF curves ``(*batch, L + 1)`` and their summaries (per example).

    Attributes:
      morf, lerf: the curves.
      aopc_morf, aopc_lerf: :func:`aopc` of each curve.
      area: :func:`area_between` LeRF and MoRF (``aopc_morf − aopc_lerf``; random order ≈ 0).
    """

    morf: Array
    lerf: Array

    @property
    def aopc_morf(self) -> Array:
        return aopc(self.morf)

    @property
    def aopc_lerf(self) -> Array:
        return aopc(self.lerf)

    @property
    def area(self) -> Array:
        return area_between(self.morf, self.lerf)


jax.tree_util.register_dataclass(PerturbationCurves, data_fields=["morf", "lerf"], meta_fields=[])


def region_perturbation(
    f: Callable[..., Array],
    *args: Any,
    relevance: Array,
    target: Any,
    argnums: int = -1,
    **options: Any,
) -> PerturbationCurves:
    """MoRF and LeRF curves of one attribution (see :func:`perturbation_curve` for options).

    Both curves use the same replacement image and tie-breaking key. Jit-compatible: e.g.
    ``jax.jit(lambda v, x, r, t, k: region_perturbation(model.apply, v, x, relevance=r,
    target=t, key=k, patch=4))``.
    """
    morf = perturbation_curve(f, *args, relevance=relevance, target=target, argnums=argnums,
                              order="morf", **options)  # fmt: skip
    lerf = perturbation_curve(f, *args, relevance=relevance, target=target, argnums=argnums,
                              order="lerf", **options)  # fmt: skip
    return PerturbationCurves(morf, lerf)


def aopc(curve: Array) -> Array:
    """Area over the perturbation curve: ``1/(L+1) Σ_{k=0..L} (f(x⁽⁰⁾) − f(x⁽ᵏ⁾))`` per example.

    Average over a data set for Samek et al.'s AOPC. Higher is better for a MoRF curve.
    """
    curve = jnp.asarray(curve)
    return jnp.mean(curve[..., :1] - curve, axis=-1)


def area_between(morf: Array, lerf: Array) -> Array:
    """The mean gap between the LeRF and the MoRF curve, ``1/(L+1) Σ_k (lerf_k − morf_k)``
    per example (= AOPC(MoRF) − AOPC(LeRF)); ≈ 0 for a random order, higher is better."""
    return jnp.mean(jnp.asarray(lerf) - jnp.asarray(morf), axis=-1)
