"""Compile, memory and interleaved timing of the methods of one model.

Every JAX method is compiled ahead of time with ``jax.jit(f).lower(*args).compile()``; the
compile time is that call's wall time (tracing, jaxlrp's interpretation, lowering and XLA). The
memory is XLA's static buffer assignment of the compiled program, ``argument + output + temp −
alias`` bytes (per device): what the program needs resident while it runs, weights and inputs
included. It is not a measured resident-set size.

Repetitions are interleaved (forward, grad, composite 1, …, forward, grad, …) so that load from
other processes hits every method alike, and the median is reported.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Method:
    """One thing to time: a JAX function of ``args`` (compiled here) or a Python callable."""

    name: str
    kind: str  # "forward", "grad", "explain", "torch", "zennit"
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    call: Callable[[], Any] | None = None  # for non-JAX methods (torch, zennit)


@dataclasses.dataclass
class Measured:
    """What was measured of one method (seconds and bytes; ``None`` where it does not apply)."""

    name: str
    kind: str
    times: list[float] = dataclasses.field(default_factory=list)
    compile_seconds: float | None = None
    lower_seconds: float | None = None  # the tracing + lowering share of compile_seconds
    memory_bytes: int | None = None
    temp_bytes: int | None = None
    flops: float | None = None
    hlo: dict[str, int] | None = None  # optimized-HLO op counts (benchmarks.hlo.summary)
    compiled: Any = dataclasses.field(default=None, repr=False)

    @property
    def seconds(self) -> float:
        """Median run time."""
        return statistics.median(self.times)

    @property
    def fastest(self) -> float:
        """Fastest run: on a shared machine, the least disturbed by other processes."""
        return min(self.times)


def _memory(compiled: Any) -> tuple[int | None, int | None]:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - a backend without memory analysis
        return None, None
    if stats is None:
        return None, None
    peak = (stats.argument_size_in_bytes + stats.output_size_in_bytes
            + stats.temp_size_in_bytes - stats.alias_size_in_bytes)  # fmt: skip
    return int(peak), int(stats.temp_size_in_bytes)


def _flops(compiled: Any) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis
        return None
    if isinstance(cost, list):  # older JAX: one dict per computation
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])


def compile_method(method: Method) -> tuple[Measured, Callable[[], Any]]:
    """Compile a JAX method (timing lower + compile), or wrap a Python one; returns its record
    and a zero-argument callable that runs it to completion."""
    record = Measured(method.name, method.kind)
    if method.fn is None:
        assert method.call is not None
        return record, method.call
    start = time.perf_counter()
    lowered = jax.jit(method.fn).lower(*method.args)
    record.lower_seconds = time.perf_counter() - start
    compiled = lowered.compile()
    record.compile_seconds = time.perf_counter() - start
    record.memory_bytes, record.temp_bytes = _memory(compiled)
    record.flops = _flops(compiled)
    record.compiled = compiled
    args = method.args
    return record, lambda: jax.block_until_ready(compiled(*args))


def measure(methods: Sequence[Method], repeats: int,
            log: Callable[[str], None] = lambda _: None) -> list[Measured]:  # fmt: skip
    """Compile every method, warm each up once, then time ``repeats`` interleaved rounds."""
    records, calls = [], []
    for method in methods:
        record, call = compile_method(method)
        if record.compile_seconds is not None:
            log(f"  compiled {method.name} in {record.compile_seconds:.1f} s")
        call()  # warm-up (first run allocates, pages in the weights)
        records.append(record)
        calls.append(call)
    for repeat in range(repeats):
        for record, call in zip(records, calls, strict=True):
            start = time.perf_counter()
            call()
            record.times.append(time.perf_counter() - start)
        log(f"  round {repeat + 1}/{repeats}: "
            + ", ".join(f"{r.name} {1e3 * r.times[-1]:.0f} ms" for r in records))  # fmt: skip
    return records
