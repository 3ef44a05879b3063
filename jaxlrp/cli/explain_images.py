"""``jaxlrp explain``: classify images and write their heatmaps, one at a time or in
batches with a progress bar."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxlrp.cli.errors import CLIError
from jaxlrp.cli.images import _collect_images, _ImageError, _read_image, _unreadable
from jaxlrp.cli.names import _check_names
from jaxlrp.cli.outputs import _check_outputs, _output_paths


class _Progress:
    """A tqdm progress bar of images on stderr when tqdm is installed; silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="image", file=sys.stderr, dynamic_ncols=True)

    def write(self, text: str, file: Any = None) -> None:
        """Print ``text`` (to stdout unless ``file``) above the bar."""
        file = sys.stdout if file is None else file
        if self.bar is not None:
            self.bar.write(text, file=file)
        else:
            print(text, file=file)

    def advance(self, path: Path, skipped: int) -> None:
        """One more image done (explained and written, or skipped)."""
        if self.bar is not None:
            self.bar.set_postfix_str(path.name + (f", {skipped} skipped" if skipped else ""),
                                     refresh=False)  # fmt: skip
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


def _cmd_explain(args: argparse.Namespace) -> int:
    """Classify images, print the top classes and write a heatmap of the relevance of each
    pixel for the target class (red: for, blue: against).

    ImageNet models see each image resized to 256 on the shorter side and centre-cropped to
    224x224; the heatmap is of that crop.

    Output names: -o is one PNG file (one image), a directory (IMAGE_STEM_STYLE.png in it), or
    a pattern with the placeholders {stem} (the file name without its extension), {name} (the
    whole file name), {ext} (the extension without the dot) and {parent} (the name of the
    image's directory)::

        jaxlrp explain photos/ --batch -o 'out/{stem}_{ext}.png'

    Nothing is overwritten. If two images would get the same output (astronaut.jpg and
    astronaut.png with -o 'out/{stem}.png'), the run stops before any work and names them;
    {name} or {stem}_{ext} in the pattern tells them apart. An output file that exists
    already stops the run too, before any work, unless --overwrite is given; an input image
    is never written over.

    Unreadable images (not an image, truncated or corrupt data): the first one stops the run
    with its name and the reason. With --skip-errors it is skipped instead, the other images
    are explained, and a summary at the end lists every skipped file with its reason; the
    exit status is then 1.

    With --batch, :func:`jaxlrp.explain_dataset` explains the images SIZE at a time and a
    progress bar on stderr counts images as their pictures are written.
    """
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
    skipped: list[tuple[Path, str]] | None = [] if args.skip_errors else None
    images = _collect_images(args.images, allow_dirs=args.batch is not None, skipped=skipped)
    suffix = "panel" if args.style == "panel" else args.style
    outputs = _output_paths(images, args.output, suffix)
    _check_outputs(images, outputs, args.output, suffix, args.overwrite)
    for path, reason in skipped or ():
        print(f"jaxlrp: skipping {path}: {reason}", file=sys.stderr)
    given = len(images) + len(skipped or ())
    start = time.perf_counter()
    explained = 0
    if images:
        explainer = _make_explainer(args)
        progress = _Progress(len(images), enabled=args.batch is not None and not args.quiet)
        try:
            if args.batch is not None:
                explained = _explain_batches(args, explainer, images, outputs, progress, skipped)
            else:
                explained = _explain_each(args, explainer, images, outputs, progress, skipped)
        finally:
            progress.close()
    if not args.quiet and given > 1:
        print(f"{explained} of {given} images explained in {time.perf_counter() - start:.1f} s")
    if skipped:
        lines = "".join(f"\n  {path}: {reason}" for path, reason in skipped)
        print(f"jaxlrp: skipped {len(skipped)} of {given} images:{lines}", file=sys.stderr)
        return 1
    return 0


