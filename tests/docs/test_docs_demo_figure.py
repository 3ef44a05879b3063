"""The README's demo figure (jaxlrp.demo.panel_figure) names the composite and has a colour bar."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from jaxlrp import demo, viz  # noqa: E402


def _result() -> demo.Explanation:
    rng = np.random.default_rng(0)
    return demo.Explanation(
        relevance=rng.normal(size=(2, 8, 8, 3)),
        target=np.array([1, 0]),
        top_indices=np.array([[1, 0], [0, 1]]),
        top_probabilities=np.array([[0.7, 0.3], [0.6, 0.4]]),
        class_names=("cat", "dog"),
    )


def test_panel_figure_names_model_and_composite_and_has_a_colour_bar(tmp_path):
    pixels = np.zeros((2, 8, 8, 3), np.uint8)
    path = tmp_path / "figure.png"
    figure = demo.panel_figure(pixels, _result(), ["a", "b"], path, composite="EpsilonGammaBox",
                               model="efficientnet_lite0")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.get_suptitle() == "efficientnet_lite0 · LRP composite EpsilonGammaBox"
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1
    bar = bars[0]
    assert bar.get_xlim() == (-1.0, 1.0)
    assert "relevance" in bar.get_xlabel()
    # The bar's colours are the heatmap's: -1 -> blue end, 0 -> white, +1 -> red end.
    cmap = bar._colorbar.cmap  # the Colorbar drawn in this axes
    expected = viz.apply_colormap(np.array([0.0, 0.5, 1.0]), demo.HEATMAP_STYLE["cmap"]) / 255.0
    np.testing.assert_allclose(cmap(np.array([0.0, 0.5, 1.0]))[:, :3], expected, atol=1 / 255)
    assert len(figure.axes) == 2 * 3 + 1  # image | heatmap | overlay per row, and the bar


def test_panel_figure_without_names_has_no_title_but_keeps_the_bar(tmp_path):
    figure = demo.panel_figure(np.zeros((2, 8, 8, 3), np.uint8), _result(), ["a", "b"],
                               tmp_path / "f.png")
    assert figure.get_suptitle() == ""
    assert any(ax.get_label() == "<colorbar>" for ax in figure.axes)
