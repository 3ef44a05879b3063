"""The pieces behind ``jaxlrp explain`` / ``jaxlrp demo`` (``jaxlrp.demo``), and the demo's
heatmap itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxlrp import composites, demo, rules
from jaxlrp.cli import CLIError, _output_paths


@pytest.mark.parametrize(("text", "parsed"), [("top1", ("rank", 0)), ("TOP3", ("rank", 2)),
                                              ("281", ("index", 281)), (7, ("index", 7))])
def test_parse_target(text: str | int, parsed: tuple[str, int]) -> None:
    assert demo.parse_target(text) == parsed


@pytest.mark.parametrize("text", ["top0", "cat", "-3", "1.5"])
def test_parse_target_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError, match="invalid target"):
        demo.parse_target(text)


def test_make_composite_passes_bounds_to_zbox() -> None:
    composite = demo.make_composite("Epsilon_Gamma_Box", low=-1.0, high=1.0)
    assert isinstance(composite.first, rules.ZBox)
    assert float(composite.first.low) == -1.0 and float(composite.first.high) == 1.0
    assert demo.make_composite("epsilon-plus-flat").name == "EpsilonPlusFlat"


def test_make_composite_errors() -> None:
    with pytest.raises(ValueError, match="valid names"):
        demo.make_composite("nope")
    with pytest.raises(ValueError, match="low and high"):
        demo.make_composite("depth-recipe")


def test_every_preset_builds() -> None:
    for name in composites.PRESETS:
        assert demo.make_composite(name, 0.0, 1.0) is not None


def test_output_paths() -> None:
    images = [Path("a/cat.png"), Path("b/dog.jpg")]
    assert _output_paths(images[:1], None, "heatmap") == [Path("cat_heatmap.png")]
    assert _output_paths(images[:1], "x.png", "heatmap") == [Path("x.png")]
    assert _output_paths(images, "out/{stem}.png", "heatmap") == [Path("out/cat.png"),
                                                                   Path("out/dog.png")]
    assert _output_paths(images, "out/", "overlay") == [Path("out/cat_overlay.png"),
                                                        Path("out/dog_overlay.png")]
    with pytest.raises(CLIError):
        _output_paths(images, "one.png", "heatmap")


@pytest.mark.slow
def test_demo_heatmap_puts_positive_relevance_on_the_cats_eyes_and_nose() -> None:
    """The README figure's cat: a cat class on top and positive relevance on eyes and nose.

    chelsea's 224x224 crop is all face; the eyes and the nose (three 56x56 boxes, 19% of the
    pixels) must hold well over their share of the positive relevance.
    """
    data = pytest.importorskip("skimage.data")
    explainer = demo.ImageExplainer("efficientnet_lite0", "epsilon-gamma-box")
    pixels, x = explainer.preprocess([data.chelsea()])
    assert pixels.shape == (1, 224, 224, 3) and pixels.dtype == np.uint8
    result = explainer.explain(x, "top1")
    assert 281 <= int(result.target[0]) <= 285
    relevance = result.relevance[0].sum(-1)
    positive = np.maximum(relevance, 0.0)
    assert positive.sum() > 3 * np.maximum(-relevance, 0.0).sum()
    boxes = np.zeros_like(positive, dtype=bool)
    for row, col in [(EYE_ROW, LEFT_EYE_COL), (EYE_ROW, RIGHT_EYE_COL), (NOSE_ROW, NOSE_COL)]:
        boxes[row - 28:row + 28, col - 28:col + 28] = True
    share = positive[boxes].sum() / positive.sum()
    assert share > 2 * boxes.mean(), share


# centres of the eyes and the nose in chelsea's 224x224 centre crop (row, column)
EYE_ROW, LEFT_EYE_COL, RIGHT_EYE_COL, NOSE_ROW, NOSE_COL = 95, 70, 185, 195, 135
