"""jaxlrp.explain_dataset: streamed batches, chunk files on disk, resume, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scale_nets import CLASSES, batches, data, model_and_variables

import jaxlrp
from jaxlrp import composites

COMPOSITE = composites.EpsilonPlus()
MODEL, VARIABLES = model_and_variables()


@jax.jit
def _reference(x: jax.Array, target: jax.Array) -> jax.Array:
    return jaxlrp.explain(MODEL.apply, VARIABLES, x, target=target, composite=COMPOSITE)


def reference(x: np.ndarray, target) -> np.ndarray:
    """jaxlrp.explain on all of ``x`` at once (compiled: one compilation per shape)."""
    return np.asarray(_reference(jnp.asarray(x), jnp.asarray(target)))


def explain(tmp: Path, items, **kw) -> jaxlrp.DatasetExplanation:
    kw.setdefault("composite", COMPOSITE)
    kw.setdefault("progress", False)
    return jaxlrp.explain_dataset(MODEL.apply, VARIABLES, batches=items, out_dir=tmp, **kw)


def test_chunks_on_disk_equal_explain_on_the_whole_data_set(tmp_path: Path) -> None:
    x, y = data(22)
    result = explain(tmp_path, list(batches(x, y, 4)), batches_per_chunk=2, save_predictions=True)
    assert (result.num_examples, result.num_batches, result.computed_batches) == (22, 6, 6)
    assert [p.name for p in result.chunks] == [f"chunk-0000{k}.npz" for k in range(3)]
    loaded = result.load()
    np.testing.assert_allclose(loaded["relevance"], reference(x, y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded["predictions"], MODEL.apply(VARIABLES, x), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(loaded["targets"], y)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_examples"] == 22
    assert manifest["chunks"]["2"] == {"batches": 2, "examples": 6}


def test_last_partial_batch_is_padded_to_one_compiled_shape_and_dropped(tmp_path: Path) -> None:
    x, y = data(10)
    traced_shapes = []

    def fn(variables, inputs):
        traced_shapes.append(inputs.shape[0])
        return MODEL.apply(variables, inputs)

    result = jaxlrp.explain_dataset(fn, VARIABLES, batches=batches(x, y, 4), out_dir=tmp_path,
                                    composite=COMPOSITE, progress=False)  # fmt: skip
    assert set(traced_shapes) == {4}  # the batch of 2 ran padded, without a new trace
    relevance = result.load()["relevance"]
    assert relevance.shape == (10, *x.shape[1:])
    np.testing.assert_allclose(relevance[8:], reference(x[8:], y[8:]), rtol=1e-5, atol=1e-6)


class Interrupted(Exception):
    pass


def failing_after(items: list, k: int):
    yield from items[:k]
    raise Interrupted(f"stopped after {k} batches")


def test_resume_after_an_interruption_computes_only_the_missing_chunks(tmp_path: Path) -> None:
    x, y = data(24)
    items = list(batches(x, y, 4))  # 6 batches, 2 per chunk
    with pytest.raises(Interrupted):
        explain(tmp_path, failing_after(items, 3), batches_per_chunk=2)
    assert sorted(p.name for p in tmp_path.glob("chunk-*")) == ["chunk-00000.npz"]
    assert not list(tmp_path.glob(".*.tmp"))  # batch 2 was computed but its chunk not written
    with pytest.raises(ValueError, match="did not finish"):
        jaxlrp.load_explanations(tmp_path)
    first = jaxlrp.load_explanations(tmp_path, allow_incomplete=True)["relevance"]
    assert first.shape[0] == 8
    written = (tmp_path / "chunk-00000.npz").stat().st_mtime_ns

    explained = []
    result = explain(tmp_path, items, batches_per_chunk=2, on_batch=lambda b: explained.append(
        b.index))  # fmt: skip
    assert explained == [2, 3, 4, 5]
    assert (result.computed_batches, result.skipped_batches) == (4, 2)
    assert (tmp_path / "chunk-00000.npz").stat().st_mtime_ns == written
    np.testing.assert_allclose(result.load()["relevance"], reference(x, y), rtol=1e-5, atol=1e-6)

    again = explain(tmp_path, items, batches_per_chunk=2)  # a finished run: nothing to do
    assert (again.computed_batches, again.skipped_batches) == (0, 6)


def test_target_function_explains_each_prediction(tmp_path: Path) -> None:
    x, _ = data(8)
    result = explain(tmp_path, batches(x, None, 4), target=lambda out: jnp.argmax(out, -1),
                     save_predictions=True)  # fmt: skip
    predicted = np.argmax(np.asarray(MODEL.apply(VARIABLES, x)), -1)
    loaded = result.load()
    np.testing.assert_array_equal(loaded["targets"], predicted)
    np.testing.assert_allclose(loaded["relevance"], reference(x, predicted), rtol=1e-5, atol=1e-6)


def test_int_target_explains_that_class_for_every_example(tmp_path: Path) -> None:
    x, _ = data(6)
    result = explain(tmp_path, batches(x, None, 3), target=2)
    np.testing.assert_allclose(result.load()["relevance"], reference(x, 2), rtol=1e-5, atol=1e-6)


def test_float_targets_are_the_output_relevance(tmp_path: Path) -> None:
    x, y = data(6)
    r_out = np.eye(CLASSES, dtype=np.float32)[y] * 0.5
    result = explain(tmp_path, [(x[:4], r_out[:4]), (x[4:], r_out[4:])])
    np.testing.assert_allclose(result.load()["relevance"], reference(x, r_out), rtol=1e-5,
                               atol=1e-6)  # fmt: skip


def test_progress_bar_without_tqdm_degrades_to_none(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    x, y = data(4)
    assert explain(tmp_path, batches(x, y, 2), progress=True).num_examples == 4


def test_progress_bar_counts_batches_on_stderr(tmp_path: Path, capsys) -> None:
    pytest.importorskip("tqdm")
    x, y = data(4)
    explain(tmp_path, list(batches(x, y, 2)), progress=True)
    assert "2/2" in capsys.readouterr().err


# -- errors


def test_batches_without_targets_need_a_target(tmp_path: Path) -> None:
    x, _ = data(4)
    with pytest.raises(ValueError, match="batch 0 has no targets.*target="):
        explain(tmp_path, batches(x, None, 2))


def test_targets_from_the_batches_and_target_together_are_refused(tmp_path: Path) -> None:
    x, y = data(4)
    with pytest.raises(ValueError, match="use one of them"):
        explain(tmp_path, batches(x, y, 2), target=1)


def test_batch_with_another_example_shape_is_refused(tmp_path: Path) -> None:
    x, y = data(4)
    items = [(x[:2], y[:2]), (x[2:, :5], y[2:])]
    with pytest.raises(ValueError, match=r"batch 1 has shape \(2, 5, 6, 2\).*first batch fixed"):
        explain(tmp_path, items)


def test_batch_larger_than_the_first_is_refused(tmp_path: Path) -> None:
    x, y = data(6)
    with pytest.raises(ValueError, match="batch 1 has 4 examples.*batch size 2"):
        explain(tmp_path, [(x[:2], y[:2]), (x[2:], y[2:])])


def test_target_out_of_range_is_refused(tmp_path: Path) -> None:
    x, _ = data(2)
    with pytest.raises(ValueError, match=f"target index 7 in batch 0 .* for {CLASSES} classes"):
        explain(tmp_path, [(x, np.array([0, 7]))])


def test_targets_of_the_wrong_length_are_refused(tmp_path: Path) -> None:
    x, y = data(4)
    with pytest.raises(ValueError, match=r"targets of batch 0 have shape \(3,\)"):
        explain(tmp_path, [(x, y[:3])])


@pytest.mark.parametrize(
    ("change", "named"),
    [({"composite": composites.EpsilonGammaBox(low=-3.0, high=3.0)}, "composite was"),
     ({"batches_per_chunk": 1}, "batches_per_chunk was 8, now 1"),
     ({"data_seed": 5}, "first_batch was")],
)  # fmt: skip
def test_out_dir_of_a_different_run_is_refused(tmp_path: Path, change: dict, named: str) -> None:
    x, y = data(4)
    explain(tmp_path, batches(x, y, 2))
    seed = change.pop("data_seed", 1)
    x2, y2 = data(4, seed=seed)
    with pytest.raises(ValueError, match=f"holds chunks of a different run.*{named}"):
        explain(tmp_path, batches(x2, y2, 2), **change)


def test_changed_number_of_batches_is_detected_on_resume(tmp_path: Path) -> None:
    x, y = data(6)
    explain(tmp_path, batches(x[:4], y[:4], 2), batches_per_chunk=4)  # one chunk of 2 batches
    with pytest.raises(ValueError, match="chunk 0 .* holds 2 batches.*now gives 3 batches"):
        explain(tmp_path, batches(x, y, 2), batches_per_chunk=4)


def test_shorter_data_set_is_detected_on_resume(tmp_path: Path) -> None:
    x, y = data(8)
    explain(tmp_path, batches(x, y, 2), batches_per_chunk=2)  # chunks 0 and 1
    with pytest.raises(ValueError, match=r"holds chunks \[1\] beyond the 1 chunks"):
        explain(tmp_path, batches(x[:4], y[:4], 2), batches_per_chunk=2)


def test_chunk_files_without_a_manifest_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "chunk-00000.npz", relevance=np.zeros(3))
    x, y = data(2)
    with pytest.raises(ValueError, match="chunk files .* but no manifest.json"):
        explain(tmp_path, batches(x, y, 2))


def test_an_empty_iterable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batches is empty"):
        explain(tmp_path, [], target=0)
