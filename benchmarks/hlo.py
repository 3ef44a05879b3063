"""Counting the operations of an optimized XLA program (``compiled.as_text()``).

Used to explain a ratio above its target: how many convolutions and dots a method runs next to
``jax.grad``, how many fusions, transposes and copies XLA kept, and XLA's FLOP estimate.
``python -m benchmarks.hlo GRAD.hlo.txt EXPLAIN.hlo.txt`` compares two dumps of ``--hlo``.
"""

from __future__ import annotations

import collections
import pathlib
import re
from typing import Any

# ``%name = shape opcode(operands), attributes``; the first `` word(`` after ``=`` is the opcode
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][\w\-]*)\(")
COUNTED = ("convolution", "dot", "fusion", "transpose", "copy", "reduce-window",
           "select-and-scatter", "custom-call", "while")  # fmt: skip


def op_counts(text: str) -> collections.Counter[str]:
    """Instructions per opcode over all computations of an HLO module's text (a fused
    computation's instructions counted once, where it is defined)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            counts[match.group(1)] += 1
    return counts


def summary(compiled: Any) -> dict[str, int]:
    """The :data:`COUNTED` opcodes of a compiled program."""
    counts = op_counts(compiled.as_text())
    return {op: counts.get(op, 0) for op in COUNTED}


def dump(directory: pathlib.Path, model: str, method: str, compiled: Any) -> pathlib.Path:
    """Write the optimized HLO of ``method`` on ``model`` to ``directory``; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model}.{method.replace(' ', '_')}.hlo.txt"
    path.write_text(compiled.as_text())
    return path


_SHAPED = re.compile(r"=\s*([a-z0-9]+\[[0-9,]*\])\S*\s+([a-z][\w\-]*)\(")


def shapes(text: str, opcode: str) -> collections.Counter[str]:
    """How many ``opcode`` instructions produce each result shape (``f32[2,112,112,64]``)."""
    found: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = _SHAPED.search(line)
        if match and match.group(2) == opcode:
            found[match.group(1)] += 1
    return found


def compare(base: str, other: str, opcodes: tuple[str, ...] = ("convolution", "dot")) -> str:
    """A text report of the op counts of two HLO texts and, per opcode in ``opcodes``, the
    result shapes whose count differs (what the second program computes in addition)."""
    a, b = op_counts(base), op_counts(other)
    lines = [f"{'opcode':<20}{'base':>8}{'other':>8}"]
    for op in sorted(set(a) | set(b), key=lambda o: -(b[o] - a[o])):
        if a[op] != b[op]:
            lines.append(f"{op:<20}{a[op]:>8}{b[op]:>8}")
    for op in opcodes:
        sa, sb = shapes(base, op), shapes(other, op)
        diff = {s: sb[s] - sa[s] for s in set(sa) | set(sb) if sb[s] != sa[s]}
        if diff:
            lines.append(f"{op} result shapes, other − base:")
            lines += [f"  {s}: {n:+d}" for s, n in sorted(diff.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m benchmarks.hlo BASE.hlo.txt OTHER.hlo.txt")
    print(compare(pathlib.Path(sys.argv[1]).read_text(), pathlib.Path(sys.argv[2]).read_text()))
