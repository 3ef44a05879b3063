"""The public transformations: :func:`lrp` (in the style of ``jax.vjp``) and :func:`explain`."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp import compiled, validation
from jaxlrp.composites import Composite
from jaxlrp.embeddings import TokenInputs, cut_at_lookups
from jaxlrp.graph import analyze
from jaxlrp.interpreter import evaluate
from jaxlrp.plan import Plan
from jaxlrp.record import build_recorder, selector_key
from jaxlrp.rules.base import concrete, safe_divide
from jaxlrp.tracing import trace

Array = Any
ArgNums = int | Sequence[int]


def _path_str(path: Sequence[Any]) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


@functools.lru_cache(maxsize=64)
def _nnx_call(graphdef: Any) -> Callable:
    """A stable function ``(state, *args) -> module(*args)`` per nnx graph definition."""
    from flax import nnx

    def call(state: Any, *a: Any) -> Any:
        return nnx.merge(graphdef, state)(*a)

    return call


def _as_function(fn: Any, args: tuple[Any, ...], argnums: ArgNums) -> tuple[Callable, tuple, Any]:
    """Accept a Flax nnx module (called directly) as well as a plain function."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        nnx = None
    if nnx is not None and isinstance(fn, nnx.Module):
        graphdef, state = nnx.split(fn)

        def shift(n: int) -> int:
            return n + 1 if n >= 0 else n

        argnums = shift(argnums) if isinstance(argnums, int) else tuple(map(shift, argnums))
        return _nnx_call(graphdef), (state, *args), argnums
    return fn, args, argnums


def _normalize_argnums(argnums: ArgNums, n: int) -> tuple[tuple[int, ...], bool]:
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    out = []
    for a in nums:
        if not -n <= a < n:
            raise ValueError(f"argnums={argnums} is out of range for {n} positional arguments")
        out.append(a % n)
    return tuple(out), single


@dataclasses.dataclass
class Traced:
    """A traced and analysed function call (internal; also used by :func:`rule_table` and
    :func:`~jaxlrp.ledger`).

    The program's inputs are the argument leaves, followed, when integer arguments are explained,
    by the values they look up (see :mod:`jaxlrp.embeddings`); ``active``/``active_index`` refer
    to these program inputs.
    """

    plan: Plan
    flat_args: list[Array]
    treedef: Any
    active: list[bool]
    active_index: list[int]
    argnums: tuple[int, ...]
    single: bool
    out_tree: Any
    tokens: TokenInputs | None = None

    def inputs(self) -> tuple[list[Array], Any]:
        """The values of all program inputs, and what :meth:`leaf_relevance` needs to carry
        the lookups' relevance back to the token ids."""
        if self.tokens is None:
            return list(self.flat_args), None
        looked_up, env = self.tokens.values(self.flat_args)
        return [*self.flat_args, *looked_up], env

    def leaf_relevance(
        self, relevance: Sequence[Array], env: Any, keep_features: bool = False
    ) -> dict[int, Array]:
        """Per explained argument leaf, its relevance, from the relevance of each explained
        program input (``active_index`` order): float leaves as they are, integer leaves as the
        sum of their lookups' relevance at each token."""
        n = len(self.flat_args)
        out: dict[int, Array] = {}
        looked_up = []
        for k, r in zip(self.active_index, relevance, strict=True):
            if k < n:
                out[k] = r
            else:
                looked_up.append(r)
        if self.tokens is not None:
            out.update(self.tokens.to_leaves(looked_up, env, keep_features))
        return out


def _is_token_dtype(dtype: Any) -> bool:
    return jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)


