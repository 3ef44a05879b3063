"""Pooling and initialisation helpers with exactly PyTorch's semantics, on NHWC arrays.

Every helper lowers to standard primitives the LRP interpreter understands: ``reduce_window``
(max and sum pooling), ``slice``, ``reduce_sum``, ``div`` and ``concatenate``.

References:
    PyTorch documentation of ``torch.nn.MaxPool2d`` (output size with ``ceil_mode``) and
    ``torch.nn.AdaptiveAvgPool2d``; ATen ``AdaptiveAveragePooling.cpp`` (bin boundaries
    ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "adaptive_avg_pool",
    "adaptive_bins",
    "global_avg_pool",
    "he_normal",
    "max_pool",
    "torch_padding",
]

he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
"""Kaiming/He normal initialiser (std ``sqrt(2 / fan_in)``) used for random weights."""


def torch_padding(padding: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric spatial padding ``padding`` on both sides of H and W, as ``nn.Conv2d`` does."""
    return ((padding, padding), (padding, padding))


def _pool_extent(size: int, window: int, stride: int, padding: int, ceil_mode: bool) -> int:
    span = size + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # torch: the last window must start inside the input or the left padding
    return out


def max_pool(
    x: jax.Array, window: int, stride: int, padding: int = 0, ceil_mode: bool = False
) -> jax.Array:
    """``torch.nn.MaxPool2d(window, stride, padding, ceil_mode=ceil_mode)`` on NHWC input.

    Padding is with ``-inf`` (never selected); with ``ceil_mode`` the extra windows at the
    bottom/right see only the input rows/columns that exist, as in torch.

    Args:
        x: Array of shape ``(N, H, W, C)``.
        window: Square pooling window.
        stride: Stride in H and W.
        padding: Implicit ``-inf`` padding on each side.
        ceil_mode: Round the output size up instead of down.

    Returns:
        Array of shape ``(N, H', W', C)`` with torch's output size.
    """
    pads = []
    for size in x.shape[1:3]:
        out = _pool_extent(size, window, stride, padding, ceil_mode)
        extra = max((out - 1) * stride + window - (size + 2 * padding), 0)
        pads.append((padding, padding + extra))
    return nn.max_pool(x, (window, window), (stride, stride), padding=tuple(pads))


def adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """Torch's adaptive pooling bins: ``[floor(i*size/out), ceil((i+1)*size/out))`` per output."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _adaptive_axis(x: jax.Array, axis: int, out: int) -> jax.Array:
    size = x.shape[axis]
    if size == out:
        return x
    if size % out == 0:
        window = [1] * x.ndim
        window[axis] = size // out
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, window, "VALID")
        return total / (size // out)
    pieces = [
        jnp.mean(jax.lax.slice_in_dim(x, start, stop, axis=axis), axis=axis, keepdims=True)
        for start, stop in adaptive_bins(size, out)
    ]
    return jnp.concatenate(pieces, axis=axis)


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` on NHWC input, for any input size.

    The mean over a rectangular bin is separable, so H and W are pooled one after the other:
    identity when the sizes agree, a strided window sum when the input divides evenly, and
    otherwise one mean per (possibly overlapping, possibly single-row) bin, concatenated. This
    also covers upsampling such as 2x2 -> 7x7, where bins repeat input rows.

    Args:
        x: Array of shape ``(N, H, W, C)``.
        output_size: ``(H_out, W_out)``.

    Returns:
        Array of shape ``(N, H_out, W_out, C)``.
    """
    x = _adaptive_axis(x, 1, output_size[0])
    return _adaptive_axis(x, 2, output_size[1])


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over H and W: ``AdaptiveAvgPool2d(1)`` followed by ``flatten(1)``; shape (N, C)."""
    return jnp.mean(x, axis=(1, 2))
