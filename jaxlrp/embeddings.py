"""Token inputs: explaining integer arguments through the float values they look up.

A text model takes integer token ids, and relevance lives on floats. jaxlrp explains an
integer (or boolean) argument at the *lookup*: the first float values the program computes from
it by indexing a table. :func:`cut_at_lookups` finds them in a traced program and cuts the
program there: the looked-up values become inputs of their own, explained like any float input
(relevance ``R = v ⊙ c + tap``), and their relevance is carried back to the token positions.

What counts as a lookup (any framework: Flax ``nn.Embed``, Equinox ``weight[x]``, Keras
``Embedding``, ``jnp.take``, a one-hot matmul):

* ``gather`` from a float table that does not depend on an explained input, indexed by values
  computed from the ids (``E[ids]``, ``jnp.take(E, ids, axis=0)``);
* ``dynamic_slice`` of such a table at a start computed from the ids (``E[i]`` for a scalar id);
* a one-hot matmul ``jax.nn.one_hot(ids, V) @ E`` (a boolean computed from the ids, converted
  to float, contracted with a table along axes on which it is per token): the cut is the
  product, so it explains exactly like the gather ``E[ids]``, under any composite;
* any other boolean computed from the ids, converted to float and fed to a dense/conv layer,
  e.g. a multi-hot input ``x.astype(float) @ W``: the cut is the 0/1 value (an *indicator*),
  whose entries are tokens of their own; the matmul is a layer of the explanation.

Tables and weights must not depend on an explained input (indexing an explained array is data
movement of that array, not a lookup).

Between the ids and the lookup, the program may compute anything element-wise (offsets,
negative-index wrapping, casts, comparisons) and move the ids around (reshape, flatten,
transpose, slice, broadcast, concatenate, re-index them with ``gather``). Each such value keeps a
*position map*: a linear 0/1 map from one entry per token to the value's entries. The relevance
of a lookup reaches its tokens through the transpose of its map (so a flatten is undone, a
transposed or broadcast use is summed back onto its token, and several lookups of one argument
add up). Values that mix token positions (``cumsum``, sorting, a reduction, ``ids[1:] * V +
ids[:-1]``) are not token lookups: a position embedding indexed by ``cumsum(ids != pad)`` is a
constant of the explanation, like a mask computed from the ids.

Lookups inside ``scan``/``cond`` bodies are not found (do the lookup before the loop).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxlrp.primitives import PrimitiveKind, lookup
from jaxlrp.tracing import Const, Eqn, Program, Var

Array = Any
Env = Mapping[Any, Array]

LAYER_PRIMITIVES = frozenset({"dot_general", "conv_general_dilated"})
_EXTRA_ELEMENTWISE = frozenset(
    {"shift_left", "shift_right_logical", "shift_right_arithmetic", "clz", "clamp"}
)
_SAME_AXES = frozenset({"copy", "copy_p", "reduce_precision", "slice", "rev", "dynamic_slice"})


def _data_operands(eqn: Eqn) -> frozenset[int] | None:
    """For data movement we can replay on a float array: the operands that are moved (the
    others, e.g. gather indices, control where to). None for any other primitive."""
    name = eqn.name
    if name in ("reshape", "squeeze", "expand_dims", "broadcast_in_dim", "transpose", "rev",
                "slice", "copy", "copy_p", "reduce_precision"):  # fmt: skip
        return frozenset({0})
    if name == "concatenate":
        return frozenset(range(len(eqn.inputs)))
    if name == "pad":
        return frozenset({0, 1})
    if name in ("gather", "dynamic_slice"):
        return frozenset({0})
    return None


def _is_elementwise(name: str) -> bool:
    entry = lookup(name)
    if entry is not None and (entry.kind == PrimitiveKind.ELEMENTWISE or entry.moves == "same"):
        return True
    return name in _EXTRA_ELEMENTWISE


def _is_float(atom: Any) -> bool:
    return jnp.issubdtype(atom.dtype, jnp.floating)


def _read(x: Any, env: Env) -> Array:
    return x.value if isinstance(x, Const) else env[x]


def _bind(eqn: Eqn, values: Sequence[Array], params: dict[str, Any] | None = None) -> list[Array]:
    out = eqn.primitive.bind(*values, **(eqn.params if params is None else params))
    return list(out) if eqn.primitive.multiple_results else [out]


@dataclasses.dataclass(frozen=True, eq=False)
class PositionMap:
    """Where the tokens of one integer input sit in a value computed from it.

    ``apply(p, env)`` maps a float array ``p`` of the input's shape (one entry per token) to an
    array of the value's shape whose every entry is the ``p`` of the token it was computed from
    (0 where no token is involved). It is linear; its transpose carries relevance from the value
    back to the tokens. ``env`` holds the program values the replay reads (indices of a
    re-indexing ``gather``, ...).

    Attributes:
      leaf: the flat argument index of the integer input.
      tokens: the integer input's shape (one entry per token).
      key: equal keys mean equal maps (values of one token position combine element-wise).
      shape: the value's shape.
      repeated: axes along which every token's entries repeat (a broadcast, a gather's slice).
    """

    leaf: int
    tokens: tuple[int, ...]
    key: Any
    shape: tuple[int, ...]
    repeated: frozenset[int]
    apply: Callable[[Array, Env], Array]


@dataclasses.dataclass(frozen=True)
class _Mixed:
    """A value computed from the ids whose entries cannot be assigned to single tokens."""

    leaves: frozenset[int]
    why: str


Position = PositionMap | _Mixed


@dataclasses.dataclass(frozen=True, eq=False)
class Lookup:
    """One lookup: a float value the program computes from an integer input by indexing a table.

    Attributes:
      leaf: the flat argument index of the integer input.
      value: the looked-up value; an input of the cut program.
      kind: ``"gather"``, ``"dynamic_slice"``, ``"one_hot"`` (the product of a one-hot with a
        table) or ``"indicator"`` (a 0/1 value fed to a layer, e.g. a multi-hot input).
      description: the lookup equation (primitive, shapes, module).
      features: the value's feature axes (a gather's table slice, the table axis of a one-hot
        product), kept by ``keep_features``.
      positions: how the value's entries map to tokens.
    """

    leaf: int
    value: Var
    kind: str
    description: str
    features: tuple[int, ...]
    positions: PositionMap

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape[d] for d in self.features)

    def to_tokens(self, relevance: Array, env: Env, keep_features: bool = False) -> Array:
        """Relevance of the looked-up value, carried back to the token positions: of the
        input's shape, or with ``keep_features`` of its shape + :attr:`feature_shape`."""
        leaf_shape = self.positions.tokens
        apply = self.positions.apply

        def pull(fn: Callable[[Array, Env], Array], r: Array) -> Array:
            _, vjp = jax.vjp(lambda p: fn(p, env), jnp.zeros(leaf_shape, r.dtype))
            return vjp(r)[0]

        if not keep_features or not self.features:
            return pull(apply, relevance)
        feats = list(self.features)
        rest = [d for d in range(relevance.ndim) if d not in feats]
        moved = jnp.transpose(relevance, rest + feats)
        moved = moved.reshape(tuple(relevance.shape[d] for d in rest) + (-1,))

        def first_slice(p: Array, env_: Env) -> Array:  # the map is the same along the features
            y = apply(p, env_)
            return y[tuple(0 if d in feats else slice(None) for d in range(y.ndim))]

        out = jax.vmap(lambda r: pull(first_slice, r), in_axes=-1, out_axes=-1)(moved)
        return out.reshape(leaf_shape + self.feature_shape)


