"""Pooling helpers reproduce torch's MaxPool2d (floor and ceil mode) and AdaptiveAvgPool2d."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.models.layers import adaptive_avg_pool, adaptive_bins, max_pool


def _torch_nhwc(torch, fn, x):
    out = fn(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return out.numpy().transpose(0, 2, 3, 1)


def test_adaptive_bins_follow_torch_floor_ceil_rule():
    assert adaptive_bins(2, 7) == [(0, 1), (0, 1), (0, 1), (0, 2), (1, 2), (1, 2), (1, 2)]
    assert adaptive_bins(7, 7) == [(i, i + 1) for i in range(7)]
    assert adaptive_bins(10, 3) == [(0, 4), (3, 7), (6, 10)]


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 5), (7, 7), (9, 14), (14, 14), (13, 8)])
def test_adaptive_avg_pool_matches_torch(torch, size):
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype(np.float32)
    expected = _torch_nhwc(torch, lambda t: torch.nn.functional.adaptive_avg_pool2d(t, 7), x)
    actual = adaptive_avg_pool(jnp.asarray(x), (7, 7))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


def test_adaptive_avg_pool_is_identity_at_output_size():
    x = jnp.arange(2 * 7 * 7 * 3, dtype=jnp.float32).reshape(2, 7, 7, 3)
    assert adaptive_avg_pool(x, (7, 7)) is x


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize(
    "size, window, stride, padding",
    [(8, 2, 2, 0), (7, 2, 2, 0), (7, 3, 2, 1), (6, 3, 2, 1), (10, 3, 3, 1), (5, 3, 2, 0)],
)
def test_max_pool_matches_torch(torch, ceil_mode, size, window, stride, padding):
    x = np.random.default_rng(1).normal(size=(1, size, size + 1, 2)).astype(np.float32)
    pool = torch.nn.MaxPool2d(window, stride, padding, ceil_mode=ceil_mode)
    expected = _torch_nhwc(torch, pool, x)
    actual = max_pool(jnp.asarray(x), window, stride, padding, ceil_mode)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
