"""Specification of heatmaps and overlays: what a user sees first."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.viz import colorize, heatmap, overlay

WHITE, BLACK = [255, 255, 255], [0, 0, 0]


def _signed_relevance(seed=0, shape=(2, 6, 5, 3)):
    return np.random.default_rng(seed).normal(size=shape)


def _is_reddish(rgb):
    r, g, b = (int(v) for v in rgb)
    return r > b + 50 and r >= g


def _is_bluish(rgb):
    r, g, b = (int(v) for v in rgb)
    return b > r + 50 and b >= g


def test_positive_relevance_is_red_and_negative_is_blue_under_bwr():
    r = np.zeros((1, 3, 3, 3))  # (N, H, W, C)
    r[0, 0, 0, 0], r[0, 0, 1, 0] = 2.0, -1.0
    rgb = heatmap(r)[0]
    assert _is_reddish(rgb[0, 0]) and _is_bluish(rgb[0, 1])
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[0, 1].tolist() == [128, 128, 255]


def test_zero_relevance_is_white_under_bwr_and_black_under_coldnhot():
    r = np.zeros((4, 4, 3))
    r[0, 0, 0] = 1.0
    assert heatmap(r, cmap="bwr")[2, 2].tolist() == WHITE
    assert heatmap(r, cmap="coldnhot")[2, 2].tolist() == BLACK


def test_coldnhot_shows_positive_hot_and_negative_cold():
    r = np.array([[1.0, 0.6, -0.6, -1.0]])
    rgb = heatmap(r, cmap="coldnhot", reduce=None)
    hot_strong, hot_weak, cold_weak, cold_strong = rgb[0].tolist()
    assert hot_strong == [255, 255, 0] and hot_weak[0] == 255 and hot_weak[2] == 0  # yellow, red
    assert cold_strong == [0, 255, 255] and cold_weak[2] == 255 and cold_weak[0] == 0  # cyan, blue


def test_negated_relevance_gives_mirrored_colours():
    r = _signed_relevance()
    np.testing.assert_array_equal(heatmap(-r), heatmap(r)[..., ::-1])  # bwr: swap red and blue


def test_scaling_relevance_by_a_constant_does_not_change_the_image():
    r = _signed_relevance()
    np.testing.assert_array_equal(heatmap(1e-6 * r), heatmap(r))
    np.testing.assert_array_equal(heatmap(1e6 * r, cmap="seismic"), heatmap(r, cmap="seismic"))


def test_batch_is_rendered_per_sample():
    r = _signed_relevance()
    batch = heatmap(r)
    assert batch.shape == (2, 6, 5, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[1], heatmap(r[1]))
    np.testing.assert_array_equal(heatmap(np.stack([r[0], 1e3 * r[1]]))[0], heatmap(r[0]))


def test_jax_arrays_are_accepted():
    r = _signed_relevance()
    np.testing.assert_array_equal(heatmap(jnp.asarray(r, dtype=jnp.float32)),
                                  heatmap(r.astype(np.float32)))


def test_channels_are_summed_by_default():
    r = np.zeros((1, 2, 3))
    r[0, 0] = [1.0, 1.0, -1.0]  # sum +1: red
    r[0, 1] = [-1.0, -1.0, 1.0]  # sum -1: blue
    assert heatmap(r)[0].tolist() == [[255, 0, 0], [0, 0, 255]]
    assert heatmap(r, reduce="abs", cmap="gray")[0].tolist() == [WHITE, WHITE]


def test_percentile_clipping_keeps_an_outlier_from_washing_out_the_map():
    r = np.full((10, 10), 0.5)
    r[0, 0] = 100.0
    washed = heatmap(r, reduce=None)[5, 5]
    clipped = heatmap(r, reduce=None, percentile=95)[5, 5]
    assert washed.tolist() == [255, 254, 254]  # nearly white
    assert clipped.tolist() == [255, 0, 0]  # full red


def test_sequential_maps_default_to_magnitude():
    r = np.array([[-1.0, 0.0, 1.0]])
    assert heatmap(r, cmap="gray", reduce=None)[0].tolist() == [WHITE, BLACK, WHITE]
    assert heatmap(r, cmap="gray", reduce=None, symmetric=True)[0, 1].tolist() == [128] * 3


def test_colorize_colours_per_pixel_values_without_reduction():
    assert colorize(np.array([-1.0, 0.0, 1.0])).tolist() == [[0, 0, 255], WHITE, [255, 0, 0]]


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2, 2, 2)])
def test_heatmap_rejects_shapes_it_cannot_interpret(shape):
    with pytest.raises(ValueError, match="shape"):
        heatmap(np.ones(shape))


def test_overlay_blends_image_and_heatmap_linearly():
    image = np.full((2, 2, 3), 0.2)
    r = np.ones((2, 2, 3))  # all positive: pure red heatmap
    out = overlay(image, r, alpha=0.25)
    expected = np.round(255 * (0.75 * 0.2 + 0.25 * np.array([1.0, 0.0, 0.0])))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.broadcast_to(expected, (2, 2, 3)))


def test_overlay_endpoints_are_image_and_heatmap():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    r = rng.normal(size=(4, 5, 3))
    np.testing.assert_array_equal(overlay(image, r, alpha=0.0), image)
    np.testing.assert_array_equal(overlay(image, r, alpha=1.0), heatmap(r))


def test_overlay_accepts_uint8_float_grayscale_and_batches_alike():
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, size=(2, 4, 4), dtype=np.uint8)
    r = rng.normal(size=(2, 4, 4, 3))
    as_float_rgb = np.repeat(gray[..., None] / 255.0, 3, axis=-1)
    batch = overlay(gray, r)
    assert batch.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(batch, overlay(as_float_rgb, r))
    np.testing.assert_array_equal(batch[0], overlay(gray[0], r[0]))


def test_overlay_rejects_bad_alpha_mismatched_shapes_and_unscaled_float_images():
    r = np.ones((4, 4, 3))
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((4, 4, 3)), r, alpha=1.5)
    with pytest.raises(ValueError, match="differ"):
        overlay(np.zeros((5, 4, 3)), r)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay(np.full((4, 4, 3), 128.0), r)


def test_unknown_colour_map_is_a_value_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match="bwr.*coldnhot"):
        heatmap(np.ones((2, 2, 3)), cmap="hotncold")
