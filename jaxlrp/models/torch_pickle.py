"""Read ``torch.save`` checkpoints into numpy arrays without importing torch.

Both on-disk formats written by ``torch.save`` are supported:

* the zip format (torch >= 1.6, the default): ``<root>/data.pkl`` holds the pickled object,
  ``<root>/data/<key>`` the raw bytes of each storage and ``<root>/byteorder`` (when present)
  the byte order they were written in; the name of ``<root>`` varies;
* the legacy format (``_use_new_zipfile_serialization=False``): a stream of pickles (magic
  number, protocol version, system information, the object, the list of storage keys) followed
  by each storage as an 8-byte little-endian element count and its raw bytes.

Every pickle is read with a strict allow-list unpickler: only the tensor-rebuild functions,
the storage type names and ``collections.OrderedDict`` may be referenced. Any other global
(``os.system``, ``builtins.eval``, a model class, a dict subclass, ...) raises
:class:`UnsafePickleError` before anything is called, so a malicious file cannot run code.

References:
    PyTorch, ``torch/serialization.py`` (file layout, ``persistent_id`` tuples) and
    ``torch/_utils.py`` (``_rebuild_tensor_v2``): https://github.com/pytorch/pytorch
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

__all__ = ["UnsafePickleError", "load_torch_object", "read_torch_state_dict"]

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "params")


class UnsafePickleError(pickle.UnpicklingError):
    """A ``torch.save`` file referenced something outside the reader's allow-list."""


def _bfloat16() -> np.dtype:
    try:
        import ml_dtypes  # a dependency of jax
    except ImportError as err:  # pragma: no cover - jax always installs it
        raise ValueError("bfloat16 tensors need the 'ml_dtypes' package") from err
    return np.dtype(ml_dtypes.bfloat16)


_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for ``torch.<Name>Storage``: only carries the numpy dtype."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        dtype = _STORAGE_DTYPES[self.name]
        return dtype() if callable(dtype) and not isinstance(dtype, type) else np.dtype(dtype)


