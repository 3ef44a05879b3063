"""Explaining photos with a pretrained zoo model: the pipeline behind ``jaxlrp explain`` and
``jaxlrp demo``.

:class:`ImageExplainer` loads a model from :mod:`jaxlrp.models`, builds a composite from
:data:`jaxlrp.composites.PRESETS` (bounded rules get the model's input range ``info().low`` /
``info().high``), and compiles *one* function that runs the forward pass, picks each image's
target class, and propagates relevance back to the pixels, for a whole batch at once::

    from jaxlrp.demo import ImageExplainer
    explainer = ImageExplainer("efficientnet_lite0", "epsilon-gamma-box")
    pixels, x = explainer.preprocess(["cat.jpg", "dog.png"])      # uint8 crops, model inputs
    result = explainer.explain(x, target="top1")
    result.relevance            # (2, 224, 224, 3)
    result.top(0)               # [(282, 'tiger cat', 0.61), ...]

:func:`run_demo` is the README's demo: scikit-image's ``chelsea``, ``coffee`` and ``astronaut``
explained with EfficientNet-Lite0 under EpsilonGammaBox, drawn as image | heatmap | overlay.

References:
  Montavon, Binder, Lapuschkin, Samek, Müller, "Layer-Wise Relevance Propagation: An Overview",
  in Explainable AI, LNCS 11700, Springer, 2019 (the EpsilonGammaBox recipe).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import composites, models, viz

__all__ = [
    "DEMO_IMAGES",
    "Explanation",
    "ImageExplainer",
    "make_composite",
    "parse_target",
    "render",
    "run_demo",
]

DEMO_IMAGES = ("chelsea", "coffee", "astronaut")
"""The scikit-image photos of the README demo (``skimage.data.<name>()``)."""

HEATMAP_STYLE = {"cmap": "bwr", "percentile": 99.5}
"""How heatmaps are drawn: red positive, blue negative, white zero, scaled to the 99.5th
percentile of ``|R|`` so that a few extreme pixels do not wash out the rest."""


def composite_names() -> tuple[str, ...]:
    """Names accepted by :func:`make_composite` (the keys of ``composites.PRESETS``)."""
    return tuple(composites.PRESETS)


def needs_bounds(name: str) -> bool:
    """Whether the preset ``name`` takes the input bounds ``low`` and ``high`` (z^B rule)."""
    factory = composites.PRESETS[name]
    return "low" in inspect.signature(factory).parameters


def make_composite(name: str, low: Any = None, high: Any = None) -> jaxlrp.Composite:
    """The preset composite ``name`` (e.g. ``"epsilon-gamma-box"``).

    Args:
      name: a key of ``composites.PRESETS``; ``_`` and upper case are accepted.
      low, high: input bounds for presets with a z^B first layer (``epsilon-gamma-box``,
        ``depth-recipe``), e.g. ``models.info(name).low`` / ``.high``.

    Raises:
      ValueError: for an unknown name (listing the valid ones) or missing bounds.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in composites.PRESETS:
        raise ValueError(
            f"unknown composite {name!r}; valid names: {', '.join(composites.PRESETS)}"
        )
    if needs_bounds(key):
        if low is None or high is None:
            raise ValueError(f"composite {key!r} needs the input bounds low and high")
        return composites.PRESETS[key](low=jnp.asarray(low), high=jnp.asarray(high))
    return composites.PRESETS[key]()


def parse_target(target: str | int) -> tuple[str, int]:
    """Parse a target: ``"top1"`` … ``"topK"`` (the K-th most likely class) or a class index.

    Returns:
      ``("rank", k - 1)`` or ``("index", i)``.

    Raises:
      ValueError: for anything else.
    """
    if isinstance(target, int | np.integer):
        return ("index", int(target))
    text = str(target).strip().lower()
    match = re.fullmatch(r"top(\d+)", text)
    if match and int(match.group(1)) >= 1:
        return ("rank", int(match.group(1)) - 1)
    if re.fullmatch(r"\d+", text):
        return ("index", int(text))
    raise ValueError(f"invalid target {target!r}: give top1, top2, ... or a class index")