def _trace(fn: Callable, args: tuple, argnums: ArgNums) -> Traced:
    nums, single = _normalize_argnums(argnums, len(args))
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(args)
    flat_args = [leaf for _, leaf in leaves_with_paths]
    paths = [_path_str(p) for p, _ in leaves_with_paths]
    active = [False] * len(flat_args)
    explained: list[int] = []
    integer: dict[int, str] = {}  # explained integer/boolean leaves -> their name in messages
    for (path, leaf), k in zip(leaves_with_paths, range(len(flat_args)), strict=True):
        position = path[0].idx if hasattr(path[0], "idx") else None
        if position in nums:
            dtype = jnp.result_type(leaf)
            if _is_token_dtype(dtype):
                integer[k] = f"argument {position} (path '{paths[k]}')"
            elif not jnp.issubdtype(dtype, jnp.floating):
                raise ValueError(
                    f"jaxlrp explains floating-point inputs only (and integer token ids through "
                    f"their lookups); argument {position} (path '{paths[k]}') has dtype {dtype}. "
                    "Convert it, e.g. x.astype(jnp.float32)."
                )
            else:
                active[k] = True
            explained.append(k)
    if not explained:
        raise ValueError(f"argnums={argnums} selects no array to explain")
    program, out_tree = trace(fn, flat_args, treedef)
    validation.check_output_tree(out_tree, program.outputs)
    validation.check_program(program, explained)
    tokens = None
    if integer:
        try:
            tokens = cut_at_lookups(program, list(integer), explained, integer)
        except ValueError as err:
            validation.check_integer_inputs(err, integer, flat_args)
            raise
        program = tokens.program
        active = [*active, *(True for _ in tokens.lookups)]
        paths = [*paths, *tokens.input_names(paths)]
    plan = analyze(program, active, paths)
    index = [k for k, a in enumerate(active) if a]
    return Traced(plan, flat_args, treedef, active, index, nums, single, out_tree, tokens)