@dataclasses.dataclass(eq=False)
class TokenInputs:
    """A program cut at the lookups of its integer inputs (see :func:`cut_at_lookups`).

    Attributes:
      program: the cut program: inputs are the original ones followed by the looked-up values
        (the lookup equations are removed).
      lookups: the lookups, in program order.
      leaves: the flat argument indices of the explained integer inputs.
      original_inputs: the original program's inputs.
      slice: the equations that compute the looked-up values, in program order.
    """

    program: Program
    lookups: tuple[Lookup, ...]
    leaves: tuple[int, ...]
    original_inputs: list[Var]
    slice: list[Eqn]

    def values(self, flat_args: Sequence[Array]) -> tuple[list[Array], dict[Any, Array]]:
        """The looked-up values for the arguments ``flat_args``, and the environment
        :meth:`to_leaves` needs; the lookups are evaluated plainly (no relevance)."""
        env: dict[Any, Array] = dict(zip(self.original_inputs, flat_args, strict=True))
        for eqn in self.slice:
            outs = _bind(eqn, [_read(x, env) for x in eqn.inputs])
            env.update(zip(eqn.outputs, outs, strict=True))
        return [env[lk.value] for lk in self.lookups], env

    def input_names(self, paths: Sequence[str]) -> list[str]:
        """Names of the looked-up values as program inputs, from the argument leaves' pytree
        ``paths``: ``"<path>:lookup"`` for an argument's first lookup, ``"<path>:lookup<n>"``
        for the next ones."""
        count: dict[int, int] = {}
        names = []
        for lk in self.lookups:
            n = count[lk.leaf] = count.get(lk.leaf, -1) + 1
            names.append(f"{paths[lk.leaf]}:lookup{n or ''}")
        return names

    def to_leaves(
        self, relevance: Sequence[Array], env: Env, keep_features: bool = False
    ) -> dict[int, Array]:
        """Per explained integer input: the sum over its lookups of their relevance at its
        tokens (``relevance`` holds one array per lookup, in :attr:`lookups` order)."""
        out: dict[int, Array] = {}
        shapes: dict[int, tuple[tuple[int, ...], str]] = {}
        for lk, r in zip(self.lookups, relevance, strict=True):
            if keep_features:
                seen = shapes.setdefault(lk.leaf, (lk.feature_shape, lk.description))
                if seen[0] != lk.feature_shape:
                    raise ValueError(
                        f"keep_features=True needs every lookup of one input to have the same "
                        f"feature shape, but {seen[1]} has features {seen[0]} and "
                        f"{lk.description} has {lk.feature_shape}; use keep_features=False"
                    )
            tokens = lk.to_tokens(r, env, keep_features)
            out[lk.leaf] = tokens if lk.leaf not in out else out[lk.leaf] + tokens
        return out


