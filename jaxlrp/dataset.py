"""Explain a whole data set: stream batches, split them over devices, write chunks, resume.

:func:`explain_dataset` runs one compiled explanation per batch (the parameters replicated, the
batch split over the devices of a 1-D mesh, see :mod:`jaxlrp.sharding`), collects
``batches_per_chunk`` batches into one ``chunk-NNNNN.npz`` file and records the run in
``manifest.json``. A chunk file appears only complete (written to a temporary name, then moved
with ``os.replace``), so a run that stops, for whatever reason, is resumed by calling the same
function again: finished chunks are skipped (their batches are still read from the iterable,
but not explained) and only the missing ones are computed.

Layout of ``out_dir``::

    manifest.json        # the run's configuration, per chunk its batch and example counts
    chunk-00000.npz      # relevance (and, with save_predictions, predictions and targets)
    chunk-00001.npz
    ...

:func:`load_explanations` reads them back as one array per key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp import compiled
from jaxlrp.composites import Composite
from jaxlrp.explain import _as_function, lrp, output_relevance
from jaxlrp.sharding import BatchLayout, batch_mesh

Array = Any
MANIFEST = "manifest.json"
FORMAT = "jaxlrp.explain_dataset/1"
_CHUNK = re.compile(r"^chunk-(\d{5,})\.npz$")


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """One explained batch, as handed to ``on_batch``: host arrays without the padding.

    Attributes:
      index: the batch's position in the iterable.
      start: the index of its first example in the data set.
      relevance: the relevance of the inputs, of the inputs' shape.
      predictions: the model's outputs (e.g. logits).
      targets: what was explained: class indices, or the output relevance for float targets.
    """

    index: int
    start: int
    relevance: np.ndarray
    predictions: np.ndarray
    targets: np.ndarray


@dataclasses.dataclass(frozen=True)
class DatasetExplanation:
    """What :func:`explain_dataset` wrote.

    Attributes:
      out_dir: the output directory (it holds ``manifest.json`` and the chunks).
      chunks: the chunk files, in order.
      num_examples: examples explained (padding excluded), this run and earlier runs together.
      num_batches: batches read from the iterable.
      computed_batches: batches explained by this call.
      skipped_batches: batches of chunks that an earlier run had finished.
    """

    out_dir: Path
    chunks: tuple[Path, ...]
    num_examples: int
    num_batches: int
    computed_batches: int
    skipped_batches: int

    def load(self) -> dict[str, np.ndarray]:
        """All chunks concatenated (see :func:`load_explanations`)."""
        return load_explanations(self.out_dir)


def explain_dataset(
    fn: Callable[..., Array],
    *args: Any,
    batches: Iterable[Any],
    out_dir: str | os.PathLike,
    target: int | Callable[[Array], Array] | None = None,
    composite: Composite | None = None,
    batches_per_chunk: int = 8,
    devices: Any = None,
    save_predictions: bool = False,
    batched: bool | None = None,
    progress: bool = True,
    total: int | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> DatasetExplanation:
    """Explain ``fn(*args, x)`` for every batch ``x`` of ``batches`` and write the relevance to
    ``out_dir`` in chunks; resumable.

    Each batch is explained as :func:`jaxlrp.explain` would explain it (the relevance of the last
    argument, ``R_out = out ⊙ onehot(target)`` propagated back with the composite's rules;
    Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019)::

        result = jaxlrp.explain_dataset(model.apply, variables, batches=loader,
                                        composite=composites.EpsilonPlus(), out_dir="relevance/")
        R = result.load()["relevance"]          # (num_examples, *input_shape)

    The first batch fixes the batch size ``B``: a smaller batch (the last one) is padded to ``B``
    by repeating its last example, and the padding is dropped from the results, so one
    compilation serves all batches. With ``D`` devices, batches are padded to a multiple of
    ``D`` and split along axis 0 (``NamedSharding(mesh, P("batch"))``); the parameters are
    copied to every device.

    Args:
      fn: the model, e.g. ``model.apply``: a function returning one array ``(batch, classes)``,
        or a Flax nnx module.
      *args: the arguments before the input (e.g. ``variables``); the same for every batch.
      batches: an iterable of input arrays ``x``, or of ``(x, targets)`` pairs, where
        ``targets`` is an int array ``(n,)`` of class indices or a float array of the output's
        shape (the output relevance). Arrays of any kind (NumPy, JAX, ...) that NumPy converts.
      out_dir: where to write; created if missing. Calling again with the same ``out_dir``
        resumes the run if its configuration is the same and raises otherwise.
      target: for batches of inputs alone: an int (that class for every example) or a function
        of the model's output returning class indices, evaluated inside the compiled step
        (``lambda out: jnp.argmax(out, -1)`` explains the prediction). None when the batches
        are ``(x, targets)`` pairs.
      composite: the rules (``Composite(default=rules.Epsilon())`` when None).
      batches_per_chunk: batches per chunk file.
      devices: the devices to split batches over (default: ``jax.local_devices()``, this
        process's devices; in a multi-process run each process explains its own share).
      save_predictions: also store the model's outputs (``"predictions"``) and what was
        explained (``"targets"``) in the chunks.
      batched: see :func:`jaxlrp.lrp`.
      progress: show a tqdm progress bar on stderr (nothing when tqdm is not installed).
      total: the number of batches, for the progress bar (default: ``len(batches)`` if known).
      on_batch: called with a :class:`BatchResult` after each batch explained by this call.

    Returns:
      A :class:`DatasetExplanation` with the chunk paths and the counts.

    Raises:
      ValueError: for a batch whose shape or dtype differs from the first batch's (or that is
        larger), missing targets (or targets given twice), targets that do not fit, an
        ``out_dir`` holding chunks of a different run (naming what differs) or foreign chunk
        files, and an empty iterable.
    """
    if batches_per_chunk < 1:
        raise ValueError(f"batches_per_chunk must be >= 1, got {batches_per_chunk}")
    if target is not None and not (callable(target) or _is_int(target)):
        raise ValueError(
            "target must be an int, a function of the model's output (e.g. "
            "lambda out: jnp.argmax(out, -1)), or None when the batches are (inputs, targets) "
            f"pairs; got {type(target).__name__}"
        )
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    call, call_args, _ = _as_function(fn, args, -1)
    if total is None and hasattr(batches, "__len__"):
        total = len(batches)
    bar = _progress_bar(progress, total)
    run: _Run | None = None
    computed = skipped = 0
    try:
        for index, item in enumerate(batches):
            x, t = _split_item(item, index, target)
            if run is None:
                run = _Run.start(directory, fn, call, call_args, x, target, composite,
                                 batches_per_chunk, devices, save_predictions, batched)  # fmt: skip
            if run.add(index, x, t, on_batch):
                computed += 1
            else:
                skipped += 1
            if bar is not None:
                bar.update(1)
        if run is None:
            raise ValueError("batches is empty: nothing to explain")
        run.finish()
    finally:
        if bar is not None:
            bar.close()
    return DatasetExplanation(
        directory, tuple(run.chunk_paths()), run.examples, computed + skipped, computed, skipped
    )


def load_explanations(
    out_dir: str | os.PathLike, *, allow_incomplete: bool = False
) -> dict[str, np.ndarray]:
    """The chunks of an :func:`explain_dataset` run, concatenated: ``{"relevance": ...}`` and,
    if they were saved, ``"predictions"`` and ``"targets"``, in the order of the data set.

    Raises:
      FileNotFoundError: no manifest in ``out_dir``.
      ValueError: the run did not finish (unless ``allow_incomplete``: then the chunks written
        so far, which must be the first ones), or a chunk is missing.
    """
    directory = Path(out_dir)
    manifest = _read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {directory}: not an explain_dataset output")
    records = manifest["chunks"]
    if not manifest.get("complete") and not allow_incomplete:
        raise ValueError(
            f"the run in {directory} did not finish ({len(records)} chunks written); call "
            "explain_dataset again to resume it, or pass allow_incomplete=True"
        )
    indices = sorted(int(k) for k in records)
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
        raise ValueError(f"chunks {missing} are missing from {directory}")
    parts: dict[str, list[np.ndarray]] = {}
    for k in indices:
        with np.load(directory / _chunk_name(k)) as data:
            for key in data.files:
                parts.setdefault(key, []).append(data[key])
    return {key: np.concatenate(values) for key, values in parts.items()}


# ---------------------------------------------------------------------------------------------
# one run


@dataclasses.dataclass
class _Run:
    """The state of one :func:`explain_dataset` call (internal)."""

    directory: Path
    manifest: dict[str, Any]
    layout: BatchLayout
    step: Callable
    params: Any
    target: Any
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    out_shape: tuple[int, ...]
    per_chunk: int
    save_predictions: bool
    examples: int = 0
    buffer: list[BatchResult] = dataclasses.field(default_factory=list)
    seen: dict[int, list[int]] = dataclasses.field(default_factory=dict)  # chunk -> sizes

    @classmethod
    def start(cls, directory: Path, fn: Any, call: Callable, args: tuple, x: np.ndarray,
              target: Any, composite: Composite | None, per_chunk: int, devices: Any,
              save_predictions: bool, batched: bool | None) -> _Run:  # fmt: skip
        """Set up from the first batch: layout, compiled step, manifest (new, or checked)."""
        if x.ndim == 0:
            raise ValueError("batch 0 is a scalar; batches need a leading batch axis")
        layout = BatchLayout(batch_mesh(devices), int(x.shape[0]))
        spec = jax.ShapeDtypeStruct((layout.padded_size, *x.shape[1:]), x.dtype)
        out = jax.eval_shape(call, *args, spec)
        if not hasattr(out, "shape") or len(out.shape) < 1:
            raise ValueError(f"fn must return one array with a batch axis, got {out}")
        config = {
            "function": _describe_function(fn),
            "composite": _strip_ids(repr(composite)),
            "target": _describe_target(target),
            "batch_size": layout.batch_size,
            "input_shape": list(x.shape[1:]),
            "input_dtype": str(x.dtype),
            "batches_per_chunk": per_chunk,
            "save_predictions": save_predictions,
            "batched": batched,
            "parameters": _digest(args),
            "first_batch": _digest(x),
        }
        manifest = _open_manifest(directory, config)
        step = _make_step(call, composite, batched, target if callable(target) else None)
        return cls(directory, manifest, layout, step, layout.replicate(args), target,
                   tuple(x.shape[1:]), x.dtype, tuple(out.shape[1:]), per_chunk,
                   save_predictions)  # fmt: skip

    def add(self, index: int, x: np.ndarray, t: np.ndarray | None,
            on_batch: Callable[[BatchResult], None] | None) -> bool:  # fmt: skip
        """Explain batch ``index`` unless its chunk is finished; True if it was explained."""
        n = self._check(index, x)
        chunk = index // self.per_chunk
        start = self.examples
        self.examples += n
        self.seen.setdefault(chunk, []).append(n)
        last_of_chunk = index % self.per_chunk == self.per_chunk - 1
        if self._done(chunk):
            if last_of_chunk:
                self._verify(chunk)
            return False
        targets = self._targets(index, n, t)
        placed = None if targets is None else self.layout.place(targets)
        relevance, predictions, used = self.step(self.params, self.layout.place(x), placed)
        result = BatchResult(index, start, np.asarray(relevance)[:n], np.asarray(predictions)[:n],
                             np.asarray(used)[:n])  # fmt: skip
        self.buffer.append(result)
        if on_batch is not None:
            on_batch(result)
        if last_of_chunk:
            self._flush(chunk)
        return True

    def finish(self) -> None:
        """Write the last, partial chunk and mark the run complete."""
        last = max(self.seen)
        beyond = sorted(int(k) for k in self.manifest["chunks"] if int(k) > last)
        if beyond:
            raise ValueError(
                f"{self.directory} holds chunks {beyond} beyond the {last + 1} chunks the data "
                "now gives: the data set changed. Use a new out_dir, or delete this one."
            )
        if self.buffer:
            self._flush(last)
        elif self._done(last):
            self._verify(last)
        self.manifest["complete"] = True
        self.manifest["num_examples"] = self.examples
        self.manifest["num_batches"] = sum(len(v) for v in self.seen.values())
        _write_json(self.directory / MANIFEST, self.manifest)

    def chunk_paths(self) -> list[Path]:
        return [self.directory / _chunk_name(k) for k in sorted(self.seen)]

    # -- helpers

    def _check(self, index: int, x: np.ndarray) -> int:
        if x.ndim == 0 or x.shape[1:] != self.input_shape or x.dtype != self.input_dtype:
            raise ValueError(
                f"batch {index} has shape {x.shape} and dtype {x.dtype}, but the first batch "
                f"fixed ({self.layout.batch_size}, {', '.join(map(str, self.input_shape))}) "
                f"{self.input_dtype}: every batch needs the first batch's example shape and "
                "dtype, and at most its number of examples"
            )
        n = int(x.shape[0])
        if not 1 <= n <= self.layout.batch_size:
            raise ValueError(
                f"batch {index} has {n} examples, but the first batch fixed the batch size "
                f"{self.layout.batch_size} (only smaller batches, such as the last, are padded)"
            )
        return n

    def _targets(self, index: int, n: int, t: np.ndarray | None) -> np.ndarray | None:
        """The batch's targets, checked against the output shape (None: computed in the step)."""
        if callable(self.target):
            return None
        t = np.full((n,), self.target, np.int32) if t is None else t
        classes = self.out_shape[-1] if self.out_shape else 0
        if np.issubdtype(t.dtype, np.integer):
            if t.shape != (n,) or not self.out_shape:
                raise ValueError(
                    f"targets of batch {index} have shape {t.shape}; class indices need shape "
                    f"({n},) and the output a class axis (output shape (n, *{self.out_shape}))"
                )
            bad = t[(t < 0) | (t >= classes)]
            if bad.size:
                raise ValueError(
                    f"target index {int(bad[0])} in batch {index} is out of range for "
                    f"{classes} classes"
                )
            return t.astype(np.int32)
        if t.shape != (n, *self.out_shape):
            raise ValueError(
                f"targets of batch {index} have shape {t.shape} and dtype {t.dtype}: give class "
                f"indices ({n},) or the output relevance {(n, *self.out_shape)}"
            )
        return t.astype(np.float32)

    def _done(self, chunk: int) -> bool:
        return (self.directory / _chunk_name(chunk)).exists()

    def _verify(self, chunk: int) -> None:
        """A finished chunk must hold the batches the iterable gave for it this time."""
        record = self.manifest["chunks"].get(str(chunk))
        seen = self.seen[chunk]
        if record is None:  # stopped between writing the chunk and recording it
            with np.load(self.directory / _chunk_name(chunk)) as data:
                record = {"batches": len(seen), "examples": int(data["relevance"].shape[0])}
            self._record(chunk, record)
        if record != {"batches": len(seen), "examples": sum(seen)}:
            raise ValueError(
                f"chunk {chunk} in {self.directory} holds {record['batches']} batches of "
                f"{record['examples']} examples, but the data now gives {len(seen)} batches of "
                f"{sum(seen)} examples for it: the data set changed. Use a new out_dir, or "
                "delete this one to start over."
            )

    def _flush(self, chunk: int) -> None:
        arrays = {"relevance": np.concatenate([r.relevance for r in self.buffer])}
        if self.save_predictions:
            arrays["predictions"] = np.concatenate([r.predictions for r in self.buffer])
            arrays["targets"] = np.concatenate([r.targets for r in self.buffer])
        _write_npz(self.directory / _chunk_name(chunk), arrays)
        self._record(chunk, {"batches": len(self.buffer), "examples": len(arrays["relevance"])})
        self.buffer = []

    def _record(self, chunk: int, record: dict[str, int]) -> None:
        self.manifest["chunks"][str(chunk)] = record
        _write_json(self.directory / MANIFEST, self.manifest)