def lrp(
    fn: Callable[..., Array],
    composite: Composite | None = None,
    argnums: ArgNums = -1,
    *,
    batched: bool | None = None,
    times_input: bool = True,
    keep_features: bool = False,
    record: Any = None,
    record_params: Any = None,
) -> Callable[..., tuple[Array, Callable[[Array], Any]]]:
    """Transform ``fn`` into a function returning its output and a relevance pull-back.

    Like :func:`jax.vjp`, but the backward pass is layer-wise relevance propagation::

        out, relevance_fn = jaxlrp.lrp(model.apply, composite)(variables, x)
        r_x = relevance_fn(out * jax.nn.one_hot(target, out.shape[-1]))

    ``relevance_fn(R_out)`` takes relevance of the output's shape (any values: start from any
    output relevance) and returns the relevance of ``args[argnums]`` (a tuple for a tuple of
    ``argnums``), with each argument's pytree structure.

    ``relevance_fn(R_out, cotangent=c)`` starts the backward pass from the modified gradient
    ``c`` (of the output's shape) instead of ``R_out / out``: for ``R_out = out ⊙ onehot`` pass
    ``cotangent=onehot``, which stays exact where the target output is zero (``R_out / out``
    would be 0/0 there). This is what :func:`explain` does (see :func:`output_relevance`);
    ``R_out`` is then used only for its shape.

    An integer (or boolean) argument, such as token ids, is explained at its *lookups*: the
    float values the function looks up with it (``nn.Embed``, ``E[ids]``, ``jnp.take``, a
    one-hot matmul; see :mod:`jaxlrp.embeddings`). Their relevance ``R = v ⊙ c + tap`` is
    summed over the lookup's feature axes and over all lookups of the argument, giving one
    value per token (the argument's shape).

    Args:
      fn: a function of arrays/pytrees returning one array, or a Flax nnx module.
      composite: the rules (``Composite(default=rules.Epsilon())`` when None); also a preset
        name (``"epsilon-plus"``: :func:`jaxlrp.composites.get`) or one layer rule, used for
        every layer (``rules.Epsilon(0.1)``). Mistakes are refused with a hint (see
        :mod:`jaxlrp.validation`).
      argnums: which positional argument(s) to explain (default: the last).
      batched: whether axis 0 is a batch axis (only rules with per-example statistics, such as
        ``RelativeEpsilon``, use it); by default, when the output has two or more dimensions.
      times_input: if False, ``relevance_fn`` returns the modified gradient ``c = R / x`` at the
        input instead of ``R = x ⊙ c`` (with gradient-type composites such as
        ``composites.GuidedBackprop()`` this is the guided gradient itself). Relevance that
        first-layer rules assign independently of ``x`` (z^B, flat, w²) is then divided by ``x``.
        For token ids it is the modified gradient at the looked-up values, reduced the same way.
      keep_features: for integer arguments, keep the lookups' feature axes: relevance of shape
        ``ids.shape + (d,)`` for an embedding of width ``d`` (for a one-hot lookup, the
        vocabulary axis), whose sum over the features is the default result.
      record: also return the relevance at intermediate units, from the same backward pass:
        ``"all"``, a module-path glob (``"encoder/layer_*/attention"``, ``"**:out"``), a layer
        index or :class:`LayerInfo`, or a list of these (see :mod:`jaxlrp.record`; Captum's
        ``LayerLRP`` gives the same for one layer).
      record_params: also return the relevance of layers' weights, ``R_w = Σ_batch a ⊙ w ⊙ s``
        with ``s = R_out / stab(z)`` (ε-rule family only): True, or the selectors of ``record``.

    Returns:
      A function ``(*args) -> (out, relevance_fn)``. With ``record`` or ``record_params``,
      ``relevance_fn`` returns a :class:`~jaxlrp.record.Recorded` ``(input, layers, params)``:
      ``input`` is the usual result, ``layers`` maps ``"<unit>:out"``/``"<unit>:in"`` keys to
      relevance arrays, ``params`` maps layer names to weight relevance.

    Raises:
      ValueError: for an integer argument that indexes no float lookup (naming it and what its
        values reach instead); for a ``record`` selector matching nothing (listing the available
        names).
    """
    composite = validation.check_composite(composite)
    composite = composite if composite is not None else Composite(default=None)

    def forward(*args: Any, **fn_kwargs: Any) -> tuple[Array, Callable[[Array], Any]]:
        validation.check_call(fn, args, fn_kwargs, argnums, "lrp")
        call, call_args, nums = _as_function(fn, args, argnums)
        traced = _trace(call, call_args, nums)
        plan = traced.plan
        out_aval = plan.program.outputs[0]
        is_batched = batched if batched is not None else len(out_aval.shape) >= 2
        inputs, env = traced.inputs()
        active_leaves = [inputs[k] for k in traced.active_index]
        taps = [jnp.zeros_like(x) for x in active_leaves]
        active_vars = [plan.program.inputs[k] for k in traced.active_index]
        recorder = build_recorder(plan, composite, record, record_params)

        def run(leaves: list[Array], tap_values: list[Array], probes: Any = None) -> Any:
            values = list(inputs)
            for k, v in zip(traced.active_index, leaves, strict=True):
                values[k] = v
            tap_env = dict(zip(active_vars, tap_values, strict=True))
            if probes is None:
                (out,) = evaluate(plan, composite, values, tap_env, is_batched)
                return out
            seen: dict = {}
            (out,) = evaluate(plan, composite, values, tap_env, is_batched,
                              probe=recorder.probe(probes, seen),
                              record_weights=recorder.weights)  # fmt: skip
            return out, seen

        if recorder is None:
            out, pullback = jax.vjp(run, active_leaves, taps)
        else:
            out, pullback, seen = jax.vjp(run, active_leaves, taps, recorder.zeros(),
                                          has_aux=True)  # fmt: skip

        def relevance_fn(relevance: Array, *, cotangent: Array | None = None) -> Any:
            relevance = jnp.asarray(relevance, out.dtype)
            if relevance.shape != out.shape:
                raise ValueError(
                    f"output relevance has shape {relevance.shape}, but the output has shape "
                    f"{out.shape}"
                )
            c_out = safe_divide(relevance, out) if cotangent is None else cotangent
            c_leaves, c_taps, *c_probes = pullback(c_out)
            if times_input:
                rel = [x * c + t for x, c, t in zip(active_leaves, c_leaves, c_taps, strict=True)]
            else:
                rel = [
                    c + safe_divide(t, x) for x, c, t in zip(active_leaves, c_leaves, c_taps,
                                                             strict=True)
                ]
            result = _unflatten(traced, traced.leaf_relevance(rel, env, keep_features))
            if recorder is None:
                return result
            return recorder.collect(seen, c_probes[0], result)

        return out, relevance_fn

    return forward


def _unflatten(traced: Traced, by_leaf: dict[int, Array]) -> Any:
    """The relevance per explained leaf as the pytrees of ``args[argnums]``."""
    flat = [by_leaf.get(k, None) for k in range(len(traced.flat_args))]
    tree = jax.tree_util.tree_unflatten(traced.treedef, flat)
    picked = tuple(tree[n] for n in traced.argnums)
    return picked[0] if traced.single else picked


