"""Compare LRP with the usual attribution baselines by region perturbation (Samek et al. 2017).

Two models, fully offline:

* a small Fashion-MNIST CNN (``fashion_mnist_model.py``; trained once, ~1 min, then cached) on the
  first ``--images`` test images, 4×4 regions, every region one by one (49 steps);
* EfficientNet-Lite0 (``jaxlrp.models.load("efficientnet_lite0", weights="pretrained")``) on the
  natural images shipped with scikit-image (astronaut, chelsea, coffee, rocket and their mirror
  images), 16×16 regions, 14 steps of 14 regions.

For every method it reports AOPC of the MoRF curve, AOPC of the LeRF curve and the area between
them (LeRF − MoRF; a random order scores ≈ 0), for each replacement of the removed regions, and
writes ``results.md`` and one PNG of mean curves per model and replacement to ``--out``.
The explained class is the model's prediction.

Run (about 10 minutes on two CPU cores)::

    python examples/evaluate_faithfulness.py --out out/faithfulness

References:
  Samek, Binder, Montavon, Lapuschkin, Müller, "Evaluating the visualization of what a deep
  neural network has learned", IEEE TNNLS 2017.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxlrp
from jaxlrp import attribution, composites, evaluate, rules

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fashion_mnist_model import (  # noqa: E402
    load_fashion_mnist,
    missing_files,
    missing_message,
    trained_model,
)


@dataclasses.dataclass
class Setting:
    """One model and how to evaluate it."""

    name: str
    apply: Callable[..., Any]
    variables: Any
    x: np.ndarray
    low: Any  # lowest / highest model input (ZBox bounds, noise range)
    high: Any
    patch: int
    steps: int
    batch: int
    perturbations: dict[str, Any]
    occlusion: dict[str, Any]
    smoothgrad_samples: int
    ig_steps: int
    chunk: int | None


def methods(s: Setting) -> dict[str, Callable[..., Any]]:
    """name -> attribution function ``(f, variables, x, target=..., key=...)``."""
    sigma = 0.1
    sg = {"noise_level": sigma, "samples": s.smoothgrad_samples, "chunk_size": s.chunk}
    lrp = attribution.lrp

    def without_key(fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        return lambda f, v, x, target, key: fn(f, v, x, target=target, **options)

    return {
        "Random": lambda f, v, x, target, key: attribution.random(f, v, x, key=key),
        "Gradient": without_key(attribution.gradient),
        "|Gradient| (saliency)": without_key(attribution.saliency),
        "Gradient × Input": without_key(attribution.gradient_x_input),
        "SmoothGrad": lambda f, v, x, target, key: attribution.smoothgrad(
            f, v, x, target=target, key=key, **sg),
        "SmoothGrad |·|": lambda f, v, x, target, key: attribution.smoothgrad(
            f, v, x, target=target, key=key, magnitude=True, **sg),
        "Integrated Gradients": without_key(attribution.integrated_gradients, baseline=0.0,
                                            steps=s.ig_steps, chunk_size=s.chunk),
        "Guided Backprop": without_key(attribution.guided_backprop),
        "Occlusion": without_key(attribution.occlusion, **s.occlusion),
        "LRP-ε (ε=0.1)": without_key(
            lrp, composite=composites.Composite(default=rules.Epsilon(0.1))),
        "EpsilonPlusFlat": without_key(lrp, composite=composites.EpsilonPlusFlat()),
        "EpsilonGammaBox": without_key(
            lrp, composite=composites.EpsilonGammaBox(low=s.low, high=s.high)),
        "EpsilonAlpha2Beta1": without_key(lrp, composite=composites.EpsilonAlpha2Beta1()),
    }  # fmt: skip


def run_setting(s: Setting, out_dir: pathlib.Path, key: jax.Array) -> list[str]:
    """Explain, perturb, summarise; returns Markdown table lines and writes the curve plots."""
    x_all = jnp.asarray(s.x)
    predict = jax.jit(s.apply)
    targets = jnp.concatenate([predict(s.variables, x_all[i:i + s.batch]).argmax(-1)
                               for i in range(0, len(x_all), s.batch)])  # fmt: skip
    curves_fns = {
        pname: jax.jit(lambda v, x, r, t, k, p=p: evaluate.region_perturbation(
            s.apply, v, x, relevance=r, target=t, key=k, patch=s.patch, steps=s.steps,
            perturbation=p, chunk_size=s.chunk))
        for pname, p in s.perturbations.items()
    }  # fmt: skip
    table = {p: {} for p in s.perturbations}
    curves = {p: {} for p in s.perturbations}
    all_methods = methods(s)
    n_batches = -(-len(x_all) // s.batch)
    bar = tqdm(total=len(all_methods) * n_batches, desc=s.name, unit="batch")
    for mname, method in all_methods.items():
        explain = jax.jit(lambda v, x, t, k, m=method: m(s.apply, v, x, target=t, key=k))
        start = time.perf_counter()
        results: dict[str, list] = {p: [] for p in s.perturbations}
        for b in range(n_batches):
            x = x_all[b * s.batch:(b + 1) * s.batch]
            t = targets[b * s.batch:(b + 1) * s.batch]
            k_explain, k_perturb = jax.random.split(jax.random.fold_in(key, b))
            r = explain(s.variables, x, t, k_explain)
            for pname, fn in curves_fns.items():
                results[pname].append(jax.device_get(fn(s.variables, x, r, t, k_perturb)))
            bar.update(1)
        for pname, parts in results.items():
            morf = np.concatenate([c.morf for c in parts])
            lerf = np.concatenate([c.lerf for c in parts])
            table[pname][mname] = (np.asarray(evaluate.aopc(morf)),
                                   np.asarray(evaluate.aopc(lerf)),
                                   np.asarray(evaluate.area_between(morf, lerf)))  # fmt: skip
            curves[pname][mname] = (morf, lerf)
        bar.set_postfix_str(f"{mname}: {time.perf_counter() - start:.0f} s")
    bar.close()

    lines = []
    for pname in s.perturbations:
        lines += [
            f"### {s.name} — replacement: {pname}",
            "",
            f"{len(x_all)} images, {s.patch}×{s.patch} regions, {s.steps} steps; "
            "mean ± standard error over images, in logits of the predicted class.",
            "",
            "| method | AOPC MoRF ↑ | AOPC LeRF ↓ | LeRF − MoRF area ↑ |",
            "|---|---:|---:|---:|",
        ]
        for mname, (am, al, area) in table[pname].items():
            sem = area.std(ddof=1) / np.sqrt(len(area)) if len(area) > 1 else float("nan")
            label = mname.replace("|", "\\|")  # Markdown: escape pipes in names
            lines.append(f"| {label} | {am.mean():.3f} | {al.mean():.3f} | "
                         f"{area.mean():.3f} ± {sem:.3f} |")  # fmt: skip
        lines.append("")
        plot(curves[pname], f"{s.name}, {pname}",
             out_dir / f"curves_{slug(s.name)}_{slug(pname)}.png")  # fmt: skip
    return lines


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    evaluate.plot_curves({m: c[0] for m, c in curves.items()}, ax=axes[0], title=f"MoRF — {title}")
    evaluate.plot_curves({m: c[1] for m, c in curves.items()}, ax=axes[1], title=f"LeRF — {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fashion_mnist_setting(args: argparse.Namespace) -> Setting | None:
    if missing_files():
        print(f"skipping the Fashion-MNIST CNN: {missing_message()}")
        return None
    module, variables = trained_model(args.cache_dir)
    _, (x_test, _) = load_fashion_mnist()
    return Setting(
        name="Fashion-MNIST CNN", apply=module.apply, variables=variables,
        x=x_test[: args.images], low=0.0, high=1.0, patch=4, steps=49, batch=250,
        perturbations={"uniform noise U[0,1]": evaluate.UniformNoise(0.0, 1.0),
                       "blur (σ=2 px)": evaluate.Blur(2.0)},
        occlusion={"patch": 4, "stride": 2, "baseline": 0.0},
        smoothgrad_samples=16, ig_steps=32, chunk=None,
    )  # fmt: skip


def efficientnet_setting(args: argparse.Namespace) -> Setting | None:
    try:
        from jaxlrp import models

        module, variables = models.load("efficientnet_lite0", weights="pretrained")
        info = models.info("efficientnet_lite0")
    except Exception as err:  # noqa: BLE001 - any failure means: skip this part, say why
        print(f"skipping EfficientNet-Lite0: could not load the pretrained model ({err!r})")
        return None
    import skimage.data

    names = ("astronaut", "chelsea", "coffee", "rocket")
    images = [np.asarray(info.preprocess(getattr(skimage.data, n)())) for n in names]
    images += [im[:, ::-1] for im in images]  # mirror images: 8 inputs
    low = float(np.min(info.low))
    high = float(np.max(info.high))
    return Setting(
        name="EfficientNet-Lite0", apply=module.apply, variables=variables,
        x=np.stack(images).astype(np.float32), low=low, high=high, patch=16, steps=14, batch=8,
        perturbations={f"uniform noise U[{low:.2f},{high:.2f}]": evaluate.UniformNoise(low, high)},
        occlusion={"patch": 32, "stride": 32, "baseline": 0.0},
        smoothgrad_samples=8, ig_steps=16, chunk=8,
    )  # fmt: skip


def main() -> None:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/faithfulness", help="output directory")
    parser.add_argument("--cache-dir", default="out/cache", help="model weights cache")
    parser.add_argument("--images", type=int, default=1000, help="Fashion-MNIST test images")
    parser.add_argument("--skip-efficientnet", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    start = time.perf_counter()
    lines = ["# Region perturbation: AOPC and LeRF − MoRF area", ""]
    settings = [fashion_mnist_setting(args)]
    if not args.skip_efficientnet:
        settings.append(efficientnet_setting(args))
    for s in settings:
        if s is not None:
            lines += run_setting(s, out_dir, key)
            (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    lines.append(f"Total run time: {time.perf_counter() - start:.0f} s "
                 f"({jax.device_count()} {jax.default_backend()} device(s)).")  # fmt: skip
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out_dir / 'results.md'}")


if __name__ == "__main__":
    main()
