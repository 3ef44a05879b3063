"""LRP under ``jax.jit`` and ``jax.vmap``: many images at once, and many target classes at once.

An explanation in jaxlrp is an ordinary JAX function, so the usual transformations apply:

1. **Many images.** ``jax.jit(jax.vmap(explain_one))`` explains a batch of photos with
   EfficientNet-Lite0 in one compiled call; the first call compiles, later calls only run.
2. **Many classes of one image.** ``jaxlrp.lrp`` returns the output and a relevance pull-back
   (like ``jax.vjp``); vmapping the pull-back over one-hot output relevances explains several
   classes while running the forward pass once: the top classes of the cat photo, and *every*
   class of a Fashion-MNIST image with the small CNN of ``fashion_mnist_model.py``.

Run (offline)::

    python examples/batched_and_jitted.py            # writes out/batched_images.png,
                                                     # out/batched_classes.png
    python examples/batched_and_jitted.py --fashion-steps 300   # quick CNN instead of 3 epochs

The Fashion-MNIST CNN is trained once (about a minute) and cached in ``OUT/cache/``, shared with
``fashion_mnist.py`` when both write to the same ``--out``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jaxlrp  # noqa: E402
from jaxlrp import composites, models, viz  # noqa: E402

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


def many_images(out: pathlib.Path) -> None:
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
    return module, variables, spec, composite, x[0], pixels[0]


def many_classes(module, variables, spec, composite, x, pixels, top: int):  # noqa: ANN001, ANN201
    """Part 2a: the ``top`` most likely classes of one photo, one forward pass, one call."""

    @jax.jit
    def explain_top_classes(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        out, relevance_fn = jaxlrp.lrp(module.apply, composite)(variables, x[None])
        classes = jax.lax.top_k(out[0], top)[1]
        onehots = jax.nn.one_hot(classes, out.shape[-1])[:, None, :]  # (top, 1, classes)
        relevance = jax.vmap(lambda onehot: relevance_fn(out * onehot, cotangent=onehot))(onehots)
        return relevance[:, 0], classes

    (relevance, classes), seconds = timed(explain_top_classes, x)
    print(f"top-{top} classes of one image in one call: {seconds:.1f} s (with compilation)")
    names = spec.class_names()
    heat = viz.heatmap(np.asarray(relevance), **STYLE)
    return [pixels, *heat], ["input", *(f"{names[int(c)][:20]} ({int(c)})" for c in classes)]


def every_fashion_class(out: pathlib.Path, steps: int | None):  # noqa: ANN201
    """Part 2b: all ten classes of one Fashion-MNIST test image, one call."""
    from fashion_mnist import train_steps
    from fashion_mnist_model import CLASS_NAMES, load_fashion_mnist, trained_model

    if steps is None:
        module, variables = trained_model(cache_dir=out / "cache")
    else:
        module, variables = train_steps(steps)
    _, (x_test, y_test) = load_fashion_mnist()
    x = jnp.asarray(x_test[:1])  # an ankle boot
    composite = composites.EpsilonGammaBox(low=0.0, high=1.0)

    @jax.jit
    def explain_every_class(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        out, relevance_fn = jaxlrp.lrp(module.apply, composite)(variables, x)
        onehots = jnp.eye(out.shape[-1])[:, None, :]  # (10, 1, 10): one per class
        relevance = jax.vmap(lambda onehot: relevance_fn(out * onehot, cotangent=onehot))(onehots)
        return relevance[:, 0], out[0]

    (relevance, logits), seconds = timed(explain_every_class, x)
    print(f"all {len(CLASS_NAMES)} classes of a Fashion-MNIST image ({CLASS_NAMES[int(y_test[0])]}"
          f") in one call: {seconds:.2f} s (with compilation)")  # fmt: skip
    heat = viz.heatmap(np.asarray(relevance), cmap="bwr")
    titles = [f"{name[:11]} {float(z):+.1f}" for name, z in zip(CLASS_NAMES, logits, strict=True)]
    return [np.asarray(x[0]), *heat], ["input", *titles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output directory (default: out/)")
    parser.add_argument("--top", type=int, default=5, help="classes of the photo to explain")
    parser.add_argument("--fashion-steps", type=int, default=None,
                        help="train the Fashion-MNIST CNN only this many steps (no cache)")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    module, variables, spec, composite, x, pixels = many_images(out)
    cells, titles = many_classes(module, variables, spec, composite, x, pixels, args.top)
    fashion_cells, fashion_titles = every_fashion_class(out, args.fashion_steps)
    ncols = max(len(cells), len(fashion_cells))
    pad = ncols - len(cells)
    blank = np.full((8, 8, 3), 255, np.uint8)
    cells += [blank] * pad
    titles += [""] * pad
    fashion_pad = ncols - len(fashion_cells)
    path = out / "batched_classes.png"
    viz.grid([*cells, *fashion_cells, *[blank] * fashion_pad],
             titles=[*titles, *fashion_titles, *[""] * fashion_pad],
             ncols=ncols, cell_size=2.0, path=path)  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
