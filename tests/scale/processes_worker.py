"""One of the processes of test_scale_processes.py: ``python processes_worker.py ID N PORT OUT``.

Joins a ``jax.distributed`` run of N processes on this machine (coordinator ``localhost:PORT``,
CPU backend, 2 host devices per process, gloo collectives), then explains its share of the batch
twice: (1) as part of one global array split over all processes' devices, by one jitted
``jaxlrp.explain``, gathered back with ``process_allgather``; (2) with ``explain_dataset`` on
its own devices, writing to ``OUT/process-ID``. Saves (1) as ``OUT/gathered-ID.npy``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402 - after the device flag

SHARE = 8  # examples per process


def main(process_id: int, num_processes: int, port: int, out: str) -> None:
    jax.config.update("jax_platforms", "cpu")
    if hasattr(jax.config, "jax_cpu_collectives_implementation"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=120)  # fmt: skip
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P
    from scale_nets import batches, data, model_and_variables

    import jaxlrp
    from jaxlrp import composites
    from jaxlrp.sharding import batch_mesh

    assert jax.process_count() == num_processes and jax.local_device_count() == 2
    composite = composites.EpsilonPlus()
    model, variables = model_and_variables()
    x, y = data(SHARE * num_processes)
    mine = slice(process_id * SHARE, (process_id + 1) * SHARE)

    mesh = batch_mesh(jax.devices())  # all processes' devices
    split, copy = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    x_all = jax.make_array_from_process_local_data(split, x[mine], x.shape)
    y_all = jax.make_array_from_process_local_data(split, y[mine], y.shape)
    explain = jax.jit(lambda v, inputs, targets: jaxlrp.explain(
        model.apply, v, inputs, target=targets, composite=composite), out_shardings=split)
    relevance = explain(jax.device_put(variables, copy), x_all, y_all)
    gathered = multihost_utils.process_allgather(relevance, tiled=True)
    np.save(os.path.join(out, f"gathered-{process_id}.npy"), np.asarray(gathered))

    jaxlrp.explain_dataset(model.apply, variables, batches=batches(x[mine], y[mine], 3),
                           out_dir=os.path.join(out, f"process-{process_id}"),
                           composite=composite, progress=False)  # fmt: skip
    multihost_utils.sync_global_devices("done")
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
