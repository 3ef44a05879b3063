"""Two processes on this machine (``jax.distributed``, CPU, gloo) explain their shares of a
batch; together they give the single-process relevance."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scale_nets import data, model_and_variables

import jaxlrp
from jaxlrp import composites

# slow: starts two fresh JAX processes that meet at a coordinator (about 5 s on an idle
# 2-core machine, 15-20 s when it is shared); everything else in tests/scale stays under a minute
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
PROCESSES, SHARE = 2, 8  # SHARE as in processes_worker.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("processes")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAXLRP_COMPILE_EAGER"] = "1"
    port = str(free_port())
    workers = [subprocess.Popen([sys.executable, str(HERE / "processes_worker.py"), str(k),
                                 str(PROCESSES), port, str(out)], cwd=HERE, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for k in range(PROCESSES)]  # fmt: skip
    logs = []
    try:
        for w in workers:
            logs.append(w.communicate(timeout=240)[0])
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, log in zip(workers, logs, strict=True):
        assert w.returncode == 0, log[-3000:]
    return out


@functools.cache
def single_process_relevance() -> np.ndarray:
    model, variables = model_and_variables()
    x, y = data(SHARE * PROCESSES)
    explain = jax.jit(lambda v, inputs, targets: jaxlrp.explain(
        model.apply, v, inputs, target=targets, composite=composites.EpsilonPlus()))
    return np.asarray(explain(variables, jnp.asarray(x), jnp.asarray(y)))


def test_global_batch_over_two_processes_equals_single_process(run: Path) -> None:
    expected = single_process_relevance()
    for k in range(PROCESSES):  # every process gathered the whole batch
        np.testing.assert_allclose(np.load(run / f"gathered-{k}.npy"), expected, rtol=1e-5,
                                   atol=1e-6)  # fmt: skip


def test_each_process_explain_dataset_share_equals_single_process(run: Path) -> None:
    shares = [jaxlrp.load_explanations(run / f"process-{k}")["relevance"]
              for k in range(PROCESSES)]  # fmt: skip
    np.testing.assert_allclose(np.concatenate(shares), single_process_relevance(), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