def _check_target(shape: tuple[int, ...], target: Any) -> bool:
    """Validate ``target`` against an output of ``shape``; True for class indices."""
    classes = shape[-1] if shape else 0
    target_arr = jnp.asarray(target)
    if jnp.issubdtype(target_arr.dtype, jnp.integer) or jnp.issubdtype(
        target_arr.dtype, jnp.bool_
    ):
        if not shape:
            raise ValueError("an int target needs an output with a class axis, got a scalar")
        if target_arr.shape not in ((), tuple(shape[:-1])):
            raise ValueError(
                f"target of shape {target_arr.shape} does not fit the output of shape "
                f"{tuple(shape)}: give an int, an int array of shape {tuple(shape[:-1])}, or a "
                f"float array of shape {tuple(shape)} (the output relevance)"
            )
        value = concrete(target_arr)
        if value is not None and ((value < 0).any() or (value >= classes).any()):
            bad = value[(value < 0) | (value >= classes)].ravel()[0]
            raise ValueError(
                f"target index {int(bad)} is out of range for {classes} classes (output shape "
                f"{tuple(shape)})"
            )
        return True
    if target_arr.shape != tuple(shape):
        raise ValueError(
            f"a float target is the output relevance and needs the output's shape "
            f"{tuple(shape)}, got {target_arr.shape}"
        )
    return False


def output_relevance(out: Array, target: Any) -> tuple[Array, Array]:
    """The output relevance ``R_out`` and its cotangent ``R_out / out`` for a ``target``.

    ``target`` is an int (one class for every example), an int array of the batch shape
    ``out.shape[:-1]`` (one class per example), or a float array of ``out``'s shape that *is*
    the output relevance. For class indices, ``R_out = out ⊙ onehot(target)``.

    Raises:
      ValueError: for an index out of ``[0, classes)`` or a target of the wrong shape.
    """
    if _check_target(out.shape, target):
        onehot = jax.nn.one_hot(jnp.asarray(target), out.shape[-1], dtype=out.dtype)
        onehot = jnp.broadcast_to(onehot, out.shape)
        return out * onehot, onehot
    relevance = jnp.asarray(target).astype(out.dtype)
    return relevance, safe_divide(relevance, out)


def _explain(
    fn: Callable[..., Array],
    args: tuple[Any, ...],
    target: Any,
    composite: Composite | None,
    argnums: ArgNums,
    batched: bool | None,
    keep_features: bool = False,
    record: Any = None,
    record_params: Any = None,
) -> Any:
    out, relevance_fn = lrp(fn, composite, argnums, batched=batched, keep_features=keep_features,
                            record=record, record_params=record_params)(*args)  # fmt: skip
    validation.check_output(out.shape, target, batched, args, argnums)
    relevance, cotangent = output_relevance(out, target)
    return relevance_fn(relevance, cotangent=cotangent)


COMPILE_EAGER_CALLS = os.environ.get("JAXLRP_COMPILE_EAGER", "1") != "0"
"""Whether eager ``explain`` calls run through ``jax.jit`` (one XLA compilation per function,
composite and shapes). Set the environment variable ``JAXLRP_COMPILE_EAGER=0`` to run them
op by op instead, which is faster when many composites are tried on one small model (each
primitive is compiled once and reused)."""

_COMPILED = compiled.Cache(maxsize=32)
"""The jitted explainers of eager ``explain`` calls (see :mod:`jaxlrp.compiled`)."""


def _compiled(
    fn: Callable, composite: Any, argnums: ArgNums, batched: bool | None, keep_features: bool,
    record: Any = None, record_params: Any = None,
) -> compiled.Entry:
    """The jitted explainer for (fn, composite): one per function object and composite *value*.

    Eager calls run through ``jax.jit``: one compilation instead of one per primitive.
    """
    nums = argnums if isinstance(argnums, int) else tuple(argnums)
    options = ("explain", nums, batched, keep_features, selector_key(record),
               selector_key(record_params))  # fmt: skip

    def run(args: tuple[Any, ...], target: Any) -> Any:
        return _explain(fn, args, target, composite, argnums, batched, keep_features, record,
                        record_params)  # fmt: skip

    return _COMPILED.get(fn, composite, options, lambda: jax.jit(run))