@dataclasses.dataclass(eq=False)
class _Storage:
    """A storage whose bytes are filled in once known (legacy files store them after the pickle).

    ``offset``/``numel`` describe a legacy storage *view* into the root storage ``root``.
    """

    dtype: np.dtype
    key: str
    numel: int
    data: np.ndarray | None = None
    root: _Storage | None = None
    offset: int = 0

    def array(self) -> np.ndarray:
        if self.root is not None:
            return self.root.array()[self.offset : self.offset + self.numel]
        if self.data is None:
            raise ValueError(f"storage {self.key!r} has no data in the file")
        return self.data


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    """A tensor described by storage, element offset, size and stride (torch's layout)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        flat = self.storage.array()
        size, stride, offset = self.size, self.stride, self.offset
        if len(size) != len(stride):
            raise ValueError(f"tensor size {size} and stride {stride} differ in rank")
        if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
            raise ValueError(f"negative size/stride/offset: {size}, {stride}, {offset}")
        if 0 in size:
            return np.zeros(size, dtype=flat.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= flat.size:
            raise ValueError(
                f"tensor (offset {offset}, size {size}, stride {stride}) reads past the end of "
                f"its storage of {flat.size} elements"
            )
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
        )
        return np.array(view, copy=True)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("tensor rebuilt from something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> Any:
    if not isinstance(data, _TensorRef):
        raise UnsafePickleError("parameter rebuilt from something that is not a tensor")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage"),
}


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and torch storage references."""

    def __init__(self, file: IO[bytes], load_storage: Any = None) -> None:
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: only tensors, storages and "
                "collections.OrderedDict may appear in a torch.save file read by jaxlrp"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            raise UnsafePickleError(f"unsupported persistent id {pid!r}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"persistent id names no storage type: {pid!r}")
        return self._load_storage(storage_type, *pid[2:])


def _load_zip(archive: zipfile.ZipFile) -> Any:
    names = archive.namelist()
    pickles = sorted((n for n in names if n.endswith("data.pkl")), key=len)
    if not pickles:
        raise ValueError("zip file has no data.pkl: not a torch.save checkpoint")
    root = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if root + "byteorder" in names:
        byteorder = archive.read(root + "byteorder").decode("ascii").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"unknown byte order {byteorder!r}")
    storages: dict[str, _Storage] = {}

    def load_storage(storage_type: _StorageType, key: Any, location: Any, numel: Any) -> _Storage:
        key = str(key)
        if key not in storages:
            dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
            raw = archive.read(f"{root}data/{key}")
            data = np.frombuffer(raw, dtype=dtype, count=len(raw) // dtype.itemsize)
            data = data.astype(dtype.newbyteorder("="), copy=False)
            storages[key] = _Storage(storage_type.dtype, key, data.size, data)
        elif storages[key].dtype != storage_type.dtype:  # shared storage read as another dtype
            base = storages[key].array()
            data = base.view(storage_type.dtype)
            return _Storage(storage_type.dtype, key, data.size, data)
        return storages[key]

    with archive.open(pickles[0]) as file:
        return _AllowListUnpickler(io.BytesIO(file.read()), load_storage).load()


def _load_legacy(file: IO[bytes]) -> Any:
    def plain() -> Any:
        return _AllowListUnpickler(file).load()

    if plain() != _LEGACY_MAGIC_NUMBER:
        raise ValueError("not a torch.save file: bad magic number")
    if (version := plain()) != _LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"unsupported torch.save protocol version {version!r}")
    sys_info = plain()
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    storages: dict[str, _Storage] = {}

    def load_storage(
        storage_type: _StorageType, key: Any, location: Any, numel: Any, view: Any = None
    ) -> _Storage:
        key = str(key)
        if key not in storages:
            storages[key] = _Storage(storage_type.dtype, key, int(numel))
        if view is None:
            return storages[key]
        view_key, offset, view_size = view
        return _Storage(
            storage_type.dtype, str(view_key), int(view_size), None, storages[key], int(offset)
        )

    result = _AllowListUnpickler(file, load_storage).load()
    keys = plain()
    order = "<" if little else ">"
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise ValueError(f"storage {key!r} listed in the file but never used")
        (count,) = struct.unpack("<q", file.read(8))
        dtype = storage.dtype.newbyteorder(order)
        raw = file.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"file ends inside storage {key!r}")
        storage.data = np.frombuffer(raw, dtype=dtype).astype(storage.dtype, copy=False)
        storage.numel = count
    return result


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.materialize()
    if isinstance(obj, Mapping):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def load_torch_object(path: str | os.PathLike | IO[bytes]) -> Any:
    """Load the object in a ``torch.save`` file, with every tensor as a numpy array.

    Args:
        path: A file path or a binary file object (zip or legacy format).

    Returns:
        The saved object: dicts (including ``OrderedDict``), lists, tuples, numbers and
        strings as themselves, tensors and parameters as ``np.ndarray`` in their torch dtype
        (bfloat16 via ``ml_dtypes``) and shape, copied out of their storage.

    Raises:
        UnsafePickleError: If the file references any class or function outside the allow-list.
        ValueError: If the file is not a ``torch.save`` file or is inconsistent.
    """
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as file:
            return load_torch_object(file)
    file = path
    start = file.tell()
    if zipfile.is_zipfile(file):
        file.seek(start)
        with zipfile.ZipFile(file) as archive:
            return _materialize(_load_zip(archive))
    file.seek(start)
    return _materialize(_load_legacy(file))


def _flatten(obj: Mapping, prefix: str, out: dict[str, np.ndarray]) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            out[name] = value
        elif isinstance(value, Mapping):
            _flatten(value, name + ".", out)
        else:
            raise ValueError(f"entry {name!r} is a {type(value).__name__}, not a tensor")


def read_torch_state_dict(path: str | os.PathLike | IO[bytes]) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict from a ``torch.save`` file, without torch.

    A checkpoint that wraps the state dict (``{"state_dict": ...}``, ``{"model": ...}``, also
    with other entries such as an epoch counter) is unwrapped; nested dicts are flattened with
    ``.`` as torch's ``state_dict`` does.

    Args:
        path: A file path or a binary file object.

    Returns:
        Mapping from torch parameter/buffer name to numpy array in PyTorch layout.

    Raises:
        UnsafePickleError: If the file references anything outside the allow-list.
        ValueError: If the file holds no dict of tensors.
    """
    obj = load_torch_object(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"the file holds a {type(obj).__name__}, not a state dict")
    if not all(isinstance(v, np.ndarray) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    return out
