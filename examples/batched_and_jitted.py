"""LRP under ``jax.jit`` and ``jax.vmap``: many images at once, and many target classes at once.

An explanation in jaxlrp is an ordinary JAX function, so the usual transformations apply:

1. **Many images.** ``jax.jit(jax.vmap(explain_one))`` explains a batch of photos with
   EfficientNet-Lite0 in one compiled call; the first call compiles, later calls only run.
2. **Many classes of one image.** ``jaxlrp.lrp`` returns the output and a relevance pull-back
   (like ``jax.vjp``); vmapping the pull-back over one-hot output relevances explains several
   classes while running the forward pass once: the top classes of the cat photo and of the
   coffee photo, each in one compiled call.

Everything is offline: the pretrained weights ship in the ``models`` extra and the photos in
scikit-image. Each figure is written as soon as it is computed.

Run::

    python examples/batched_and_jitted.py            # writes out/batched_images.png,
                                                     # out/batched_classes.png
    python examples/batched_and_jitted.py --top 3    # fewer classes per photo
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import composites, models, viz

STYLE = {"cmap": "bwr", "percentile": 99.5}
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def photos() -> list[np.ndarray]:
    """scikit-image photos and their mirror images: 8 pictures."""
    from skimage import data

    pictures = [getattr(data, name)() for name in PHOTOS]
    return pictures + [p[:, ::-1] for p in pictures]


def timed(fn, *args):  # noqa: ANN001, ANN201 - a tiny helper for the printout
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args))
    return result, time.perf_counter() - start


def many_images(out: pathlib.Path):  # noqa: ANN201 - returns what part 2 reuses
    """Part 1: a batch of photos through one ``jit(vmap(...))`` explanation."""
    module, variables = models.load("efficientnet_lite0", "pretrained")
    spec = models.info("efficientnet_lite0")
    names = spec.class_names()
    composite = composites.EpsilonGammaBox(low=jnp.asarray(spec.low), high=jnp.asarray(spec.high))

    def explain_one(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One image (224, 224, 3) -> (relevance of its top-1 class, that class)."""
        logits = module.apply(variables, x[None])[0]
        target = jnp.argmax(logits)
        relevance = jaxlrp.explain(module.apply, variables, x[None], target=target,
                                   composite=composite)  # fmt: skip
        return relevance[0], target

    explain_many = jax.jit(jax.vmap(explain_one))
    x = jnp.asarray(np.stack([spec.preprocess(p) for p in photos()]))  # (8, 224, 224, 3)
    (relevance, targets), first = timed(explain_many, x)
    (relevance, targets), second = timed(explain_many, x)
    print(f"jit(vmap(explain)) on {len(x)} images: first call {first:.1f} s (compiles), "
          f"second {second:.2f} s ({second / len(x) * 1000:.0f} ms per image)")  # fmt: skip

    pixels = np.clip(np.rint(np.asarray(x) * spec.std + np.asarray(spec.mean)), 0, 255)
    pixels = pixels.astype(np.uint8)
    heat = viz.heatmap(np.asarray(relevance), **STYLE)
    titles = [names[int(t)][:22] for t in targets] + ["LRP"] * len(x)
    path = out / "batched_images.png"
    viz.grid([*pixels, *heat], titles=titles, ncols=len(x), cell_size=2.2, path=path)
    print(f"wrote {path}")
    return module, variables, spec, composite, x, pixels


def top_classes_explainer(module, variables, composite, top: int):  # noqa: ANN001, ANN201
    """Part 2: a compiled function explaining the ``top`` most likely classes of one photo with
    one forward pass: the relevance pull-back of ``jaxlrp.lrp`` vmapped over one-hot targets."""

    @jax.jit
    def explain_top_classes(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        out, relevance_fn = jaxlrp.lrp(module.apply, composite)(variables, x[None])
        classes = jax.lax.top_k(out[0], top)[1]
        onehots = jax.nn.one_hot(classes, out.shape[-1])[:, None, :]  # (top, 1, classes)
        relevance = jax.vmap(lambda onehot: relevance_fn(out * onehot, cotangent=onehot))(onehots)
        return relevance[:, 0], classes

    return explain_top_classes


def many_classes(explain_top_classes, names, x, pixels):  # noqa: ANN001, ANN201
    """One photo's row of the figure: the photo, then one heatmap per explained class."""
    (relevance, classes), seconds = timed(explain_top_classes, x)
    print(f"top-{len(classes)} classes of one image in one call: {seconds:.1f} s")
    heat = viz.heatmap(np.asarray(relevance), **STYLE)
    return [pixels, *heat], ["input", *(f"{names[int(c)][:20]} ({int(c)})" for c in classes)]


def main() -> None:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output directory (default: out/)")
    parser.add_argument("--top", type=int, default=5, help="classes of each photo to explain")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    module, variables, spec, composite, x, pixels = many_images(out)
    explain_top_classes = top_classes_explainer(module, variables, composite, args.top)
    rows_cells: list = []
    rows_titles: list = []
    for index in (PHOTOS.index("chelsea"), PHOTOS.index("coffee")):  # the first call compiles
        cells, titles = many_classes(explain_top_classes, spec.class_names(), x[index],
                                     pixels[index])  # fmt: skip
        rows_cells += cells
        rows_titles += titles
    path = out / "batched_classes.png"
    viz.grid(rows_cells, titles=rows_titles, ncols=args.top + 1, cell_size=2.0, path=path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
