"""One batch split over 8 devices gives the one-device relevance; shard_map inside a model.

The checks run in one fresh process (``devices_worker.py``) with 8 host CPU devices: the XLA
flag that creates them must be set before jax is imported, which this process has done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
EXACT = 1e-6  # float32: a different batch split may change the summation order


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("devices") / "report.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", "JAXLRP_COMPILE_EAGER": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, str(HERE / "devices_worker.py"), str(path)], env=env,
                          cwd=HERE, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(path.read_text())


def test_worker_sees_eight_devices_and_the_reference_uses_one(report: dict) -> None:
    assert (report["devices"], report["one_device_on"]) == (8, 1)


def test_jitted_explain_of_a_batch_split_over_8_devices_equals_one_device(report: dict) -> None:
    result = report["jit_auto"]
    assert result.get("error") is None, result
    assert result["devices"] == 8 and result["spec"] == "P('batch',)"
    assert result["diff"] <= EXACT


def test_explicitly_sharded_batch_equals_one_device(report: dict) -> None:
    """Explicit mesh axes (``jax.make_mesh``'s default): the rules' transposed passes keep the
    sharding type of the layer's input."""
    result = report["jit_explicit"]
    assert result.get("error") is None, result
    assert result["devices"] == 8 and result["spec"].startswith("P('batch'")
    assert result["diff"] <= EXACT


@pytest.mark.parametrize("check", ["explicit_gamma_box", "explicit_alpha2beta1",
                                   "explicit_plus_flat", "explicit_eager"])  # fmt: skip
def test_every_rule_family_explains_explicitly_sharded_inputs_like_one_device(
    report: dict, check: str
) -> None:
    """ZBox, generalized γ and αβ (several transposed passes per layer), Flat, and the eager
    (not jitted) explain of Explicit-sharded arrays, each against the same composite unsharded."""
    result = report[check]
    assert result.get("error") is None, result
    assert result["devices"] == 8 and result["diff"] <= EXACT


def test_explain_dataset_over_8_devices_equals_explain(report: dict) -> None:
    result = report["dataset"]
    assert result.get("error") is None, result
    assert result["examples"] == 20  # batches 6, 6, 6, 2: each padded to 8, one row per device
    assert (result["padded_size"], result["placed_on"], result["shard_rows"]) == (8, 8, 1)
    assert result["diff"] <= EXACT


def test_model_with_shard_map_is_refused_naming_the_primitive(report: dict) -> None:
    assert report["forward_matches"]
    for name in ("shard_map_model", "psum_model"):
        assert report[name]["error"] == "UnsupportedPrimitiveError"
        assert "primitive 'shard_map'" in report[name]["message"]
        assert "call jaxlrp.explain inside shard_map" in report[name]["message"]
        assert "Add an entry" not in report[name]["message"]  # a table entry would not help


def test_explain_inside_shard_map_explains_each_shard_like_one_device(report: dict) -> None:
    # what to do instead (docs/scale.md): explain the per-device function inside shard_map
    assert report["explain_per_shard"] == {"diff": 0.0}


def test_psum_in_the_explained_function_is_refused_naming_the_primitive(report: dict) -> None:
    result = report["psum_in_explained_body"]
    assert result["error"] == "UnsupportedPrimitiveError"
    assert "primitive 'psum'" in result["message"]
    assert "docs/scale.md" in result["message"]
