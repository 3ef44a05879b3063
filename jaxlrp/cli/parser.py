"""The argument parser of ``jaxlrp`` and of its sub-commands."""

from __future__ import annotations

import argparse
from typing import Any

from jaxlrp.cli.demo_figure import _cmd_demo
from jaxlrp.cli.explain_images import _cmd_explain
from jaxlrp.cli.explain_text import _cmd_explain_text
from jaxlrp.cli.help import _plain
from jaxlrp.cli.list_composites import _cmd_composites

STYLES = ("heatmap", "overlay", "panel")
TEXT_COMPOSITES = ("attnlrp", "cplrp")


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

    The descriptions in ``--help`` are the docstrings of :mod:`jaxlrp.cli` and of the
    ``_cmd_*`` functions, shown as plain text (see :func:`_plain`).
    """
    from jaxlrp import cli

    plain = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="jaxlrp", formatter_class=plain,
        description=_plain("Layer-wise Relevance Propagation for JAX: explain an image "
                           "classifier's decision as a heatmap of pixel relevance.\n\n"
                           + (cli.__doc__ or "\n").split("\n", 1)[1]),  # fmt: skip
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