def cut_at_lookups(
    program: Program,
    integer_inputs: Sequence[int],
    explained: Sequence[int],
    names: Mapping[int, str],
) -> TokenInputs:
    """Cut ``program`` at the lookups of the integer inputs ``integer_inputs``.

    Args:
      program: the traced program.
      integer_inputs: positions (in ``program.inputs``) of the explained integer/boolean inputs.
      explained: positions of all explained inputs (a table computed from one of them is not a
        lookup table: indexing it is data movement of an explained value).
      names: per integer input, how error messages name it (``"argument 1 (path '1')"``).

    Returns:
      The cut program, its lookups and how to compute them.

    Raises:
      ValueError: an integer input with no lookup, naming it and what its values reach instead.
    """
    eqns = program.eqns
    tainted: set[Var] = {program.inputs[k] for k in explained}
    for eqn in eqns:
        if any(isinstance(x, Var) and x in tainted for x in eqn.inputs):
            tainted.update(eqn.outputs)
    uses: dict[Var, list[int]] = {}
    for i, eqn in enumerate(eqns):
        for x in eqn.inputs:
            if isinstance(x, Var):
                uses.setdefault(x, []).append(i)

    positions: dict[Var, Position] = {}
    for k in integer_inputs:
        v = program.inputs[k]
        positions[v] = PositionMap(k, v.shape, ("leaf", k), v.shape, frozenset(), lambda p, env: p)
    lookups: list[Lookup] = []
    cut: set[int] = set()
    pending: dict[int, Lookup] = {}  # one-hot matmuls (found at their one-hot) -> their lookup
    misses: dict[int, list[str]] = {k: [] for k in integer_inputs}
    for i, eqn in enumerate(eqns):
        if i in pending:
            lookups.append(pending.pop(i))
            cut.add(i)
            continue
        dep = [k for k, x in enumerate(eqn.inputs) if isinstance(x, Var) and x in positions]
        if not dep:
            continue
        if not any(_is_float(v) for v in eqn.outputs):
            where = _follow(eqn, dep, positions)
            for v in eqn.outputs:
                positions[v] = where
            continue
        found = _as_lookup(eqn, dep, positions, tainted, eqns, uses)
        if isinstance(found, dict):
            pending.update(found)
        elif isinstance(found, Lookup):
            lookups.append(found)
            cut.add(i)
        else:
            for leaf in _leaves(eqn, dep, positions):
                misses[leaf].append(found)

    have = {lk.leaf for lk in lookups}
    for k in integer_inputs:
        if k not in have:
            raise ValueError(_no_lookup_message(names[k], program.inputs[k], misses[k]))
    kept = [e for i, e in enumerate(eqns) if i not in cut]
    new = Program([*program.inputs, *(lk.value for lk in lookups)], list(program.outputs), kept)
    return TokenInputs(new, tuple(lookups), tuple(integer_inputs), list(program.inputs),
                       _backward_slice(eqns, cut))  # fmt: skip


