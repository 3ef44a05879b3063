"""One photo, several LRP composites and two gradient baselines, side by side.

The figure of the LRP overview chapter (Montavon et al. 2019, Fig. 10.2), on a real pretrained
ImageNet model: EfficientNet-Lite0 explaining its top-1 class for scikit-image's ``chelsea``
(or any image you give) under

* EpsilonGammaBox: z^B on the pixels, LRP-γ on convolutions, LRP-ε on the classifier;
* EpsilonPlusFlat and EpsilonAlpha2Beta1Flat: flat first layer, LRP-z⁺ / LRP-α2β1 on convolutions;
* the overview's recipe by depth, ``composites.DepthRecipe(low, high)``;
* the plain gradient and gradient × input, whose noise the LRP rules are designed to remove.

Run (offline)::

    python examples/imagenet_heatmaps.py                     # writes out/imagenet_heatmaps.png
    python examples/imagenet_heatmaps.py --image cat.jpg --out figures/

References:
  Montavon, Binder, Lapuschkin, Samek, Müller, "Layer-Wise Relevance Propagation: An Overview",
  in Explainable AI, LNCS 11700, Springer, 2019.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import attribution, composites, models, viz

STYLE = {"cmap": "bwr", "percentile": 99.5}


def load_image(image: str | None) -> np.ndarray:
    """A file path, or scikit-image's ``chelsea`` when None."""
    if image is not None:
        return image
    from skimage import data

    return data.chelsea()


def main() -> None:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=None, help="image file (default: skimage's chelsea)")
    parser.add_argument("--out", default="out", help="output directory (default: out/)")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    module, variables = models.load("efficientnet_lite0", "pretrained")
    spec = models.info("efficientnet_lite0")
    x = jnp.asarray(spec.preprocess(load_image(args.image)))[None]  # (1, 224, 224, 3)
    logits = module.apply(variables, x)
    target = int(logits[0].argmax())
    name = spec.class_names()[target]
    print(f"top-1: {name} ({target})")

    # z^B needs the range of the model's inputs: pixel 0 and 255 after (x - 127) / 128.
    low, high = jnp.asarray(spec.low), jnp.asarray(spec.high)
    methods = {
        "EpsilonGammaBox": composites.EpsilonGammaBox(low=low, high=high),
        "EpsilonPlusFlat": composites.EpsilonPlusFlat(),
        "EpsilonAlpha2Beta1Flat": composites.EpsilonAlpha2Beta1Flat(),
        "DepthRecipe": composites.DepthRecipe(low=low, high=high),
    }
    pixels = np.clip(np.rint(np.asarray(x[0]) * spec.std + np.asarray(spec.mean)), 0, 255)
    pixels = pixels.astype(np.uint8)
    cells, titles = [pixels], [f"{name} ({target})"]
    for title, composite in methods.items():
        start = time.perf_counter()
        relevance = jaxlrp.explain(module.apply, variables, x, target=target, composite=composite)
        relevance = np.asarray(relevance[0])
        print(f"{title:<24} sum R = {relevance.sum():+.3f} (logit {float(logits[0, target]):.3f})"
              f", {time.perf_counter() - start:.1f} s")  # fmt: skip
        cells.append(viz.heatmap(relevance, **STYLE))
        titles.append(title)
    gradient = attribution.gradient(module.apply, variables, x, target=target)
    cells.append(viz.heatmap(np.asarray(gradient[0]), **STYLE))
    titles.append("gradient")
    grad_x_input = attribution.gradient_x_input(module.apply, variables, x, target=target)
    cells.append(viz.heatmap(np.asarray(grad_x_input[0]), **STYLE))
    titles.append("gradient × input")

    path = out / "imagenet_heatmaps.png"
    viz.grid(cells, titles=titles, ncols=4, path=path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
