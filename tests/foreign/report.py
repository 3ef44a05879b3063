"""Print what the foreign-model tests measure, one row per model (not collected by pytest).

    python tests/foreign/report.py [model ...]

Columns: whether the explanation under both composites of the tests is finite and non-zero
(``ok``, or the first line of the error); ``max |jit − eager|`` of the LRP-ε relevance and that
divided by ``max |R|``; for ReLU networks, LRP-0 against gradient × input in float64
(``max |R − x∇f| / max |x∇f|``, the test asks ≤ 1e-4); ``ΣR / logit`` per example under the
default composite (LRP-ε) and, for comparison, ``Σ x∇f / logit``; ``amplification``
``Σ|R| / (Σ|x∇f| + |logit|)`` (the test asks < 1e3). Eager explanations run op by op
for the models in ``models.OP_BY_OP`` (as in the test suite) and compiled for the others
(as ``explain`` does by default).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAXLRP_COMPILE_EAGER", "0")  # as tests/conftest.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxlrp  # noqa: E402
from foreign import models  # noqa: E402
from foreign.test_foreign_models import (  # noqa: E402
    COMPOSITES,
    LRP0,
    amplification,
    compiled_eager,
    max_relative,
)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:150]


def _ratios(values, logits) -> str:
    return "/".join(f"{v:.3g}" for v in np.asarray(values) / np.asarray(logits))


def row(name: str) -> dict[str, str]:
    out = {"model": name}
    try:
        __import__(models.LIBRARY[name])
    except ImportError:
        return {**out, "status": f"skipped: {models.LIBRARY[name]} not installed"}
    start = time.perf_counter()
    try:
        c = models.build(name)
        logits = jax.jit(c.fn)(*c.args)
        target = jnp.argmax(logits, axis=-1)
        picked = np.asarray(jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0])
        eager = {}
        errors = []
        for composite in COMPOSITES:
            try:
                with compiled_eager(name not in models.OP_BY_OP):
                    r = np.asarray(jaxlrp.explain(c.fn, *c.args, target=target,
                                                  composite=COMPOSITES[composite],
                                                  argnums=c.argnum))
                eager[composite] = r
                per_example = np.abs(r.reshape(r.shape[0], -1)).max(axis=1)
                if not np.all(np.isfinite(r)):
                    errors.append(f"{composite}: non-finite")
                elif not np.all(per_example > 0):
                    errors.append(f"{composite}: zero")
            except Exception as error:  # noqa: BLE001 - reported
                errors.append(f"{composite}: {_first_line(error)}")
        out["status"] = "ok" if not errors else "; ".join(errors)
        if "epsilon" in eager:
            r = eager["epsilon"]
            jitted = np.asarray(jax.jit(lambda args, t: jaxlrp.explain(
                c.fn, *args, target=t, argnums=c.argnum))(c.args, target))
            diff = float(np.abs(jitted - r).max())
            out["jit-eager"] = f"{diff:.2g} ({diff / np.abs(r).max():.2g})"
            out["ΣR/logit"] = _ratios(r.reshape(r.shape[0], -1).sum(axis=1), picked)

            def score(x):
                args = list(c.args)
                args[c.argnum] = x
                return jnp.take_along_axis(c.fn(*args), target[:, None], axis=-1).sum()

            x = c.args[c.argnum]
            gxi = np.asarray(x * jax.grad(score)(x))
            out["Σx∇f/logit"] = _ratios(gxi.reshape(gxi.shape[0], -1).sum(axis=1), picked)
            out["amplification"] = "/".join(
                f"{v:.3g}" for v in amplification(c, logits, target, r))
        if c.relu:
            out["LRP-0 vs x∇f"] = _lrp0_error(name)
    except Exception as error:  # noqa: BLE001 - reported
        out["status"] = _first_line(error)
    out["time"] = f"{time.perf_counter() - start:.0f}s"
    return out


def _lrp0_error(name: str) -> str:
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        c = models.build(name, jnp.float64)
        target = jnp.argmax(c.fn(*c.args), axis=-1)
        r = jax.jit(lambda args: jaxlrp.explain(c.fn, *args, target=target, composite=LRP0,
                                                argnums=c.argnum))(c.args)

        def picked(*args):
            return jnp.take_along_axis(c.fn(*args), target[:, None], axis=-1).sum()

        gradient = jax.jit(jax.grad(picked, argnums=c.argnum))(*c.args)
        return f"{max_relative(r, c.args[c.argnum] * gradient):.2g}"
    except Exception as error:  # noqa: BLE001 - reported
        return _first_line(error)
    finally:
        jax.config.update("jax_enable_x64", previous)


COLUMNS = ["model", "status", "LRP-0 vs x∇f", "jit-eager", "ΣR/logit", "Σx∇f/logit",
           "amplification", "time"]


def main(names: list[str]) -> None:
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for name in names:
        r = row(name)
        print("| " + " | ".join(r.get(col, "") for col in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(models.LIBRARY))
