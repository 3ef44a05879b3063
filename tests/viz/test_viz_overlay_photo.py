"""Overlaying relevance of a model input on the original, uncropped photo: ``overlay``'s
``resize`` and ``region``, and ``crop_region`` for ImageNet's resize-and-centre-crop."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlrp.viz import heatmap, overlay
from jaxlrp.viz.heatmap import crop_region

RED, BLUE = [255, 0, 0], [0, 0, 255]


def test_overlay_of_another_size_says_how_to_resize() -> None:
    with pytest.raises(ValueError, match="differ") as info:
        overlay(np.zeros((300, 451, 3), np.uint8), np.ones((224, 224, 3)))
    message = str(info.value)
    assert "resize=True" in message and "region=crop_region(" in message


def test_resize_stretches_the_heatmap_over_the_whole_image() -> None:
    """Left half of a 4x4 map for, right half against, drawn on an 8x12 image."""
    r = np.ones((4, 4))
    r[:, 2:] = -1.0
    image = np.full((8, 12, 3), 90, np.uint8)
    out = overlay(image, r, alpha=1.0, reduce=None, resize=True)
    assert out.shape == (8, 12, 3)
    # bilinear with pixel centres at (j + 0.5) * 4/12 - 0.5: columns 0-3 and 8-11 see only
    # their own half of the map, the four columns between are interpolated
    np.testing.assert_array_equal(out[:, :4], np.broadcast_to(RED, (8, 4, 3)))
    np.testing.assert_array_equal(out[:, 8:], np.broadcast_to(BLUE, (8, 4, 3)))
    middle = out[0, 4:8].astype(int)
    assert (np.diff(middle[:, 0]) <= 0).all() and (np.diff(middle[:, 2]) >= 0).all()


def test_resize_shrinks_a_larger_map_too() -> None:
    r = np.zeros((64, 64))
    r[:32] = 1.0
    r[32:] = -1.0
    out = overlay(np.zeros((8, 8)), r, alpha=1.0, reduce=None, resize=True)
    np.testing.assert_array_equal(out[:3], np.broadcast_to(RED, (3, 8, 3)))
    np.testing.assert_array_equal(out[5:], np.broadcast_to(BLUE, (3, 8, 3)))


def test_region_draws_the_heatmap_there_and_leaves_the_rest_of_the_photo() -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    r = np.ones((4, 5, 3))  # all positive: pure red
    out = overlay(photo, r, alpha=0.5, region=(3, 6, 4, 5))
    inside = np.zeros((10, 12), bool)
    inside[3:7, 6:11] = True
    np.testing.assert_array_equal(out[~inside], photo[~inside])
    expected = np.round(255 * (0.5 * photo[inside] / 255.0 + 0.5 * np.array([1.0, 0.0, 0.0])))
    np.testing.assert_array_equal(out[inside], expected)


def test_resize_into_a_region_for_a_batch() -> None:
    photos = np.zeros((2, 20, 30), np.uint8)
    r = np.stack([np.ones((7, 7, 3)), -np.ones((7, 7, 3))])
    out = overlay(photos, r, alpha=1.0, resize=True, region=(2, 5, 14, 14))
    assert out.shape == (2, 20, 30, 3)
    np.testing.assert_array_equal(out[0, 2:16, 5:19], np.broadcast_to(RED, (14, 14, 3)))
    np.testing.assert_array_equal(out[1, 2:16, 5:19], np.broadcast_to(BLUE, (14, 14, 3)))
    assert not out[:, :2].any() and not out[:, :, 19:].any()


def test_resize_to_the_same_size_changes_nothing() -> None:
    r = np.random.default_rng(1).normal(size=(6, 5, 3))
    image = np.full((6, 5, 3), 0.3)
    np.testing.assert_array_equal(overlay(image, r, resize=True), overlay(image, r))
    np.testing.assert_array_equal(overlay(image, r, alpha=1.0, resize=True), heatmap(r))


@pytest.mark.parametrize("region", [(0, 0, 11, 12), (-1, 0, 4, 4), (0, 10, 4, 4), (0, 0, 0, 3)])
def test_a_region_outside_the_image_is_refused(region: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="does not lie inside the image of size"):
        overlay(np.zeros((10, 12)), np.ones((4, 4, 3)), resize=True, region=region)


@pytest.mark.parametrize("shape", [(300, 451), (512, 384), (256, 256)])
def test_crop_region_is_where_imagenet_preprocessing_crops(shape: tuple[int, int]) -> None:
    """Checked against the preprocessing itself: a photo whose pixels hold their own row and
    column, resized and centre-cropped with PIL, tells which rows and columns the crop shows."""
    pil = pytest.importorskip("PIL.Image")
    from jaxlrp.models import preprocessing

    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    seen = []
    for coordinate in (rows, cols):
        picture = pil.fromarray(coordinate.astype(np.float32), mode="F")
        picture = preprocessing.center_crop(preprocessing.resize_shorter_side(picture, 256),
                                            224, 224)  # fmt: skip
        seen.append(np.asarray(picture))
    top, left, height, width = crop_region((*shape, 3), (224, 224), shorter_side=256)
    # the crop's pixel centres k = 0.5, 1.5, ... 223.5 lie at top + k * height / 224 (minus the
    # half pixel of the photo's own centres); away from the borders PIL keeps a ramp a ramp
    k = np.arange(20, 204) + 0.5
    np.testing.assert_allclose(seen[0][20:204, 112], top + k * height / 224 - 0.5, atol=0.75)
    np.testing.assert_allclose(seen[1][112, 20:204], left + k * width / 224 - 0.5, atol=0.75)


def test_crop_region_without_a_crop_is_the_whole_image() -> None:
    assert crop_region((28, 40), (28, 28)) == (0, 0, 28, 40)


def test_crop_region_refuses_a_crop_larger_than_the_resized_image() -> None:
    with pytest.raises(ValueError, match="larger than the resized image"):
        crop_region((100, 100), (300, 300), shorter_side=256)


def test_overlay_on_the_uncropped_photo() -> None:
    """The relevance of EfficientNet's 224x224 input drawn on chelsea's 300x451 photo."""
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 256, size=(300, 451, 3), dtype=np.uint8)
    relevance = rng.normal(size=(224, 224, 3))
    top, left, height, width = crop_region(photo.shape, (224, 224), 256)
    out = overlay(photo, relevance, resize=True, region=(top, left, height, width))
    assert out.shape == photo.shape
    outside = np.ones(photo.shape[:2], bool)
    outside[top : top + height, left : left + width] = False
    np.testing.assert_array_equal(out[outside], photo[outside])
    assert (out[~outside] != photo[~outside]).any()
