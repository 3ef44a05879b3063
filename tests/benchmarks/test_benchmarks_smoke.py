"""``python -m benchmarks.run --smoke`` runs and reports every method of every smoke model.

Timings are never asserted on (the machine is shared); only that the table has the expected rows
and columns and that every number in it is finite and positive.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPECTED = {
    "mnist_cnn": {"forward", "jax.grad", "epsilon", "epsilon-plus-flat", "epsilon-gamma-box",
                  "epsilon-gamma-box-original", "epsilon-alpha2-beta1"},
    "vit_tiny": {"forward", "jax.grad", "attnlrp", "cplrp"},
}  # fmt: skip
NUMBERS = ("ms", "time_ratio", "compile_s", "compile_ratio", "memory_mib", "memory_ratio")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One run of the smoke benchmark in a fresh process: its JSON and its markdown."""
    pytest.importorskip("flax")
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("JAXLRP_COMPILE_EAGER", None)
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--json", str(out / "r.json"),
         "--out", str(out / "RESULTS.md")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "r.json").read_text()), (out / "RESULTS.md").read_text()


def test_smoke_reports_every_method_of_every_model(smoke):
    data, _ = smoke
    found: dict[str, set[str]] = {}
    for row in data["rows"]:
        found.setdefault(row["model"], set()).add(row["method"])
    assert found == EXPECTED


def test_smoke_numbers_are_finite_and_positive(smoke):
    data, _ = smoke
    for row in data["rows"]:
        for key in NUMBERS:
            value = row[key]
            assert value is not None and math.isfinite(value) and value > 0, (row["method"], key)


def test_grad_is_the_unit_of_every_ratio(smoke):
    data, _ = smoke
    for row in data["rows"]:
        if row["kind"] == "grad":
            assert row["time_ratio"] == row["compile_ratio"] == row["memory_ratio"] == 1.0


def test_markdown_names_the_machine_and_has_one_row_per_method(smoke):
    data, markdown = smoke
    env = data["environment"]
    assert markdown.startswith("# Benchmarks")
    assert f"jax {env['jax']}, jaxlib {env['jaxlib']}, flax {env['flax']}" in markdown
    assert env["card"] in markdown and env["date"] in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| model | method"))
    assert [c.strip() for c in header.strip("|").split("|")][:4] == [
        "model",
        "method",
        "ms",
        "time / grad",
    ]
    table = [line for line in markdown.splitlines()
             if line.startswith("| ") and "px, batch" in line]  # fmt: skip
    assert len(table) == sum(len(methods) for methods in EXPECTED.values())
