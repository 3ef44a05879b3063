"""Specification of channel reduction and normalization of relevance."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.viz import normalize, reduce_channels, relevance_scale

PIXEL = np.array([[[1.0, -2.0, 2.0]]])  # one pixel, three channels


@pytest.mark.parametrize(
    ("how", "expected"),
    [("sum", 1.0), ("abs", 5.0), ("pos", 3.0), ("norm", 3.0)],
)
def test_reduce_channels_on_known_pixel(how, expected):
    assert reduce_channels(PIXEL, how=how) == pytest.approx(np.array([[expected]]))


def test_reduce_channels_sums_over_colour_channels_by_default_and_accepts_jax():
    r = jnp.arange(2 * 4 * 5 * 3, dtype=jnp.float32).reshape(2, 4, 5, 3)
    out = reduce_channels(r)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, np.asarray(r).sum(-1))


def test_reduce_channels_along_given_axis_for_channels_first():
    r = np.random.default_rng(0).normal(size=(3, 4, 5))
    np.testing.assert_allclose(reduce_channels(r, axis=0), r.sum(0))


def test_unknown_reduction_names_the_valid_ones():
    with pytest.raises(ValueError, match="sum, abs, pos, norm"):
        reduce_channels(PIXEL, how="mean")


def test_symmetric_normalization_maps_zero_to_half_and_extremes_to_ends():
    r = np.array([-4.0, -2.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(normalize(r), [0.0, 0.25, 0.5, 0.625, 0.75])


def test_symmetric_normalization_mirrors_under_negation_and_ignores_positive_scale():
    r = np.random.default_rng(1).normal(size=(6, 7))
    np.testing.assert_allclose(normalize(-r), 1.0 - normalize(r))
    np.testing.assert_allclose(normalize(123.0 * r), normalize(r))


def test_absolute_mode_maps_magnitude_to_unit_interval():
    r = np.array([-4.0, -2.0, 0.0, 1.0])
    np.testing.assert_allclose(normalize(r, symmetric=False), [1.0, 0.5, 0.0, 0.25])


def test_percentile_sets_scale_and_clips_larger_values():
    r = np.concatenate([np.linspace(-1.0, 1.0, 999), [1000.0]])
    assert relevance_scale(r, percentile=99.0) < 1.01
    out = normalize(r, percentile=99.0)
    assert out[-1] == 1.0  # the outlier is clipped, not stretched
    assert out.min() == pytest.approx(0.0, abs=0.01)  # the bulk keeps the full range
    assert normalize(r)[0] == pytest.approx(0.5, abs=1e-3)  # without clipping it is washed out


def test_gamma_brightens_weak_relevance_symmetrically():
    r = np.array([-1.0, -0.25, 0.0, 0.25, 1.0])
    np.testing.assert_allclose(normalize(r, gamma=0.5), [0.0, 0.25, 0.5, 0.75, 1.0])


def test_all_zero_relevance_is_neutral():
    np.testing.assert_array_equal(normalize(np.zeros((3, 3))), 0.5)
    np.testing.assert_array_equal(normalize(np.zeros((3, 3)), symmetric=False), 0.0)


def test_batched_normalization_scales_each_sample_separately():
    r = np.stack([np.array([1.0, -1.0]), np.array([100.0, -50.0])])
    np.testing.assert_allclose(normalize(r, batched=True), [[1.0, 0.0], [1.0, 0.25]])


@pytest.mark.parametrize("kwargs", [{"percentile": 0.0}, {"percentile": 101.0}, {"gamma": 0.0}])
def test_invalid_percentile_or_gamma_is_rejected(kwargs):
    with pytest.raises(ValueError):
        normalize(np.ones(3), **kwargs)
