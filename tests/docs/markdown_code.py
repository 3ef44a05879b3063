"""Run the Python code of a Markdown page, the way the docs tests do.

The contract (``CONTRIBUTING.md``): every fenced block opened by a line that is exactly
```` ```python ```` (indentation allowed, e.g. inside a list) is executed, in the order of the
page, in one namespace per page. Blocks fenced ```` ```py ````, ```` ```bash ```` or anything
else are display-only.

Usage: ``python tests/docs/markdown_code.py docs/guides/quickstart.md`` runs one page in the
current directory and, if a block fails, prints its traceback with the page's own line numbers
and exits with status 1. ``JAXLRP_DOCS_TIMINGS=1`` prints the time each block took.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Block:
    """One executed block: its code and the line of the page its first code line is on."""

    path: str
    line: int
    code: str


def python_blocks(path: Path | str) -> list[Block]:
    """The ```` ```python ```` blocks of a Markdown file, in order.

    Raises:
      ValueError: if a ```` ```python ```` block is never closed.
    """
    lines = Path(path).read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if not stripped.startswith("```"):
            i += 1
            continue
        indent = len(lines[i]) - len(stripped)
        fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
        start = i + 1
        j = start
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        if stripped == "```python":
            if j == len(lines):
                raise ValueError(f"{path}:{i + 1}: the ```python block is never closed")
            body = [line[indent:] if line[:indent].strip() == "" else line
                    for line in lines[start:j]]
            blocks.append(Block(str(path), start + 1, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def run(path: Path | str) -> int:
    """Execute the page's blocks in one namespace; 0 if all ran, 1 (and a report) otherwise."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    timings = os.environ.get("JAXLRP_DOCS_TIMINGS") == "1"
    for block in python_blocks(path):
        start = time.perf_counter()
        # Pad with blank lines so that tracebacks show the page's line numbers.
        code = compile("\n" * (block.line - 1) + block.code, block.path, "exec")
        try:
            exec(code, namespace)  # noqa: S102 - running the documentation is the point
        except BaseException:  # noqa: BLE001 - report every failure with its place
            traceback.print_exc()
            print(f"\nDOCS BLOCK FAILED: {block.path}:{block.line}", file=sys.stderr)
            return 1
        if timings:
            seconds = time.perf_counter() - start
            print(f"{block.path}:{block.line}: {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/docs/markdown_code.py PAGE.md")
    sys.exit(run(sys.argv[1]))