@dataclasses.dataclass(frozen=True)
class Explanation:
    """The result of :meth:`ImageExplainer.explain` for a batch of N images.

    Attributes:
      relevance: ``(N, H, W, C)`` relevance of the model inputs.
      target: ``(N,)`` the explained class of each image.
      top_indices: ``(N, K)`` the K most likely classes, most likely first.
      top_probabilities: ``(N, K)`` their softmax probabilities.
      class_names: names of all classes (or their indices as strings).
    """

    relevance: np.ndarray
    target: np.ndarray
    top_indices: np.ndarray
    top_probabilities: np.ndarray
    class_names: tuple[str, ...]

    def top(self, n: int) -> list[tuple[int, str, float]]:
        """``[(index, name, probability), ...]`` of image ``n``, most likely first."""
        return [
            (int(k), self.class_names[int(k)], float(p))
            for k, p in zip(self.top_indices[n], self.top_probabilities[n], strict=True)
        ]

    def target_name(self, n: int) -> str:
        """The name of the class explained for image ``n``."""
        return self.class_names[int(self.target[n])]


class ImageExplainer:
    """A zoo model, a composite and one compiled ``pixels -> (top-k, relevance)`` function.

    Args:
      model: a name from :func:`jaxlrp.models.available_models` (``-`` works for ``_``).
      composite: a preset name (see :func:`make_composite`) or a :class:`jaxlrp.Composite`.
      weights: ``"pretrained"``, ``None`` (random weights) or a ``torch.save`` file.
      top: how many of the most likely classes to report.

    Raises:
      ValueError: unknown model or composite, or no pretrained weights for the model.
      ImportError: the package shipping the weights is not installed (says what to install).
    """

    def __init__(
        self,
        model: str = "efficientnet_lite0",
        composite: str | jaxlrp.Composite = "epsilon-gamma-box",
        weights: Any = "pretrained",
        top: int = 5,
    ) -> None:
        self.spec = models.info(model)
        if isinstance(composite, str):
            composite = make_composite(composite, self.spec.low, self.spec.high)
        self.composite = composite
        self.module, self.variables = models.load(self.spec.name, weights)
        names = self.spec.class_names()
        self.class_names = names or tuple(str(k) for k in range(self.spec.num_classes))
        self.top_k = max(1, min(top, len(self.class_names)))
        self._compiled = jax.jit(self._run)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _run(self, variables: Any, x: jax.Array, rank: jax.Array, index: jax.Array) -> tuple:
        """One pass: logits, targets (by rank or index), relevance of ``x`` and the top-k."""
        out, relevance_fn = jaxlrp.lrp(self.module.apply, self.composite)(variables, x)
        order = jnp.argsort(-out, axis=-1)
        by_rank = jnp.take_along_axis(order, rank[:, None], axis=-1)[:, 0]
        target = jnp.where(index >= 0, index, by_rank)
        r_out, cotangent = jaxlrp.output_relevance(out, target)
        relevance = relevance_fn(r_out, cotangent=cotangent)
        probabilities = jax.nn.softmax(out, axis=-1)
        top_p, top_i = jax.lax.top_k(probabilities, self.top_k)
        return relevance, target, top_i, top_p

    def preprocess(self, images: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Resize and crop images the model's standard way (ImageNet: shorter side 256, centre
        crop 224) and normalize them.

        Args:
          images: paths, PIL images or arrays (uint8, or float in [0, 1]).

        Returns:
          ``(pixels, inputs)``: the cropped pictures as uint8 ``(N, H, W, C)`` for display, and
          the float32 model inputs ``(N, H, W, C)``.
        """
        inputs = np.stack([self.spec.preprocess(image) for image in images])
        mean = np.asarray(self.spec.mean, np.float32)
        std = np.asarray(self.spec.std, np.float32)
        pixels = np.clip(np.rint(inputs * std + mean), 0, 255).astype(np.uint8)
        return pixels, inputs

    def explain(self, inputs: Any, target: str | int | Sequence[str | int] = "top1") -> Explanation:
        """Classify and explain a batch of preprocessed inputs in one compiled call.

        Args:
          inputs: ``(N, H, W, C)`` model inputs (from :meth:`preprocess`).
          target: ``"topK"`` (explain each image's K-th most likely class), a class index, or
            one of those per image.

        Raises:
          ValueError: for an invalid target or a class index out of range.
        """
        inputs = jnp.asarray(inputs, jnp.float32)
        n = inputs.shape[0]
        targets = [target] * n if isinstance(target, str | int) else list(target)
        if len(targets) != n:
            raise ValueError(f"got {len(targets)} targets for {n} images")
        rank = np.zeros(n, np.int32)
        index = np.full(n, -1, np.int32)
        for i, t in enumerate(targets):
            kind, value = parse_target(t)
            limit = self.num_classes
            if value >= limit:
                what = "rank" if kind == "rank" else "class index"
                raise ValueError(f"target {t!r}: {what} out of range for {limit} classes")
            (rank if kind == "rank" else index)[i] = value
        relevance, chosen, top_i, top_p = self._compiled(
            self.variables, inputs, jnp.asarray(rank), jnp.asarray(index)
        )
        return Explanation(
            relevance=np.asarray(relevance),
            target=np.asarray(chosen),
            top_indices=np.asarray(top_i),
            top_probabilities=np.asarray(top_p),
            class_names=self.class_names,
        )


def render(pixels: Any, relevance: Any, style: str = "heatmap") -> np.ndarray:
    """Draw one relevance map ``(H, W, C)`` as uint8 RGB ``(H, W, 3)``.

    ``"heatmap"``: the relevance alone (:data:`HEATMAP_STYLE`). ``"overlay"``: the heatmap's
    colour blended over a grey copy of ``pixels`` with per-pixel weight ``|R| / s`` (``s`` the
    heatmap's scale, weight at most 0.85), so the photo shows where relevance is near zero.
    """
    heat = viz.heatmap(relevance, **HEATMAP_STYLE)
    if style == "heatmap":
        return heat
    if style != "overlay":
        raise ValueError(f"unknown style {style!r}; valid styles: heatmap, overlay")
    magnitude = viz.normalize(viz.reduce_channels(relevance), symmetric=False,
                              percentile=HEATMAP_STYLE["percentile"])  # fmt: skip
    weight = 0.85 * magnitude[..., None]
    grey = viz.to_rgb_float(pixels).mean(axis=-1, keepdims=True)
    blended = (1.0 - weight) * (0.25 + 0.75 * grey) + weight * (heat / 255.0)
    return np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)


def short_name(name: str, width: int = 28) -> str:
    """A class name cut to ``width`` characters for figure titles."""
    return name if len(name) <= width else name[: width - 1] + "…"


def panel_figure(
    pixels: np.ndarray,
    result: Explanation,
    labels: Sequence[str],
    path: str | os.PathLike,
    composite: str | None = None,
    model: str | None = None,
) -> Any:
    """Rows of image | heatmap | overlay, titled with the explained class; written to ``path``.

    The figure's title names the ``model`` and the ``composite`` (when given), and a colour bar
    explains the heatmap's colours: relevance divided by its scale ``s`` (the 99.5th percentile
    of ``|R|`` per image, :data:`HEATMAP_STYLE`), red positive, blue negative, white zero.
    """
    cells, titles = [], []
    for n, label in enumerate(labels):
        k = int(result.target[n])
        prob = dict(zip(result.top_indices[n].tolist(), result.top_probabilities[n].tolist(),
                        strict=True)).get(k)  # fmt: skip
        share = f" ({100 * prob:.0f}%)" if prob is not None else ""
        cells += [pixels[n], render(pixels[n], result.relevance[n], "heatmap"),
                  render(pixels[n], result.relevance[n], "overlay")]  # fmt: skip
        titles += [label, f"LRP: {short_name(result.target_name(n))}{share}", "overlay"]
    figure = viz.grid(cells, titles=titles, ncols=3, cell_size=3.2)
    _add_legend(figure, composite, model)
    figure.savefig(os.fspath(path), dpi=100)
    return figure


def _add_legend(figure: Any, composite: str | None, model: str | None) -> None:
    """A title naming the model and composite, and a colour bar of :data:`HEATMAP_STYLE`."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    panels = list(figure.axes)
    width, height = figure.get_size_inches()
    figure.set_size_inches(width, height + 1.1)  # room for the title and the colour bar
    if composite or model:
        parts = [model, f"LRP composite {composite}" if composite else None]
        figure.suptitle(" · ".join(p for p in parts if p), fontsize=13)
    colours = viz.apply_colormap(np.linspace(0.0, 1.0, 256), HEATMAP_STYLE["cmap"]) / 255.0
    mappable = ScalarMappable(norm=Normalize(-1.0, 1.0), cmap=ListedColormap(colours))
    bar = figure.colorbar(mappable, ax=panels, location="bottom", shrink=0.5, aspect=40,
                          ticks=[-1, -0.5, 0, 0.5, 1])  # fmt: skip
    bar.set_label("relevance / s   (s: 99.5th percentile of |R| per image; red +, blue −)")


def format_top(result: Explanation, n: int) -> str:
    """The top-k classes of image ``n`` as indented lines ``rank. name (index) prob%``."""
    return "\n".join(
        f"  {rank}. {name} ({index}) {100 * prob:5.1f}%"
        for rank, (index, name, prob) in enumerate(result.top(n), start=1)
    )


def run_demo(
    out: str | os.PathLike = "heatmaps.png",
    model: str = "efficientnet_lite0",
    composite: str = "epsilon-gamma-box",
    images: Sequence[str] = DEMO_IMAGES,
    log: Callable[[str], Any] = print,
) -> Path:
    """The README demo: explain scikit-image photos and write image | heatmap | overlay rows.

    All images go through one compiled call (forward pass, top-1 class and LRP together).

    Args:
      out: the PNG to write.
      model, composite: as for :class:`ImageExplainer`.
      images: names of ``skimage.data`` images.
      log: where progress and the top-5 classes are printed.

    Returns:
      The path written.

    Raises:
      ImportError: if scikit-image (or another part of ``jaxlrp[demo]``) is missing.
    """
    start = time.perf_counter()
    try:
        from skimage import data
    except ImportError as err:
        raise ImportError('the demo needs scikit-image; run: pip install "jaxlrp[demo]"') from err
    unknown = [name for name in images if not callable(getattr(data, name, None))]
    if unknown:
        raise ValueError(f"unknown skimage.data image(s): {', '.join(unknown)}")
    explainer = ImageExplainer(model, composite)
    pixels, inputs = explainer.preprocess([getattr(data, name)() for name in images])
    log(f"loaded {explainer.spec.name} and {len(images)} images "
        f"({time.perf_counter() - start:.1f} s); compiling and explaining...")  # fmt: skip
    result = explainer.explain(inputs, "top1")
    log(f"explained with {explainer.composite.name} ({time.perf_counter() - start:.1f} s)")
    for n, name in enumerate(images):
        log(f"{name}: top-{explainer.top_k}\n{format_top(result, n)}")
    path = Path(out)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    panel_figure(pixels, result, list(images), path, composite=explainer.composite.name,
                 model=explainer.spec.name)
    log(f"wrote {path} ({time.perf_counter() - start:.1f} s in all)")
    return path