def _leaves(eqn: Eqn, dep: list[int], positions: Mapping[Var, Position]) -> set[int]:
    out: set[int] = set()
    for k in dep:
        where = positions[eqn.inputs[k]]
        out |= where.leaves if isinstance(where, _Mixed) else {where.leaf}
    return out


def _no_lookup_message(name: str, var: Var, misses: list[str]) -> str:
    dtype = getattr(var.dtype, "name", str(var.dtype))
    if misses:
        shown = "; ".join(misses[:3]) + ("; ..." if len(misses) > 3 else "")
        reach = f"its values reach float computations only through: {shown}"
    else:
        reach = "none of its values reaches a float computation (it is unused, or used only in "
        reach += "integer/boolean computations that do not reach a float lookup)"
    return (
        f"jaxlrp explains floating-point inputs only, and integer inputs through the embedding "
        f"lookups they index; {name} has dtype {dtype} and reaches no lookup: {reach}. A lookup "
        "is a gather from a float table (nn.Embed, E[ids], jnp.take) or a one-hot/boolean value "
        "fed to a layer (jax.nn.one_hot(ids, V) @ E). To explain numbers, pass floats, e.g. "
        "x.astype(jnp.float32)."
    )


def _backward_slice(eqns: list[Eqn], cut: set[int]) -> list[Eqn]:
    """The equations the lookup equations ``cut`` need, in program order (lookups included)."""
    needed: set[Var] = set()
    keep: list[int] = []
    for i in range(len(eqns) - 1, -1, -1):
        eqn = eqns[i]
        if i in cut or any(v in needed for v in eqn.outputs):
            keep.append(i)
            needed.update(x for x in eqn.inputs if isinstance(x, Var))
    return [eqns[i] for i in reversed(keep)]


# --- position maps ---------------------------------------------------------------------------


def _broadcast(where: PositionMap, shape: tuple[int, ...]) -> PositionMap:
    if where.shape == shape:
        return where
    offset = len(shape) - len(where.shape)
    repeated = set(range(offset)) | {offset + d for d in where.repeated}
    repeated |= {offset + d for d, n in enumerate(where.shape) if n == 1 and shape[offset + d] != 1}
    apply = where.apply
    key = ("broadcast", shape, where.key)
    return PositionMap(where.leaf, where.tokens, key, shape, frozenset(repeated),
                       lambda p, env: jnp.broadcast_to(apply(p, env), shape))  # fmt: skip


