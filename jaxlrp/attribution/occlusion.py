"""Occlusion and the random attribution (the control every evaluation compares against)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp.attribution._target import check_argnums, score_fn

Array = Any

__all__ = ["occlusion", "random"]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def window_grid(size: int, patch: int, stride: int) -> int:
    """Number of windows along one axis so that every position is covered (the last one may
    hang over the edge and is clipped)."""
    return -(-max(size - patch, 0) // stride) + 1


def spread(values: Array, patch: tuple[int, int], stride: tuple[int, int],
           size: tuple[int, int]) -> Array:  # fmt: skip
    """Sum window values back onto pixels: ``out[..., r, c] = Σ_{windows ∋ (r, c)} values``.

    ``values`` has shape ``(..., nH, nW)``; the result ``(..., H, W)``. A transposed convolution
    with a ones kernel of the patch size.
    """
    lead = values.shape[:-2]
    v = values.reshape((-1, 1, *values.shape[-2:]))
    kernel = jnp.ones((1, 1, *patch), values.dtype)
    out = jax.lax.conv_general_dilated(
        v, kernel, window_strides=(1, 1),
        padding=[(patch[0] - 1, patch[0] - 1), (patch[1] - 1, patch[1] - 1)],
        lhs_dilation=stride,
    )  # fmt: skip
    return out[:, 0, : size[0], : size[1]].reshape((*lead, *size))


def occlusion(
    f: Callable[..., Array],
    *args: Any,
    target: Any,
    argnums: int = -1,
    patch: int | Sequence[int] = 4,
    stride: int | Sequence[int] | None = None,
    baseline: Any = 0.0,
    axes: Sequence[int] = (-3, -2),
    chunk_size: int | None = None,
) -> Array:
    """Occlusion: the drop of the target score when a sliding patch is replaced by ``baseline``.

    For every window ``W`` (size ``patch``, step ``stride`` over the two spatial ``axes``, all
    other axes — channels — included), ``Δ_W = f_t(x) − f_t(x with W set to baseline)``; every
    element gets the mean of ``Δ_W`` over the windows that contain it. With ``stride == patch``
    each element of a patch gets that patch's ``Δ``. Windows at the far edges are clipped, so every
    position is covered.

    Args:
      patch: window size ``(ph, pw)`` or an int.
      stride: window step (``patch`` when None: non-overlapping).
      baseline: the replacement, a scalar or an array broadcastable to ``x``.
      axes: the two spatial axes of ``x`` (default NHWC / HWC: ``(-3, -2)``).
      chunk_size: number of occluded copies evaluated at once (all when None).

    References:
      Zeiler, Fergus, "Visualizing and understanding convolutional networks", ECCV 2014.
    """
    n = check_argnums(argnums, len(args))
    x = args[n]
    patch_hw = _pair(patch)
    stride_hw = patch_hw if stride is None else _pair(stride)
    ax = tuple(a % x.ndim for a in axes)
    height, width = x.shape[ax[0]], x.shape[ax[1]]
    n_h = window_grid(height, patch_hw[0], stride_hw[0])
    n_w = window_grid(width, patch_hw[1], stride_hw[1])
    base = jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
    score = score_fn(f, args, n, target)
    reference = score(x)
    rows = jnp.arange(height).reshape([height if i == ax[0] else 1 for i in range(x.ndim)])
    cols = jnp.arange(width).reshape([width if i == ax[1] else 1 for i in range(x.ndim)])

    def drop(index: Array) -> Array:
        r0 = (index // n_w) * stride_hw[0]
        c0 = (index % n_w) * stride_hw[1]
        inside = (rows >= r0) & (rows < r0 + patch_hw[0]) & (cols >= c0) & (cols < c0 + patch_hw[1])
        return reference - score(jnp.where(inside, base, x))

    deltas = jax.lax.map(drop, jnp.arange(n_h * n_w), batch_size=chunk_size)  # (K, *batch)
    deltas = jnp.moveaxis(deltas.reshape((n_h, n_w, *reference.shape)), (0, 1), (-2, -1))
    total = spread(deltas, patch_hw, stride_hw, (height, width))  # (*batch, H, W)
    count = spread(jnp.ones((n_h, n_w), x.dtype), patch_hw, stride_hw, (height, width))
    per_pixel = total / count
    # Broadcast (*batch, H, W) onto x: batch axes lead, spatial axes at ``ax``, others size 1.
    batch_nd = per_pixel.ndim - 2
    rest = [i for i in range(x.ndim) if i not in ax]
    target_shape = [1] * x.ndim
    for i, dim in zip(rest[:batch_nd], per_pixel.shape[:batch_nd], strict=True):
        target_shape[i] = dim
    target_shape[ax[0]], target_shape[ax[1]] = height, width
    order = rest[:batch_nd] + list(ax)
    expanded = jnp.transpose(per_pixel, [order.index(i) for i in sorted(order)])
    expanded = expanded.reshape(target_shape)
    return jnp.broadcast_to(expanded, x.shape).astype(x.dtype)


def random(
    f: Callable[..., Array],
    *args: Any,
    target: Any = None,
    argnums: int = -1,
    key: Array | None = None,
) -> Array:
    """A random attribution, ``U[0, 1)`` i.i.d. per element: the control of every evaluation
    (``f`` and ``target`` are ignored)."""
    n = check_argnums(argnums, len(args))
    key = jax.random.key(0) if key is None else key
    x = args[n]
    return jax.random.uniform(key, jnp.shape(x), jnp.result_type(x))
