"""``--help`` text: the reST docstrings of the commands as plain text."""

from __future__ import annotations

import inspect
import re
import shutil
import textwrap

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