def _follow(eqn: Eqn, dep: list[int], positions: Mapping[Var, Position]) -> Position:
    """The position map of the integer/boolean result of ``eqn`` (operands ``dep`` from ids)."""
    maps = [positions[eqn.inputs[k]] for k in dep]
    mixed = [m for m in maps if isinstance(m, _Mixed)]
    leaves = _leaves(eqn, dep, positions)
    if mixed:
        return _Mixed(frozenset(leaves), mixed[0].why)
    if len(eqn.outputs) != 1 or len(leaves) != 1:
        return _Mixed(frozenset(leaves), f"{eqn.describe()} combines several inputs")
    out = eqn.outputs[0]
    name = eqn.name
    if _is_elementwise(name):
        if len({m.key for m in maps}) != 1:
            return _Mixed(frozenset(leaves), f"{eqn.describe()} combines several token positions")
        return _broadcast(maps[0], out.shape)
    data = _data_operands(eqn)
    if data is not None and all(k in data for k in dep):
        return _moved(eqn, dep, positions)
    if name == "gather" and dep == [1]:
        return _gathered(eqn, maps[0])
    if name == "dynamic_slice" and 0 not in dep:
        return _sliced(eqn, dep, maps)
    return _Mixed(frozenset(leaves), f"{eqn.describe()} mixes token positions")


def _moved(eqn: Eqn, dep: list[int], positions: Mapping[Var, Position]) -> PositionMap:
    """Data movement of ids: replayed on the float surrogate (other moved operands as zeros)."""
    data = _data_operands(eqn) or frozenset()
    maps = {k: positions[eqn.inputs[k]] for k in dep}
    params = dict(eqn.params)
    if "fill_value" in params:
        params["fill_value"] = 0
    first = next(iter(maps.values()))

    def apply(p: Array, env: Env) -> Array:
        values = []
        for k, x in enumerate(eqn.inputs):
            if k in maps:
                values.append(maps[k].apply(p, env))
            elif k in data:
                values.append(jnp.zeros(x.shape, p.dtype))
            else:
                values.append(_read(x, env))
        return _bind(eqn, values, params)[0]

    control = tuple(x.id if isinstance(x, Var) else id(x) for k, x in enumerate(eqn.inputs)
                    if k not in data)  # fmt: skip
    key = (eqn.name, repr(sorted(params.items())), tuple(maps[k].key for k in dep), control)
    repeated = _moved_repeated(eqn, dep, maps)
    return PositionMap(first.leaf, first.tokens, key, eqn.outputs[0].shape, repeated, apply)


def _moved_repeated(eqn: Eqn, dep: list[int], maps: Mapping[int, PositionMap]) -> frozenset[int]:
    """Axes of a moved value along which each token repeats (conservative: may miss some)."""
    name, p = eqn.name, eqn.params
    src = maps[dep[0]]
    out_shape = eqn.outputs[0].shape
    if name in _SAME_AXES:
        return src.repeated
    if name == "transpose":
        perm = p["permutation"]
        return frozenset(j for j, d in enumerate(perm) if d in src.repeated)
    if name == "broadcast_in_dim":
        dims = p["broadcast_dimensions"]
        rep = set(range(len(out_shape))) - set(dims)
        rep |= {dims[d] for d in src.repeated}
        rep |= {dims[d] for d, n in enumerate(src.shape) if n == 1 and out_shape[dims[d]] != 1}
        return frozenset(rep)
    if name == "squeeze":
        kept = [d for d in range(len(src.shape)) if d not in p["dimensions"]]
        return frozenset(j for j, d in enumerate(kept) if d in src.repeated)
    if name in ("reshape", "expand_dims"):  # an axis survives if its size and stride do
        rep = set()
        for d in src.repeated:
            inner = _prod(src.shape[d + 1:])
            for j, n in enumerate(out_shape):
                if n == src.shape[d] and _prod(out_shape[j + 1:]) == inner:
                    rep.add(j)
        return frozenset(rep)
    if name == "pad":
        padded = {d for d, cfg in enumerate(p["padding_config"]) if any(cfg)}
        return frozenset(src.repeated - padded)
    if name == "concatenate":
        rep = set.intersection(*(set(maps[k].repeated) for k in dep))
        return frozenset(rep - {p["dimension"]})
    return frozenset()


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _index_weights(where: PositionMap, p: Array, env: Env, axis: int | None) -> Array:
    """``where(p)`` averaged over the index vector entries that come from a token (``axis``; None
    for a list of scalars stacked on axis 0), so that an index vector with several token entries
    does not count its token twice."""
    value = where.apply(p, env)
    ones = where.apply(jnp.ones_like(p), env)
    count = jnp.maximum(jnp.sum(ones, axis=-1 if axis is None else axis, keepdims=True), 1)
    return value * ones / count


