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

import os
import sys
from collections.abc import Sequence

# ``name as name``: also importable from here, as from the one-module cli.py before the split.
from jaxlrp.cli.demo_figure import _cmd_demo
from jaxlrp.cli.errors import CLIError
from jaxlrp.cli.explain_images import _cmd_explain
from jaxlrp.cli.explain_text import LLM_MODULES as LLM_MODULES
from jaxlrp.cli.explain_text import _cmd_explain_text
from jaxlrp.cli.help import _plain as _plain
from jaxlrp.cli.images import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from jaxlrp.cli.list_composites import _cmd_composites
from jaxlrp.cli.outputs import PLACEHOLDERS as PLACEHOLDERS
from jaxlrp.cli.outputs import _output_paths as _output_paths
from jaxlrp.cli.parser import STYLES as STYLES
from jaxlrp.cli.parser import TEXT_COMPOSITES as TEXT_COMPOSITES
from jaxlrp.cli.parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]

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
