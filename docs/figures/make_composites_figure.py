"""Draw docs/figures/composites.png: one photo explained under every image preset.

The pretrained EfficientNet-Lite0 of the model zoo, scikit-image's ``chelsea``, the predicted
class, one compiled call per composite. Needs the ``demo`` extra; offline.

Run from the repository root:  python docs/figures/make_composites_figure.py
"""

from __future__ import annotations

from pathlib import Path

import jax
import skimage.data

import jaxlrp
from jaxlrp import composites, demo, models, viz

OUT = Path(__file__).with_name("composites.png")


def presets(low, high) -> dict[str, jaxlrp.Composite]:
    """The image presets, each with the zoo model's input bounds where it needs them."""
    return {
        "EpsilonGammaBox": composites.EpsilonGammaBox(low=low, high=high),
        "EpsilonPlusFlat": composites.EpsilonPlusFlat(),
        "EpsilonPlus": composites.EpsilonPlus(),
        "EpsilonAlpha2Beta1Flat": composites.EpsilonAlpha2Beta1Flat(),
        "EpsilonAlpha2Beta1": composites.EpsilonAlpha2Beta1(),
        "LRP-ε everywhere (ε=0.1)": jaxlrp.Composite(default=jaxlrp.rules.Epsilon(0.1)),
        "Gradient × input": composites.Gradient(),
    }


def main() -> None:
    jaxlrp.enable_compilation_cache()
    module, variables = models.load("efficientnet_lite0", weights="pretrained")
    info = models.info("efficientnet_lite0")
    cropped, inputs = demo.ImageExplainer("efficientnet_lite0").preprocess(
        [skimage.data.chelsea()])  # the photo as the model sees it (resized, cropped)
    pixels, x = cropped[0], inputs
    target = int(module.apply(variables, x).argmax(-1)[0])
    cells = [pixels]
    titles = ["input: " + demo.short_name(info.class_names()[target], 22)]
    for name, composite in presets(info.low, info.high).items():
        explain = jax.jit(lambda v, x, c=composite: jaxlrp.explain(
            module.apply, v, x, target=target, composite=c))
        relevance = explain(variables, x)[0]
        cells.append(viz.heatmap(relevance, **demo.HEATMAP_STYLE))
        titles.append(name)
        print(f"{name}: done")
    viz.grid(cells, titles=titles, ncols=4, cell_size=3.0, path=OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
