"""GGUF files (llama.cpp's format): metadata, dequantized tensors, and an on-disk cache.

A GGUF file holds key–value metadata (architecture hyper-parameters, the tokenizer) and
tensors, many quantized in blocks (``Q4_K``, ``Q5_0``, ``Q6_K``, ``Q8_0``…). The ``gguf``
package reads both (``gguf.GGUFReader`` maps the file into memory) and dequantizes a block
tensor to float32 (``gguf.quants.dequantize``).

Orientation: ggml lists dimensions innermost first, so a tensor of ggml shape ``(640, 1024)``
is the row-major numpy array ``(1024, 640)`` — the reversed shape, which for a projection is
PyTorch's ``Linear.weight`` layout ``(out_features, in_features)``. :func:`dequantize_gguf`
checks every tensor against its reversed ggml shape.

Dequantizing takes seconds (a 262144×640 embedding alone ~3 s), so :func:`cached_tensors`
does it once and keeps the float32 arrays as a ``safetensors`` file under :func:`cache_dir`
(read back lazily, one array at a time: :class:`SafetensorsFile`),
written atomically (a temporary file renamed into place) and tagged with a fingerprint of its
source, so that a changed source or an interrupted write is never read back.

References:
    G. Gerganov et al., llama.cpp, ``docs/gguf.md`` (the file format) and ``gguf-py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "GGUF_PIP",
    "SafetensorsFile",
    "atomic_path",
    "cache_dir",
    "cached_metadata",
    "cached_tensors",
    "dequantize_gguf",
    "read_metadata",
]

GGUF_PIP = "pip install 'gguf>=0.19' safetensors"

# Bump when the cached arrays would change (e.g. a different dequantization convention).
_CACHE_FORMAT = "1"


def cache_dir() -> pathlib.Path:
    """Where jaxlrp keeps derived files: ``$JAXLRP_CACHE``, else ``~/.cache/jaxlrp``."""
    path = os.environ.get("JAXLRP_CACHE")
    return pathlib.Path(path).expanduser() if path else pathlib.Path.home() / ".cache" / "jaxlrp"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike):
    """A temporary path next to ``target``, renamed onto it when the block exits cleanly.

    Readers see either no file or the complete one; on an error the temporary file is removed.

    Example:
        >>> with atomic_path(cache_dir() / "x.bin") as tmp:  # doctest: +SKIP
        ...     tmp.write_bytes(data)
    """
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = pathlib.Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a shared cache
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _reader(path: str | os.PathLike) -> Any:
    try:
        import gguf
    except ImportError as err:
        raise ImportError(f"reading a GGUF file needs the gguf package; run: {GGUF_PIP}") from err
    return gguf.GGUFReader(str(path))


def read_metadata(path: str | os.PathLike, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The key–value metadata of a GGUF file as Python values (str, int, float, bool, lists).

    Args:
        path: The GGUF file.
        keys: Only these keys (missing ones are left out); ``None`` for all. The tokenizer
            arrays (``tokenizer.ggml.tokens``… 262144 entries for Gemma 3) make opening the
            file slow (~10 s, element by element): see :func:`cached_metadata`.

    Raises:
        ImportError: If ``gguf`` is missing.
    """
    fields = _reader(path).fields
    wanted = fields.keys() if keys is None else [key for key in keys if key in fields]
    return {key: fields[key].contents() for key in wanted}


def cached_metadata(
    path: str | os.PathLike, cache_file: str | os.PathLike, fingerprint: str
) -> dict[str, Any]:
    """:func:`read_metadata` of the whole file, read once and kept as JSON in ``cache_file``.

    Args:
        path: The GGUF file.
        cache_file: The ``.json`` file to read or write.
        fingerprint: Identifies the GGUF file (e.g. its sha256); a cache with another is
            rebuilt.
    """
    cache_file = pathlib.Path(cache_file)
    tag = f"{_CACHE_FORMAT}:{fingerprint}"
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text(encoding="utf-8"))
            if cached.get("jaxlrp") == tag:
                return cached["metadata"]
        except (ValueError, KeyError, AttributeError):  # a damaged cache is rebuilt below
            pass
    metadata = read_metadata(path)
    with atomic_path(cache_file) as temporary:
        temporary.write_text(json.dumps({"jaxlrp": tag, "metadata": metadata}), encoding="utf-8")
    return metadata


def dequantize_gguf(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file as float32, in numpy order (the reversed ggml shape).

    Raises:
        ImportError: If ``gguf`` is missing.
        ValueError: If a dequantized tensor's shape is not its reversed ggml shape.
    """
    from gguf.quants import dequantize

    tensors = {}
    for tensor in _reader(path).tensors:
        array = np.asarray(dequantize(tensor.data, tensor.tensor_type), np.float32)
        expected = tuple(int(d) for d in reversed(tensor.shape))
        if array.shape != expected:
            raise ValueError(
                f"{tensor.name}: dequantized shape {array.shape}, ggml shape "
                f"{tuple(int(d) for d in tensor.shape)} reversed is {expected}"
            )
        tensors[tensor.name] = array
    return tensors


class SafetensorsFile(Mapping):
    """The arrays of a ``safetensors`` file by name, each read from disk when it is accessed.

    Iterating ``items()`` holds one array at a time, so converting a 1 GB file into model
    parameters never needs a second full copy in memory.
    """

    def __init__(self, path: str | os.PathLike):
        from safetensors import safe_open

        self.path = pathlib.Path(path)
        with safe_open(str(self.path), framework="numpy") as file:
            self._names = tuple(file.keys())
            self.metadata = dict(file.metadata() or {})

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        from safetensors import safe_open

        with safe_open(str(self.path), framework="numpy") as file:
            return file.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def cached_tensors(
    source: Callable[[], Mapping[str, np.ndarray]], cache_file: str | os.PathLike, fingerprint: str
) -> SafetensorsFile:
    """``source()``'s arrays, computed once and kept in a ``safetensors`` file.

    The file records ``fingerprint`` (e.g. the source file's sha256) in its metadata; a cache
    whose fingerprint differs, or that cannot be read, is rebuilt.

    Args:
        source: Computes the arrays (name → array).
        cache_file: The ``.safetensors`` file to read or write.
        fingerprint: Identifies the source and its conversion.

    Returns:
        The cached file as a lazy mapping (:class:`SafetensorsFile`).

    Raises:
        ImportError: If ``safetensors`` is missing.
    """
    try:
        from safetensors.numpy import save_file
    except ImportError as err:
        raise ImportError(
            f"caching dequantized tensors needs safetensors; run: {GGUF_PIP}"
        ) from err
    cache_file = pathlib.Path(cache_file)
    tag = f"{_CACHE_FORMAT}:{fingerprint}"
    if cache_file.is_file():
        try:
            cached = SafetensorsFile(cache_file)
            if cached.metadata.get("jaxlrp") == tag:
                return cached
        except Exception:  # a damaged cache is rebuilt below
            pass
    tensors = source()
    with atomic_path(cache_file) as temporary:
        save_file(dict(tensors), str(temporary), metadata={"jaxlrp": tag})
    del tensors
    return SafetensorsFile(cache_file)