def _explain_each(args: argparse.Namespace, explainer: Any, images: Sequence[Path],
                  outputs: Sequence[Path], progress: _Progress,
                  skipped: list[tuple[Path, str]] | None) -> int:  # fmt: skip
    """Explain the images one at a time; returns how many were explained."""
    explained = 0
    for path, out, pixels, inputs in _decoded(explainer, images, outputs, progress, skipped):
        try:
            result = explainer.explain(inputs, args.target)
        except ValueError as err:
            raise CLIError(str(err)) from None
        _write_picture(args, path, out, pixels, result, 0, progress)
        explained += 1
    return explained


def _decoded(explainer: Any, images: Sequence[Path], outputs: Sequence[Path],
             progress: _Progress, skipped: list[tuple[Path, str]] | None,
             ) -> Iterator[tuple[Path, Path, np.ndarray, np.ndarray]]:  # fmt: skip
    """``(image, output, pixels, model input)`` of each image that decodes; the others are
    skipped (:func:`_skip`)."""
    for path, out in zip(images, outputs, strict=True):
        try:
            pixels, inputs = _read_image(explainer, path)
        except _ImageError as err:
            _skip(path, str(err), skipped, progress)
            continue
        yield path, out, pixels, inputs


def _skip(path: Path, reason: str, skipped: list[tuple[Path, str]] | None,
          progress: _Progress) -> None:  # fmt: skip
    """An image that does not decode: stop the run, or note it and go on (``--skip-errors``)."""
    _unreadable(path, reason, skipped)
    progress.write(f"jaxlrp: skipping {path}: {reason}", file=sys.stderr)
    progress.advance(path, len(skipped or ()))


def _explain_batches(args: argparse.Namespace, explainer: Any, images: Sequence[Path],
                     outputs: Sequence[Path], progress: _Progress,
                     skipped: list[tuple[Path, str]] | None) -> int:  # fmt: skip
    """``--batch``: :func:`jaxlrp.explain_dataset` streams the images SIZE at a time (the last
    batch padded, each batch split over this machine's devices) and every explained batch is
    drawn as it arrives, the progress bar moving one image at a time. Images that do not
    decode are left out of the batches under ``--skip-errors``. Returns how many images were
    explained."""
    import functools
    import tempfile

    import jaxlrp
    from jaxlrp import demo

    done: list[tuple[Path, Path]] = []  # (image, output) of each example, in data-set order
    pixels_of: dict[int, np.ndarray] = {}

    def batches() -> Iterator[np.ndarray]:
        pending: list[tuple[Path, Path, np.ndarray, np.ndarray]] = []
        for decoded in _decoded(explainer, images, outputs, progress, skipped):
            pending.append(decoded)
            if len(pending) == args.batch:
                yield flush(pending)
                pending = []
        if pending:
            yield flush(pending)

    def flush(pending: list[tuple[Path, Path, np.ndarray, np.ndarray]]) -> np.ndarray:
        pixels_of[len(done)] = np.concatenate([item[2] for item in pending])
        done.extend((item[0], item[1]) for item in pending)
        return np.concatenate([item[3] for item in pending])

    def draw(batch: Any) -> None:
        result = _explanation(batch, explainer)
        pixels = pixels_of.pop(batch.start)
        for n in range(len(batch.relevance)):
            path, out = done[batch.start + n]
            _write_picture(args, path, out, pixels, result, n, progress)
            progress.advance(path, len(skipped or ()))

    stream = batches()
    first = next(stream, None)
    if first is None:  # every image was skipped
        return 0
    kind, value = demo.parse_target(args.target)
    target = value if kind == "index" else functools.partial(_ranked_class, rank=value)
    with tempfile.TemporaryDirectory(prefix="jaxlrp-batch-") as scratch:
        jaxlrp.explain_dataset(explainer.module.apply, explainer.variables,
                               batches=itertools.chain([first], stream), out_dir=scratch,
                               target=target, composite=explainer.composite,
                               batches_per_chunk=1, progress=False, on_batch=draw)  # fmt: skip
    return len(done)


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