def _gathered(eqn: Eqn, index: PositionMap) -> PositionMap:
    """A gather indexed by ids: each result entry belongs to the token(s) of its index vector."""
    dn = eqn.params["dimension_numbers"]
    out_shape = eqn.outputs[0].shape
    batch = tuple(d for d in range(len(out_shape)) if d not in dn.offset_dims)

    def apply(p: Array, env: Env) -> Array:
        per_index = jnp.sum(_index_weights(index, p, env, -1), axis=-1)
        return lax.broadcast_in_dim(per_index, out_shape, batch)

    repeated = set(dn.offset_dims) | {batch[d] for d in index.repeated if d < len(batch)}
    key = ("gather", index.key, repr(dn), out_shape)
    return PositionMap(index.leaf, index.tokens, key, out_shape, frozenset(repeated), apply)


def _sliced(eqn: Eqn, dep: list[int], maps: list[PositionMap]) -> PositionMap:
    """A dynamic_slice at a start computed from ids (scalar ids): the whole slice is its token."""
    out_shape = eqn.outputs[0].shape

    def apply(p: Array, env: Env) -> Array:
        parts = jnp.stack([jnp.broadcast_to(m.apply(p, env), ()) for m in maps])
        ones = jnp.stack([jnp.broadcast_to(m.apply(jnp.ones_like(p), env), ()) for m in maps])
        total = jnp.sum(parts * ones) / jnp.maximum(jnp.sum(ones), 1)
        return jnp.broadcast_to(total, out_shape)

    key = ("dynamic_slice", tuple(m.key for m in maps), tuple(dep), out_shape)
    every = frozenset(range(len(out_shape)))
    return PositionMap(maps[0].leaf, maps[0].tokens, key, out_shape, every, apply)


# --- lookups ---------------------------------------------------------------------------------


def _as_lookup(
    eqn: Eqn,
    dep: list[int],
    positions: Mapping[Var, Position],
    tainted: set[Var],
    eqns: Sequence[Eqn],
    uses: Mapping[Var, list[int]],
) -> Lookup | dict[int, Lookup] | str:
    """``eqn`` (a float result from ids) as a lookup; for a one-hot, the lookups at the
    matmuls it feeds (by equation index); or why it is not a lookup."""
    name = eqn.name
    maps = [positions[eqn.inputs[k]] for k in dep]
    mixed = next((m for m in maps if isinstance(m, _Mixed)), None)
    table = eqn.inputs[0]
    table_ok = _is_float(table) and not (isinstance(table, Var) and table in tainted)
    is_index = (name == "gather" and dep == [1]) or (name == "dynamic_slice" and 0 not in dep)
    boolean = name == "convert_element_type" and jnp.issubdtype(table.dtype, jnp.bool_)
    value = eqn.outputs[0]
    layers = [j for j in uses.get(value, []) if _weight_of(eqns[j], value, tainted) is not None]
    if not ((is_index and table_ok) or (boolean and layers)):
        if is_index:
            return f"{eqn.describe()} (its table depends on an explained input)"
        if name == "convert_element_type":
            return f"{eqn.describe()} (used as {'a mask' if boolean else 'a number'})"
        if lookup(name) is not None and lookup(name).kind == PrimitiveKind.CONTROL:
            return f"{eqn.describe()} (lookups inside scan/cond bodies are not supported)"
        return eqn.describe()
    if mixed is not None:
        return f"{eqn.describe()}, indexed by values that are not per token ({mixed.why})"
    if len({m.leaf for m in maps}) != 1:
        return f"{eqn.describe()} is indexed by several integer inputs at once"
    if name == "gather":
        where = _gathered(eqn, maps[0])
        return Lookup(where.leaf, value, "gather", eqn.describe(), _gather_features(eqn), where)
    if name == "dynamic_slice":
        where = _sliced(eqn, dep, maps)
        sizes = eqn.params["slice_sizes"]
        features = tuple(d for d, n in enumerate(sizes) if n != 1 or d + 1 not in dep)
        return Lookup(where.leaf, value, "dynamic_slice", eqn.describe(), features, where)
    products = {j: _one_hot_product(eqns[j], value, maps[0], tainted) for j in uses[value]}
    if all(lk is not None for lk in products.values()):
        return products  # type: ignore[return-value]
    where = maps[0]  # a 0/1 value (multi-hot) whose entries are tokens of their own
    return Lookup(where.leaf, value, "indicator", eqn.describe(), tuple(sorted(where.repeated)),
                  where)  # fmt: skip


