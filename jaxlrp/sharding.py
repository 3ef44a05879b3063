"""Data parallelism for explanations: a 1-D ``batch`` mesh, fixed-size padded batches.

An explanation is a pure function of the model's parameters and one batch, and examples do not
interact, so the data-parallel recipe of training applies unchanged: replicate the parameters,
split the batch axis over the devices (``NamedSharding(mesh, P("batch"))``) and let ``jax.jit``
partition the computation. :func:`jaxlrp.explain_dataset` uses the helpers here.

The mesh axis is of type ``AxisType.Auto`` (the sharding is propagated by the compiler).
Inputs on meshes with ``Explicit`` axes (``jax.make_mesh``'s default in current JAX) explain the
same way: the rules' transposed passes keep the sharding type of each layer's input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def batch_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"batch"`` over ``devices`` (default: this process's devices,
    ``jax.local_devices()``), with ``Auto`` axis type where the JAX version has axis types."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty: give at least one device")
    grid = np.asarray(devices, dtype=object)
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:  # pragma: no cover - JAX without axis types
        return Mesh(grid, (BATCH_AXIS,))
    return Mesh(grid, (BATCH_AXIS,), axis_types=(axis_type.Auto,))


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """How batches of up to ``batch_size`` examples are placed on ``mesh``: padded to
    ``padded_size`` (a multiple of the number of devices) and split along axis 0."""

    mesh: Mesh
    batch_size: int

    @property
    def num_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def padded_size(self) -> int:
        n = self.num_devices
        return -(-self.batch_size // n) * n

    @property
    def split(self) -> NamedSharding:
        """Axis 0 split over the devices."""
        return NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        """A full copy on every device (the model's parameters)."""
        return NamedSharding(self.mesh, PartitionSpec())

    def place(self, batch: np.ndarray) -> jax.Array:
        """Pad ``batch`` (``n <= batch_size`` examples) to ``padded_size`` by repeating its last
        example, so that every batch has one shape (one compilation), and split it."""
        return jax.device_put(pad_to(batch, self.padded_size), self.split)

    def replicate(self, tree: Any) -> Any:
        """Put every leaf of ``tree`` on every device of the mesh."""
        return jax.device_put(tree, self.replicated)


def pad_to(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` with its last example repeated until axis 0 has ``size`` entries. (Copies of a
    real example rather than zeros: no rule sees an input it would not see anyway.)"""
    n = batch.shape[0]
    if n > size:
        raise ValueError(f"a batch of {n} examples does not fit the padded size {size}")
    if n == size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - n, axis=0)])