def _out_shape(entry: compiled.Entry, call: Callable, args: tuple[Any, ...]) -> tuple[int, ...]:
    """The output shape of ``call(*args)``, traced once per argument signature and entry."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    signature = (treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves))
    shape = entry.out_shapes.get(signature)
    if shape is None:
        out = jax.eval_shape(call, *args)
        shape = entry.out_shapes[signature] = validation.output_shape(out)
    return shape


def _is_traced(tree: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def explain(
    fn: Callable[..., Array],
    *args: Any,
    target: Any,
    composite: Composite | None = None,
    argnums: ArgNums = -1,
    batched: bool | None = None,
    keep_features: bool = False,
    record: Any = None,
    record_params: Any = None,
    **fn_kwargs: Any,
) -> Any:
    """Explain ``fn(*args)`` for ``target``: the relevance of ``args[argnums]``.

    The output relevance is the target logit (``R_out = out ⊙ onehot(target)``) and is
    propagated back layer by layer with the composite's rules (Montavon et al., "Layer-Wise
    Relevance Propagation: An Overview", 2019)::

        R = jaxlrp.explain(model.apply, variables, x, target=281,
                           composite=jaxlrp.composites.EpsilonGammaBox(low=-1.0, high=1.0))

    Composes with ``jax.jit`` and ``jax.vmap``. Called eagerly, it compiles the explanation once
    per (function, composite, shapes) with ``jax.jit`` and reuses it.

    Integer arguments (token ids) are explained at the embedding lookups they index: the
    relevance of the looked-up vectors, summed over their features (and over all lookups of the
    ids), one value per token::

        R = jaxlrp.explain(model.apply, variables, token_ids, target=label)  # token_ids.shape

    Args:
      fn: returns logits ``(batch, classes)`` or ``(classes,)``; a Flax linen ``model.apply``,
        any pure JAX function, or a Flax nnx module (called as ``fn(*args)``).
      *args: the arguments of ``fn``.
      target: an int, an int array of batch shape, or a float array of the output's shape that
        is the output relevance.
      composite: the rules (``Composite(default=rules.Epsilon())`` when None); also a preset
        name (``"epsilon-plus"``: :func:`jaxlrp.composites.get`) or one layer rule, used for
        every layer (``rules.Epsilon(0.1)``). Mistakes are refused with a hint (see
        :mod:`jaxlrp.validation`).
      argnums: the argument(s) to explain (default: the last).
      batched: see :func:`lrp`.
      keep_features: for integer arguments, keep the lookups' feature axes (see :func:`lrp`):
        relevance of shape ``token_ids.shape + (d,)``.
      record: also return the relevance at intermediate layers and nodes, from the same
        compiled call (like Captum's ``LayerLRP``): ``"all"``, a module-path glob
        (``"features/*"``, ``"encoder/layer_*/attention"``, ``"**:out"``), a layer index or
        :class:`LayerInfo`, or a list of these (see :mod:`jaxlrp.record` for the key scheme).
      record_params: also return the relevance of the selected dense/conv layers' weights,
        ``R_w[i, j] = Σ_batch a_i w_ij R_j / stab(z_j)`` (ε-rule family only): True for all.

    Returns:
      Relevance with the shape (and pytree structure) of ``args[argnums]``. With ``record`` or
      ``record_params``, a :class:`~jaxlrp.record.Recorded` ``(input, layers, params)``:
      ``input`` is that relevance, ``layers`` maps ``"<unit>:out"``/``"<unit>:in"`` (e.g.
      ``"features/conv_3:out"``) to the relevance there, ``params`` maps layer names to the
      relevance of their weights::

          rec = jaxlrp.explain(model.apply, variables, x, target=3, record="all")
          rec.layers["Dense_1:in"].sum(-1)   # = rec.input.sum(...) with LRP-0, no biases

    Raises:
      ValueError: for a target index out of range, a target of the wrong shape, non-float
        inputs that index no embedding lookup, or argnums out of range. (A target traced by an
        enclosing ``jax.jit`` cannot be range-checked; there an out-of-range index gives zero
        relevance.)
      UsageError: for common mistakes (keyword arguments for ``fn``: bind them with
        ``functools.partial``; a linen module instead of ``model.apply``; a tuple output;
        ``target=None``; ...), naming the fix (see :mod:`jaxlrp.validation`).
      UnsupportedPrimitiveError: for a primitive on the relevance path that jaxlrp cannot
        handle (naming the primitive, its shapes and its module).
    """
    composite = validation.check_explain(fn, args, fn_kwargs, target, composite, argnums)
    if not COMPILE_EAGER_CALLS or _is_traced((args, target)):
        return _explain(fn, args, target, composite, argnums, batched, keep_features, record,
                        record_params)  # fmt: skip
    # validate eagerly (clear errors with concrete values), then run compiled; an nnx module
    # becomes a function of its state (one compiled function per graph definition)
    call, call_args, nums = _as_function(fn, args, argnums)
    _normalize_argnums(nums, len(call_args))
    entry = _compiled(call, composite, nums, batched, keep_features, record, record_params)
    _check_target(_out_shape(entry, call, call_args), target)
    return entry.run(call_args, jnp.asarray(target))