def _weight_of(eqn: Eqn, value: Var, tainted: set[Var]) -> int | None:
    """The operand position of the weight when ``value`` is the input of a dense/conv layer
    whose weight does not depend on an explained input; else None."""
    if eqn.name not in LAYER_PRIMITIVES or len(eqn.inputs) < 2:
        return None
    lhs, rhs = eqn.inputs[:2]
    if (lhs is value) == (rhs is value):
        return None
    k = 1 if lhs is value else 0
    weight = eqn.inputs[k]
    return None if isinstance(weight, Var) and weight in tainted else k


def _one_hot_product(
    eqn: Eqn, value: Var, where: PositionMap, tainted: set[Var]
) -> Lookup | None:
    """``one_hot(ids) @ E`` as a lookup at the product, when every row of the one-hot that the
    matmul contracts belongs to one token (the map repeats along the contracted axes); then
    each entry of the product is a row of ``E``, as for a gather. None otherwise."""
    k = _weight_of(eqn, value, tainted)
    if eqn.name != "dot_general" or k is None:
        return None
    j = 1 - k  # the one-hot's operand position
    (contract, batch) = eqn.params["dimension_numbers"]
    own_contract, own_batch = set(contract[j]), list(batch[j])
    if not own_contract <= where.repeated:
        return None
    ndim = len(value.shape)
    free = [d for d in range(ndim) if d not in own_contract and d not in own_batch]
    kept = [d for d in range(ndim) if d not in own_contract]  # the axes left after indexing
    perm = tuple(kept.index(d) for d in [*own_batch, *free])
    out_shape = eqn.outputs[0].shape
    nb = len(own_batch)
    lhs_free = len(eqn.inputs[0].shape) - len(contract[0]) - nb
    start = nb if j == 0 else nb + lhs_free
    dims = (*range(nb), *range(start, start + len(free)))
    features = tuple(d for d in range(len(out_shape)) if d not in dims)
    inner = where.apply

    def apply(p: Array, env: Env) -> Array:
        y = inner(p, env)
        y = y[tuple(0 if d in own_contract else slice(None) for d in range(ndim))]
        return lax.broadcast_in_dim(jnp.transpose(y, perm), out_shape, dims)

    order = [*own_batch, *free]
    repeated = set(features) | {dims[n] for n, d in enumerate(order) if d in where.repeated}
    key = ("one_hot", where.key, repr(eqn.params["dimension_numbers"]), j)
    product = PositionMap(where.leaf, where.tokens, key, out_shape, frozenset(repeated), apply)
    return Lookup(where.leaf, eqn.outputs[0], "one_hot", eqn.describe(), features, product)


def _gather_features(eqn: Eqn) -> tuple[int, ...]:
    """A gather's feature axes: its slice (offset) axes, except indexed axes of size 1."""
    dn = eqn.params["dimension_numbers"]
    sizes = eqn.params["slice_sizes"]
    skipped = set(dn.collapsed_slice_dims) | set(getattr(dn, "operand_batching_dims", ()))
    operand_dims = [d for d in range(len(sizes)) if d not in skipped]
    indexed = set(dn.start_index_map)
    return tuple(o for o, d in zip(sorted(dn.offset_dims), operand_dims, strict=True)
                 if not (d in indexed and sizes[d] == 1))  # fmt: skip
