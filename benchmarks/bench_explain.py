"""Time and memory of jaxlrp.explain relative to jax.grad of the same model, in one run.

For each composite, the explanation and the gradient of the target logit (w.r.t. the input) are
both jit-compiled; we report the median wall time over ``--repeats`` runs and the ratio to the
gradient, plus XLA's compiled temporary-memory estimate and its ratio. Ratios, not seconds, are
the result: they transfer between machines far better.

Usage:
  python benchmarks/bench_explain.py --model vgg16 --batch 1 --size 224        # CPU
  python benchmarks/bench_explain.py --model resnet50 --batch 32 --size 224    # GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

import jaxlrp
from jaxlrp import composites, models, rules


def _composites() -> dict[str, composites.Composite | None]:
    return {
        "epsilon": composites.Composite(rules.Epsilon()),
        "epsilon-gamma-box": composites.EpsilonGammaBox(low=-3.0, high=3.0),
        "epsilon-plus-flat": composites.EpsilonPlusFlat(),
        "epsilon-alpha2-beta1": composites.EpsilonAlpha2Beta1(),
    }


def _time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _temp_bytes(fn, *args) -> int | None:
    try:
        analysis = fn.lower(*args).compile().memory_analysis()
        return int(analysis.temp_size_in_bytes)
    except Exception:  # backend without memory analysis
        return None


def run(model_name: str, batch: int, size: int, repeats: int, names: list[str] | None) -> dict:
    module, variables = models.load(model_name, input_shape=(size, size, 3))
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3))
    target = jnp.zeros((batch,), jnp.int32)

    @jax.jit
    def grad(variables, x, target):
        def total(x):
            logits = module.apply(variables, x)
            return jnp.take_along_axis(logits, target[:, None], axis=1).sum()

        return jax.grad(total)(x)

    results = {"model": model_name, "batch": batch, "size": size,
               "device": jax.devices()[0].device_kind, "backend": jax.default_backend()}
    base = _time(grad, variables, x, target, repeats=repeats)
    base_mem = _temp_bytes(grad, variables, x, target)
    results["grad_seconds"] = base
    results["grad_temp_bytes"] = base_mem
    rows = []
    for name, composite in _composites().items():
        if names and name not in names:
            continue

        @jax.jit
        def explain(variables, x, target, composite=composite):
            return jaxlrp.explain(module.apply, variables, x, target=target, composite=composite)

        seconds = _time(explain, variables, x, target, repeats=repeats)
        mem = _temp_bytes(explain, variables, x, target)
        rows.append({
            "composite": name,
            "seconds": seconds,
            "time_ratio": seconds / base,
            "temp_bytes": mem,
            "memory_ratio": (mem / base_mem) if (mem and base_mem) else None,
        })
    results["explain"] = rows
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16", choices=models.available_models())
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--composites", nargs="*", default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    results = run(args.model, args.batch, args.size, args.repeats, args.composites)
    print(f"{results['model']} batch {results['batch']} {results['size']}x{results['size']} on "
          f"{results['device']} ({results['backend']})")
    print(f"jax.grad of the target logit: {results['grad_seconds'] * 1e3:.1f} ms")
    print(f"{'composite':<24}{'ms':>10}{'time / grad':>14}{'memory / grad':>16}")
    for row in results["explain"]:
        mem = f"{row['memory_ratio']:.2f}" if row["memory_ratio"] else "n/a"
        print(f"{row['composite']:<24}{row['seconds'] * 1e3:>10.1f}{row['time_ratio']:>14.2f}"
              f"{mem:>16}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
