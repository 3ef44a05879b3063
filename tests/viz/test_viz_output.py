"""Specification of PNG output: single images and titled grids."""

import numpy as np
import pytest

from jaxlrp.viz import grid, heatmap, save_png

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_save_png_writes_the_pixels_exactly(tmp_path):
    rgb = heatmap(np.random.default_rng(0).normal(size=(7, 9, 3)))
    path = save_png(rgb, tmp_path / "heatmap.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (9, 7) and png.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(png), rgb)


def test_grid_with_path_writes_a_png_of_the_figure_size(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((8, 8, 3))
    maps = heatmap(rng.normal(size=(3, 8, 8, 3)))
    path = tmp_path / "grid.png"
    fig = grid([image, *maps], titles=["input", "a", "b", "c"], ncols=2, path=path, dpi=50)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as png:
        width, height = png.size
    assert (width, height) == tuple(np.round(fig.get_size_inches() * 50).astype(int))
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["input", "a", "b", "c"]


def test_grid_accepts_a_batch_array_and_hides_empty_cells():
    fig = grid(heatmap(np.ones((3, 4, 4, 3))), ncols=2)
    assert len(fig.axes) == 4
    assert sum(bool(ax.images) for ax in fig.axes) == 3


def test_grid_rejects_wrong_number_of_titles():
    with pytest.raises(ValueError, match="titles"):
        grid([np.zeros((2, 2, 3))] * 2, titles=["only one"])
