"""Griffe extension: render the reST markup of jaxlrp's docstrings as Markdown.

jaxlrp's docstrings are Google style ("Args:", "Returns:") with a little reST inside:
``:func:`~jaxlrp.explain``` roles, ``.. math::`` blocks and ``Example::`` literal-block markers.
mkdocstrings renders Markdown, so this extension rewrites them before the docstrings are parsed:
a role becomes inline code of the name it shows, ``.. math::`` becomes an arithmatex display
block, a trailing ``::`` becomes ``:`` (the indented block after it is already a Markdown code
block). The source files are not changed. Loaded by mkdocs.yml
(``extensions: [docs/_ext/rest_roles.py]``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")
_MATH_HEAD = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    name = target.split(".")[-1] if tilde else target
    return f"`{name}`"


def _math(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        head = _MATH_HEAD.match(lines[i])
        if head is None:
            out.append(lines[i])
            i += 1
            continue
        indent = head["indent"]
        body = [head["first"].strip()] if head["first"].strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip())
                                  > len(indent)):
            if lines[i].strip():
                body.append(lines[i].strip())
            i += 1
        out += [f"{indent}\\[", *(f"{indent}{line}" for line in body), f"{indent}\\]", ""]
    return "\n".join(out)


def markdown_docstring(text: str) -> str:
    """The docstring ``text`` with its reST roles, math blocks and ``::`` markers as Markdown."""
    text = _ROLE.sub(_role, text)
    text = _math(text)
    return re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", text)


class RestRoles(griffe.Extension):
    """Rewrite each object's docstring once, when griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
