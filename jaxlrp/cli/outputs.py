"""The output files of ``jaxlrp explain``: the paths ``-o`` names, its placeholders, and the
checks for outputs that would collide, replace an input or overwrite a file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from jaxlrp.cli.errors import CLIError

PLACEHOLDERS = ("stem", "name", "ext", "parent")
"""The fields of an ``-o`` pattern: the file name without its extension, the whole file name,
the extension without the dot, and the name of the image's directory."""


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
