"""Specification of the built-in colour maps."""

import numpy as np
import pytest

from jaxlrp.viz import COLORMAPS, ColorMap, apply_colormap, available_colormaps, get_colormap


def test_users_expected_colour_maps_are_built_in():
    assert {"bwr", "seismic", "coldnhot", "hot", "gray", "grey"} <= set(available_colormaps())


def test_bwr_is_blue_white_red():
    np.testing.assert_array_equal(apply_colormap([0.0, 0.5, 1.0], "bwr"),
                                  [[0, 0, 255], [255, 255, 255], [255, 0, 0]])


def test_coldnhot_is_cyan_blue_black_red_yellow():
    np.testing.assert_array_equal(
        apply_colormap([0.0, 0.25, 0.5, 0.75, 1.0], "coldnhot"),
        [[0, 255, 255], [0, 0, 255], [0, 0, 0], [255, 0, 0], [255, 255, 0]],
    )


def test_seismic_has_white_centre_and_dark_ends():
    np.testing.assert_array_equal(apply_colormap([0.0, 0.5, 1.0], "seismic"),
                                  [[0, 0, 76], [255, 255, 255], [128, 0, 0]])


def test_sequential_maps_start_dark_and_end_white():
    for name in ("hot", "gray", "grey"):
        start, end = apply_colormap([0.0, 1.0], name)
        assert start.max() <= 11 and end.tolist() == [255, 255, 255]
    assert not COLORMAPS["hot"].diverging and COLORMAPS["bwr"].diverging


def test_hot_matches_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    x = np.linspace(0.0, 1.0, 11)
    ours = get_colormap("hot")(x)
    theirs = np.asarray(matplotlib.colormaps["hot"](x))[:, :3]
    np.testing.assert_allclose(ours, theirs, atol=1 / 128)


def test_values_outside_unit_interval_are_clipped():
    np.testing.assert_array_equal(apply_colormap([-3.0, 7.0], "bwr"), [[0, 0, 255], [255, 0, 0]])


def test_custom_colour_map_is_accepted():
    green = ColorMap("green", (0.0, 1.0), ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0)), diverging=False)
    assert apply_colormap([1.0], green).tolist() == [[0, 255, 0]]


def test_other_names_fall_back_to_matplotlib():
    pytest.importorskip("matplotlib")
    assert apply_colormap(np.zeros((2, 2)), "viridis").shape == (2, 2, 3)


def test_unknown_colour_map_is_a_value_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match="bwr, seismic, coldnhot"):
        get_colormap("no-such-map")


def test_malformed_colour_map_is_rejected():
    with pytest.raises(ValueError):
        ColorMap("bad", (0.0, 0.5), ((0, 0, 0), (1, 1, 1)), diverging=False)
