"""Results as a markdown table or JSON, with the machine, versions and date they came from."""

from __future__ import annotations

import datetime
import json
import math
import pathlib
import platform
from typing import Any

import jax

# Targets of the ratios to jax.grad (issue 13): time by method, compile and memory for all.
TIME_TARGETS = {"epsilon": 1.05, "epsilon-plus-flat": 1.35, "epsilon-gamma-box": 2.0,
                "epsilon-alpha2-beta1": 2.0, "attnlrp": 1.1, "cplrp": 1.1}  # fmt: skip
COMPILE_TARGET = 1.5
MEMORY_TARGET = 1.3


def card() -> str:
    """The CPU model (from ``/proc/cpuinfo``) or the accelerator's device kind, with the count."""
    devices = jax.devices()
    kind = devices[0].device_kind
    if devices[0].platform == "cpu":
        try:
            for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    kind = line.split(":", 1)[1].strip()
                    break
        except OSError:
            kind = platform.processor() or kind
        import os

        return f"{kind}, {os.cpu_count()} CPU(s) visible, {len(devices)} XLA device(s)"
    return f"{len(devices)}x {kind}"


def environment() -> dict[str, str]:
    """Card, library versions and the UTC date."""
    import flax
    import jaxlib

    return {
        "card": card(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def rows(case: Any, records: list[Any]) -> list[dict[str, Any]]:
    """One dict per method: median ms, compile s, memory MiB and the ratios to jax.grad."""
    base = next(r for r in records if r.kind == "grad")
    torch_base = next((r for r in records if r.kind == "torch"), None)
    out = []
    for record in records:
        row = {
            "model": case.model, "weights": case.weights, "input": case.input_desc,
            "batch": case.batch, "method": record.name, "kind": record.kind,
            "ms": 1e3 * record.seconds, "time_ratio": _ratio(record.seconds, base.seconds),
            "min_ms": 1e3 * record.fastest,
            "min_time_ratio": _ratio(record.fastest, base.fastest),
            "compile_s": record.compile_seconds, "lower_s": record.lower_seconds,
            "compile_ratio": _ratio(record.compile_seconds, base.compile_seconds),
            "memory_mib": None if record.memory_bytes is None else record.memory_bytes / 2**20,
            "memory_ratio": _ratio(record.memory_bytes, base.memory_bytes),
            "temp_ratio": _ratio(record.temp_bytes, base.temp_bytes),
            "flops_ratio": _ratio(record.flops, base.flops),
            "times_ms": [1e3 * t for t in record.times],
        }  # fmt: skip
        if torch_base is not None and record.kind in ("torch", "zennit"):
            row["torch_time_ratio"] = _ratio(record.seconds, torch_base.seconds)
        if record.hlo:
            row["hlo"] = record.hlo
        out.append(row)
    return out


def over_target(row: dict[str, Any]) -> list[str]:
    """Which of the row's ratios exceed their targets (explanations only)."""
    if row["kind"] != "explain":
        return []
    out = []
    target = TIME_TARGETS.get(row["method"])
    if target and row["time_ratio"] and row["time_ratio"] > target:
        out.append(f"time {row['time_ratio']:.2f}× > {target}×")
    if row["compile_ratio"] and row["compile_ratio"] > COMPILE_TARGET:
        out.append(f"compile {row['compile_ratio']:.2f}× > {COMPILE_TARGET}×")
    if row["memory_ratio"] and row["memory_ratio"] > MEMORY_TARGET:
        out.append(f"memory {row['memory_ratio']:.2f}× > {MEMORY_TARGET}×")
    return out


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:{spec}}{suffix}"


COLUMNS = ("model", "method", "ms", "time / grad", "fastest / grad", "compile s",
           "compile / grad", "memory MiB", "memory / grad", "temp / grad", "FLOPs / grad",
           "target")  # fmt: skip


NOTE = (
    "ms: median; fastest: the fastest run of each method (the least disturbed on a shared "
    "machine). memory: XLA's buffer assignment of the compiled program (arguments, weights "
    "included, + outputs + temporaries − aliased; per device); temp: temporaries only; FLOPs: "
    "XLA's cost analysis. Ratios are to jax.grad of the same model in the same run; "
    "repetitions interleaved."
)


def markdown(env: dict[str, str], settings: dict[str, Any], all_rows: list[dict]) -> str:
    """The results table with a header naming the machine, versions, date and settings."""
    lines = [
        f"### {env['card']} ({env['backend']}), {env['date']}",
        "",
        f"jax {env['jax']}, jaxlib {env['jaxlib']}, flax {env['flax']}; "
        + ", ".join(f"{k} {v}" for k, v in settings.items()),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in all_rows:
        model = f"{row['model']} ({row['weights']}, {row['input']}, batch {row['batch']})"
        ratio = _fmt(row["time_ratio"], ".2f", "×")
        if "torch_time_ratio" in row and row["kind"] == "zennit":
            ratio += f" ({_fmt(row['torch_time_ratio'], '.2f', '×')} torch.grad)"
        misses = over_target(row)
        target = "" if row["kind"] != "explain" else ("; ".join(misses) if misses else "met")
        cells = [
            model, row["method"], _fmt(row["ms"], ".1f"), ratio,
            _fmt(row["min_time_ratio"], ".2f", "×"), _fmt(row["compile_s"], ".2f"),
            _fmt(row["compile_ratio"], ".2f", "×"), _fmt(row["memory_mib"], ".1f"),
            _fmt(row["memory_ratio"], ".2f", "×"), _fmt(row["temp_ratio"], ".2f", "×"),
            _fmt(row["flops_ratio"], ".2f", "×"), target,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", NOTE, ""]
    hlo = [row for row in all_rows if row.get("hlo")]
    if hlo:
        from benchmarks.hlo import COUNTED

        lines += ["Optimized-HLO op counts:", "",
                  "| model | method | " + " | ".join(COUNTED) + " |",
                  "|" + "---|" * (len(COUNTED) + 2)]  # fmt: skip
        for row in hlo:
            lines.append(f"| {row['model']} | {row['method']} | "
                         + " | ".join(str(row["hlo"][op]) for op in COUNTED) + " |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def write_json(path: pathlib.Path, env: dict, settings: dict, all_rows: list[dict]) -> None:
    """All measurements (every repetition too) as JSON."""
    path.write_text(json.dumps({"environment": env, "settings": settings, "rows": all_rows},
                               indent=2))  # fmt: skip
