"""Compiled explanations, reused per function object and composite *value*.

``explain``, ``explain_dataset``, ``explain_continuation`` and the BiLRP functions compile their
work with ``jax.jit`` once and reuse it for later calls with the same model function and an
equal composite. A function is named by its identity (a bound method such as ``model.apply``,
a new object at every attribute access, by its instance and function); a composite by its value
(composites and rules compare and hash by value, array parameters by content), so a composite
built anew in each call does not recompile. An unhashable composite is named by identity.

Each cache holds its entries' functions (and identity-keyed composites) alive, so that an id in
a key cannot be reused by another object while the entry exists, and is bounded (least recently
used entries are dropped).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


def identity(obj: Any) -> tuple[tuple[int, ...], tuple[Any, ...]]:
    """Ids naming ``obj`` and the objects behind them. A bound method (``model.apply``) is a new
    object at every attribute access, so it is named by its instance and its function."""
    if hasattr(obj, "__self__") and hasattr(obj, "__func__"):
        return (id(obj.__self__), id(obj.__func__)), (obj.__self__, obj.__func__)
    return (id(obj),), (obj,)


def composite_key(composite: Any) -> tuple[str, Any]:
    """``("value", composite)`` for a hashable composite (equal composites share an entry),
    ``("id", id(composite))`` for an unhashable user-defined one."""
    try:
        hash(composite)
    except TypeError:
        return ("id", id(composite))
    return ("value", composite)


@dataclasses.dataclass
class Entry:
    """A compiled function and the objects its key names (kept alive with it)."""

    owners: tuple[Any, ...]
    run: Callable
    out_shapes: dict[Any, Any] = dataclasses.field(default_factory=dict)
    """Per-entry memo for callers (``explain`` keeps its traced output shapes here)."""


class Cache:
    """A bounded LRU of :class:`Entry`, keyed by ``(tag, function ids, composite key, options)``.

    Args:
      maxsize: entries kept; the least recently used is dropped beyond it.
    """

    def __init__(self, maxsize: int = 32) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()

    def get(
        self,
        fn: Callable,
        composite: Any,
        options: tuple[Hashable, ...],
        make: Callable[[], Callable],
        also_owned: tuple[Any, ...] = (),
    ) -> Entry:
        """The entry for ``fn``, ``composite`` and ``options``; ``make()`` builds its compiled
        function the first time. ``also_owned`` are further objects named in ``options`` by
        identity (kept alive and checked like ``fn``)."""
        fn_ids, fn_owners = identity(fn)
        c_key = composite_key(composite)
        owners = (*fn_owners, *also_owned) + ((composite,) if c_key[0] == "id" else ())
        key = (fn_ids, c_key, options)
        hit = self._entries.get(key)
        if hit is not None and all(a is b for a, b in zip(hit.owners, owners, strict=True)):
            self._entries.move_to_end(key)
            return hit
        entry = Entry(owners, make())
        self._entries[key] = entry
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return entry

    def values(self) -> list[Entry]:
        """The entries, least recently used first."""
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
