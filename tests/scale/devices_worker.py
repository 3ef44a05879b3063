"""Run by test_scale_devices.py in a fresh process with 8 host CPU devices (the XLA flag
``--xla_force_host_platform_device_count=8`` must be set before jax is imported).

Writes a JSON report (argv[1]): per check, the largest difference from the one-device
relevance, or the error raised.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from scale_nets import batches, data, model_and_variables

import jaxlrp
from jaxlrp import composites
from jaxlrp.sharding import BatchLayout, batch_mesh

COMPOSITE = composites.EpsilonPlus()


def attempt(check: Callable[[], dict]) -> dict:
    try:
        return check()
    except Exception as error:  # noqa: BLE001 - reported to the test
        return {"error": type(error).__name__, "message": str(error)}


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def main(report_path: str) -> None:
    report: dict = {"devices": jax.device_count()}
    model, variables = model_and_variables()
    x, y = data(16)
    one_device = jaxlrp.explain(model.apply, variables, jnp.asarray(x), target=jnp.asarray(y),
                                composite=COMPOSITE)  # fmt: skip
    report["one_device_on"] = len(one_device.sharding.device_set)

    def explain_jit(p, inputs, targets):
        return jaxlrp.explain(model.apply, p, inputs, target=targets, composite=COMPOSITE)

    def sharded_jit(axis_type: AxisType, composite=COMPOSITE, jit: bool = True) -> dict:
        mesh = jax.make_mesh((8,), ("batch",), axis_types=(axis_type,))
        split, copy = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
        xs, ys = jax.device_put(x, split), jax.device_put(y, split)

        def run(p, inputs, targets):
            return jaxlrp.explain(model.apply, p, inputs, target=targets, composite=composite)

        r = (jax.jit(run) if jit else run)(jax.device_put(variables, copy), xs, ys)
        expected = one_device if composite is COMPOSITE else run(variables, x, y)
        return {"diff": max_diff(r, expected), "spec": str(r.sharding.spec),
                "devices": len(r.sharding.device_set)}  # fmt: skip

    report["jit_auto"] = attempt(lambda: sharded_jit(AxisType.Auto))
    report["jit_explicit"] = attempt(lambda: sharded_jit(AxisType.Explicit))
    for name, composite in (("gamma_box", composites.EpsilonGammaBox(low=-3.0, high=3.0)),
                            ("alpha2beta1", composites.EpsilonAlpha2Beta1()),
                            ("plus_flat", composites.EpsilonPlusFlat())):  # fmt: skip
        report[f"explicit_{name}"] = attempt(lambda c=composite: sharded_jit(AxisType.Explicit, c))
    report["explicit_eager"] = attempt(lambda: sharded_jit(AxisType.Explicit, jit=False))

    def dataset() -> dict:
        xd, yd = data(20)
        reference = jaxlrp.explain(model.apply, variables, jnp.asarray(xd),
                                   target=jnp.asarray(yd), composite=COMPOSITE)  # fmt: skip
        with tempfile.TemporaryDirectory() as out:
            result = jaxlrp.explain_dataset(
                model.apply, variables, batches=batches(xd, yd, 6), out_dir=out,
                composite=COMPOSITE, devices=jax.devices(), progress=False, batches_per_chunk=2,
            )  # fmt: skip
            relevance = result.load()["relevance"]
        layout = BatchLayout(batch_mesh(jax.devices()), 6)
        placed = layout.place(xd[:6])
        return {"diff": max_diff(relevance, reference), "examples": result.num_examples,
                "padded_size": layout.padded_size, "placed_on": len(placed.sharding.device_set),
                "shard_rows": placed.addressable_shards[0].data.shape[0]}  # fmt: skip

    report["dataset"] = attempt(dataset)
    report.update(shard_map_checks())
    with open(report_path, "w") as f:
        json.dump(report, f)


def mlp(params, x):
    w1, w2 = params
    return jax.nn.relu(x @ w1) @ w2


def shard_map_checks() -> dict:
    mesh = jax.make_mesh((8,), ("batch",), axis_types=(AxisType.Auto,))
    rng = np.random.default_rng(0)
    w1, w2 = (rng.normal(size=s).astype(np.float32) for s in ((6, 16), (16, 3)))
    x = rng.normal(size=(16, 6)).astype(np.float32)
    t = np.arange(16, dtype=np.int32) % 3
    reference = jaxlrp.explain(mlp, (w1, w2), x, target=t)

    def sharded_model(params, inputs):  # data parallel, written with shard_map
        return jax.shard_map(mlp, mesh=mesh, in_specs=(P(), P("batch")),
                             out_specs=P("batch"))(params, inputs)  # fmt: skip

    def psum_model(params, inputs):  # tensor parallel: hidden units split, partial sums added
        def body(w1, w2, inputs):
            return jax.lax.psum(jax.nn.relu(inputs @ w1) @ w2, "batch")

        return jax.shard_map(body, mesh=mesh, in_specs=(P(None, "batch"), P("batch"), P()),
                             out_specs=P())(*params, inputs)  # fmt: skip

    def explained_per_shard() -> dict:
        per_shard = jax.shard_map(
            lambda params, inputs, targets: jaxlrp.explain(mlp, params, inputs, target=targets),
            mesh=mesh, in_specs=(P(), P("batch"), P("batch")), out_specs=P("batch"),
            check_vma=False,
        )  # fmt: skip
        return {"diff": max_diff(jax.jit(per_shard)((w1, w2), x, t), reference)}

    def explain_psum_inside() -> dict:
        per_shard = jax.shard_map(
            lambda a, b, inputs: jaxlrp.explain(
                lambda a, b, inputs: jax.lax.psum(jax.nn.relu(inputs @ a) @ b, "batch"),
                a, b, inputs, target=t),
            mesh=mesh, in_specs=(P(None, "batch"), P("batch"), P()), out_specs=P(),
            check_vma=False,
        )  # fmt: skip
        return {"diff": max_diff(per_shard(w1, w2, x), reference)}

    return {
        "forward_matches": bool(np.allclose(sharded_model((w1, w2), x), mlp((w1, w2), x),
                                            atol=1e-5)
                                and np.allclose(psum_model((w1, w2), x), mlp((w1, w2), x),
                                                atol=1e-5)),  # fmt: skip
        "shard_map_model": attempt(lambda: {"diff": max_diff(
            jaxlrp.explain(sharded_model, (w1, w2), x, target=t), reference)}),  # fmt: skip
        "psum_model": attempt(lambda: {"diff": max_diff(
            jaxlrp.explain(psum_model, (w1, w2), x, target=t), reference)}),  # fmt: skip
        "explain_per_shard": attempt(explained_per_shard),
        "psum_in_explained_body": attempt(explain_psum_inside),
    }


if __name__ == "__main__":
    main(sys.argv[1])
