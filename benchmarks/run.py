"""Benchmark jaxlrp's explanations against jax.grad of the same model, in the same run.

For each model: the forward pass, ``jax.grad`` of the target logits summed over the batch (the
output the explanation starts from) and each applicable composite (the image presets on CNNs,
AttnLRP/CP-LRP on ViT and MiniLM). Reported: median time, compile time (``jax.jit(f).lower(
*args).compile()``), XLA's memory estimate, and their ratios to jax.grad (ratios transfer
between machines; seconds do not). ``--zennit`` adds zennit on the same weights and images.

Examples (from the repository root)::

    python -m benchmarks.run --smoke                                   # CI, < 60 s on 2 cores
    python -m benchmarks.run --batch 2 --size 224 --out benchmarks/RESULTS.md
    python -m benchmarks.run --models vgg16,resnet50 --zennit --repeats 10
    python -m benchmarks.run --models resnet50 --batch 8 --devices 4   # batch split over 4
    python -m benchmarks.run --models gemma3_270m --batch 1 --seq 1024  # needs the llm extra

``--devices N`` shards the batch over N devices (weights replicated). On a CPU this needs N XLA
host devices, which this command requests by adding ``--xla_force_host_platform_device_count=N``
to ``XLA_FLAGS`` before JAX is imported (set it yourself when calling :func:`main` from a
process that has already imported JAX).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from typing import Any

DEFAULT_OUT_TITLE = "# Benchmarks: jaxlrp explanations vs jax.grad\n\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line (parsed before JAX is imported)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--models", default=None,
                        help="comma-separated zoo names (default: vgg16, resnet50, "
                        "efficientnet_lite0, vit_b16, all_minilm_l6_v2; --smoke: mnist_cnn, "
                        "vit_tiny)")  # fmt: skip
    parser.add_argument("--composites", default=None,
                        help="comma-separated: epsilon, epsilon-plus-flat, epsilon-gamma-box, "
                        "epsilon-gamma-box-original (the overview's non-generalized gamma), "
                        "epsilon-alpha2-beta1, attnlrp, cplrp (default: all; each model gets "
                        "those that apply to it)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None, help="default 2 (--smoke: 1)")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="CNN input side (default 224; ViTs and mnist_cnn keep their own)",
    )
    parser.add_argument("--seq", type=int, default=None,
                        help="MiniLM and Gemma 3 prompt tokens (default 128)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (--smoke: 1)")
    parser.add_argument(
        "--zennit",
        action="store_true",
        help="also time zennit on the same weights (torchvision models)",
    )
    parser.add_argument("--devices", type=int, default=1, help="shard the batch over N devices")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="append the markdown table to this file (created if missing)",
    )
    parser.add_argument("--json", type=pathlib.Path, default=None, help="write JSON here")
    parser.add_argument(
        "--hlo",
        type=pathlib.Path,
        default=None,
        help="dump the optimized HLO of every method into this folder",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models, batch 1, 1 repeat (seconds; for CI)"
    )
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error("--devices must be >= 1")
    return args


def _force_host_devices(n: int) -> None:
    flag = f"--xla_force_host_platform_device_count={n}"
    if "jax" in sys.modules:
        import jax

        if len(jax.devices()) < n:
            print(f"warning: JAX is already imported; set XLA_FLAGS={flag} before importing it",
                  file=sys.stderr)  # fmt: skip
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


def _split(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def _zennit_methods(case: Any, names: tuple[str, ...], torch_model: Any) -> list[Any]:
    from benchmarks import zennit_side
    from jaxlrp import models

    spec = models.info(case.model)
    return zennit_side.methods(case.model, torch_model, case.extra["x"], case.extra["target"],
                               names, spec.low, spec.high)  # fmt: skip


def run_model(model: str, names: tuple[str, ...], args: argparse.Namespace) -> tuple[Any, list]:
    """Build, compile and time one model; returns the case and its measurements."""
    from benchmarks import cases, hlo, measure, zennit_side

    model = cases.canonical(model)
    torch_model, weights = None, None
    if args.zennit and model in zennit_side.ARCHITECTURES:
        torch_model = zennit_side.torch_model(model)
        weights = zennit_side.state_dict(torch_model)
    case = cases.build_case(model, names, args.batch, args.size, args.seq, args.devices, weights)
    methods = list(case.methods)
    if torch_model is not None:
        methods += _zennit_methods(case, cases.applicable(model, names), torch_model)
    elif args.zennit:
        print(f"  {model}: no zennit twin (torchvision models only)", file=sys.stderr)
    records = measure.measure(methods, args.repeats, log=lambda s: print(s, file=sys.stderr))
    for record in records:
        if record.compiled is not None and record.kind in ("grad", "explain"):
            record.hlo = hlo.summary(record.compiled)
            if args.hlo is not None:
                hlo.dump(args.hlo, model, record.name, record.compiled)
        record.compiled = None  # free the executable
    return case, records


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; print (and optionally write) the table; returns the rows."""
    args = parse(argv)
    if args.devices > 1:
        _force_host_devices(args.devices)
    from benchmarks import cases, report

    models = _split(args.models) or (cases.SMOKE_MODELS if args.smoke else cases.FULL_MODELS)
    names = _split(args.composites) or cases.ALL_COMPOSITES
    unknown = sorted(set(names) - set(cases.ALL_COMPOSITES))
    if unknown:
        raise SystemExit(f"unknown composites {unknown}; valid: {', '.join(cases.ALL_COMPOSITES)}")
    args.batch = args.batch or (1 if args.smoke else 2)
    args.repeats = args.repeats or (1 if args.smoke else 5)
    args.seq = args.seq or (16 if args.smoke else 128)
    if args.size is None and not args.smoke:
        args.size = 224
    if args.batch % args.devices:
        raise SystemExit(f"--batch {args.batch} is not divisible by --devices {args.devices}")
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # measure real compile times
    env = report.environment()
    settings = {"batch": args.batch, "repeats": args.repeats, "devices": args.devices}
    if args.size:
        settings["size"] = args.size
    if any(cases.canonical(m) in (*cases.TEXT, *cases.LLM) for m in models):
        settings["seq"] = args.seq
    all_rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for model in models:
        print(f"{model} …", file=sys.stderr)
        case, records = run_model(model, names, args)
        rows = report.rows(case, records)
        missed = any(report.over_target(row) for row in rows)
        for row in rows:  # op counts only where they are needed to explain a miss
            if not (missed and (row["kind"] == "grad" or report.over_target(row))):
                row.pop("hlo", None)
        all_rows += rows
    settings["wall_s"] = round(time.perf_counter() - start, 1)
    table = report.markdown(env, settings, all_rows)
    print(table)
    if args.out is not None:
        prefix = "" if args.out.exists() else DEFAULT_OUT_TITLE
        with args.out.open("a") as f:
            f.write(prefix + table + "\n")
    if args.json is not None:
        report.write_json(args.json, env, settings, all_rows)
    return all_rows


if __name__ == "__main__":
    main()