_STEPS = compiled.Cache(maxsize=8)


def _make_step(fn: Callable, composite: Composite | None, batched: bool | None,
               target_fn: Callable | None) -> Callable:  # fmt: skip
    """One jitted ``(params, x, targets) -> (relevance, outputs, targets)``, reused by later
    calls with the same function, composite (by value), ``batched`` and target function, so that
    a second run in the same process compiles nothing new."""
    options = ("dataset step", batched, id(target_fn))
    return _STEPS.get(fn, composite, options,
                      lambda: _new_step(fn, composite, batched, target_fn),
                      also_owned=(target_fn,)).run  # fmt: skip


def _new_step(fn: Callable, composite: Composite | None, batched: bool | None,
              target_fn: Callable | None) -> Callable:  # fmt: skip

    def step(params: tuple, x: Array, targets: Array | None) -> tuple[Array, Array, Array]:
        out, relevance_fn = lrp(fn, composite, -1, batched=batched)(*params, x)
        if target_fn is not None:
            targets = jnp.asarray(target_fn(out)).astype(jnp.int32)
        r_out, cotangent = output_relevance(out, targets)
        return relevance_fn(r_out, cotangent=cotangent), out, targets

    return jax.jit(step)


# ---------------------------------------------------------------------------------------------
# inputs, configuration, files


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _split_item(item: Any, index: int, target: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` or ``(x, targets)`` as host arrays, with the targets' presence checked."""
    if isinstance(item, tuple | list):
        if len(item) != 2:
            raise ValueError(
                f"batch {index} is a {type(item).__name__} of {len(item)} items; give an input "
                "array, or an (inputs, targets) pair"
            )
        if target is not None:
            raise ValueError(
                f"batch {index} is an (inputs, targets) pair and target={target!r} is given "
                "too: use one of them"
            )
        return np.asarray(item[0]), np.asarray(item[1])
    if target is None:
        raise ValueError(
            f"batch {index} has no targets: yield (inputs, targets) pairs, or give target= "
            "(a class index, or a function of the output such as lambda out: jnp.argmax(out, -1))"
        )
    return np.asarray(item), None


def _strip_ids(text: str) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _describe_function(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", type(fn).__qualname__)
    if owner is not None:  # model.apply: name the model and a digest of its definition
        model = hashlib.sha256(_strip_ids(repr(owner)).encode()).hexdigest()[:12]
        return f"{type(owner).__qualname__}.{getattr(fn, '__name__', name)} [{model}]"
    return f"{getattr(fn, '__module__', '')}.{name}"


def _describe_target(target: Any) -> Any:
    if target is None:
        return "from the batches"
    if callable(target):
        return f"function {getattr(target, '__qualname__', repr(target))}"
    return int(target)


def _digest(tree: Any) -> str:
    """A digest of the shapes, dtypes and values of every leaf of ``tree``."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        value = np.asarray(leaf)
        h.update(f"{value.shape}{value.dtype}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()[:16]


def _chunk_name(index: int) -> str:
    return f"chunk-{index:05d}.npz"


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an explain_dataset manifest (format {FORMAT})")
    return manifest


def _open_manifest(directory: Path, config: dict[str, Any]) -> dict[str, Any]:
    """A new manifest for ``config``, or the existing one if it is for the same run."""
    manifest = _read_manifest(directory)
    if manifest is None:
        chunks = sorted(p.name for p in directory.iterdir() if _CHUNK.match(p.name))
        if chunks:
            raise ValueError(
                f"{directory} holds chunk files ({chunks[0]}, ...) but no {MANIFEST}: they are "
                "not from an explain_dataset run that can be resumed. Use a new out_dir, or "
                "delete them."
            )
        manifest = {"format": FORMAT, "config": config, "chunks": {}, "complete": False}
        _write_json(directory / MANIFEST, manifest)
        return manifest
    old = manifest["config"]
    differ = [k for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)]
    if differ:
        what = "; ".join(f"{k} was {old.get(k)!r}, now {config.get(k)!r}" for k in differ)
        raise ValueError(
            f"{directory} holds chunks of a different run ({what}). Use a new out_dir, or "
            "delete this one to start over."
        )
    return manifest


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically: a temporary file, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _progress_bar(enabled: bool, total: int | None) -> Any:
    """A tqdm bar counting batches, or None (disabled, or tqdm not installed)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="batch", desc="explain_dataset", file=sys.stderr,
                dynamic_ncols=True)  # fmt: skip
