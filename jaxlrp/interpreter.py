"""The interpreter: re-evaluate a traced program with LRP rules as the backward pass.

Design choice: jaxlrp propagates the **modified gradient** ``c = R / x`` rather than the
relevance ``R`` itself. In that form

* the plain VJP of every linear structural op (reshape, transpose, pad, concatenate, sum and
  average pooling, residual adds, multiplication by constants) *is* the LRP-0 redistribution
  ``R_i = x_i / z · R_z``, so those ops need no rule and cost exactly what a gradient costs;
* ReLU's gradient is the ``Pass`` rule and max pooling's is winner-take-all;
* only layers (dense/conv: ε, γ, αβ, ...), other activations (``Pass`` for GELU, SiLU, tanh...),
  sums that ask for a stabilized ``Norm``, and products of activations get a ``jax.custom_vjp``.

Each such node converts at its boundary: ``R_out = out ⊙ c_out``, applies its rule, and returns
``c_in = R_in / in``. Layer rules return ``R_in = a ⊙ times_input + free`` so that the usual
rules (ε, γ, αβ, z⁺) never divide by ``a``. The ``free`` part (z^B, w², flat: relevance that is
not a multiple of the input, e.g. at black pixels) is returned exactly through a *tap*: a zero
array added alongside the explained input and carried through data-movement ops to the layers it
feeds, whose cotangent is that relevance. At the explained input ``R = x ⊙ c_x + c_tap``.

A prototype of this form matched a float64 reference to 1e-7 and cost 1.03× a gradient.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from jaxlrp.canonize import fold_constants
from jaxlrp.errors import RuleError
from jaxlrp.graph import (
    _TAP_STRUCTURAL,
    LayerSpec,
    NodeSpec,
    Plan,
    _weight_scale_axes,
    analyze,
)
from jaxlrp.rules.base import LayerContext, LayerRule, safe_divide, unbroadcast
from jaxlrp.rules.nodes import NodeRule
from jaxlrp.tracing import Const, Eqn, Var, program_from_jaxpr

Array = Any


class RuleSource:
    """What the interpreter asks the composite: a rule per layer and per node kind."""

    def layer_rule(self, info: Any) -> LayerRule:  # pragma: no cover - interface
        raise NotImplementedError

    def node_rule(self, kind: str) -> NodeRule:  # pragma: no cover - interface
        raise NotImplementedError


def _bind(eqn: Eqn, values: Sequence[Array]) -> list[Array]:
    out = eqn.primitive.bind(*values, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


class NodeInfo:
    """Details a node rule may use.

    Attributes:
      primitive: the primitive's name (``"div"``, ``"reduce_max"``, ...).
      routes: the op routes its input (max, select), so operands share relevance by the gradient.
      sum_fn: for max nodes, the matching sum (proportional max pooling), else None.
      name_stack: the Flax/JAX name stack (module) the equation came from.
      description: primitive, operand and result shapes and module, for error messages.
      gate: for gate nodes (``x ⊙ σ(·)``), the position of the gate among the active inputs.
    """

    def __init__(self, eqn: Eqn, spec: NodeSpec, sum_fn: Callable | None):
        self.primitive = eqn.name
        self.routes = spec.routes
        self.sum_fn = sum_fn
        self.name_stack = eqn.name_stack
        self.description = eqn.describe()
        self.gate = spec.gate


def _sum_twin(eqn: Eqn, spec: NodeSpec) -> Callable | None:
    twin = spec.entry.sum_twin if spec.entry is not None else None
    if twin == "reduce_sum":
        axes = eqn.params["axes"]
        return lambda x: jnp.sum(x, axis=axes)
    if twin == "reduce_window_sum":
        p = eqn.params
        return lambda x: lax.reduce_window(
            x, np.zeros((), x.dtype), lax.add, p["window_dimensions"], p["window_strides"],
            p["padding"], p["base_dilation"], p["window_dilation"]
        )
    return None


def _node_call(
    eqn: Eqn,
    values: list[Array],
    spec: NodeSpec,
    rule: NodeRule,
    post: Sequence[tuple[Eqn, list[Array | None]]] = (),
) -> list[Array]:
    """Evaluate one node equation (and the equations in ``post``) with its rule as backward.

    ``post`` lists ``(eqn, operand values)`` applied in order; an operand given as None is a value
    computed inside the node (an active input of ``eqn`` or an output of an earlier equation),
    the others are constants. The node's output is the last equation's. The rule's cotangents
    are checked and adapted by :func:`_fit_cotangents`.
    """
    act = spec.active_inputs
    info = NodeInfo(eqn, spec, _sum_twin(eqn, spec))

    def full(*vals: Array) -> Array:
        local: dict[Var, Array] = {eqn.inputs[k]: vals[k] for k in act}
        out = _bind(eqn, vals)[0]
        local[eqn.outputs[0]] = out
        for post_eqn, operands in post:
            merged = [local[x] if v is None else v
                      for x, v in zip(post_eqn.inputs, operands, strict=True)]  # fmt: skip
            out = _bind(post_eqn, merged)[0]
            local[post_eqn.outputs[0]] = out
        return out

    @jax.custom_vjp
    def node(*vals: Array) -> Array:
        return full(*vals)

    def fwd(*vals: Array) -> tuple[Array, Any]:
        out = full(*vals)
        return out, (vals, out)

    def bwd(res: Any, cotangent: Array) -> tuple[Any, ...]:
        vals, out = res

        def fn(*active_vals: Array) -> Array:
            merged = list(vals)
            for k, v in zip(act, active_vals, strict=True):
                merged[k] = v
            return full(*merged)

        inputs = [vals[k] for k in act]
        try:
            cts = rule.backward(fn, inputs, out, cotangent, info)
        except RuleError as error:
            raise RuleError(f"{rule!r} failed on {info.description}: {error}") from error
        result: list[Any] = [None] * len(vals)
        for k, c in zip(act, _fit_cotangents(rule, info, inputs, out, cts), strict=True):
            result[k] = c
        return tuple(result)

    node.defvjp(fwd, bwd)
    return [node(*values)]


def _fit_cotangents(
    rule: NodeRule, info: NodeInfo, inputs: Sequence[Array], out: Array, cts: Any
) -> list[Any]:
    """A node rule's cotangents as JAX needs them: one per active input, of its shape and dtype.

    A cotangent of a shape the input was broadcast to (typically the output's, for an operand of
    an implicitly broadcasting element-wise op) is summed over the broadcast axes with
    :func:`~jaxlrp.rules.unbroadcast`: the input is constant along them, so this sums its
    relevance. Any other mismatch raises :class:`RuleError` naming the rule and the node.
    """
    cts = list(cts) if cts is not None else []
    where = f"{rule!r} on {info.description}"
    if len(cts) != len(inputs):
        raise RuleError(
            f"{where} returned {len(cts)} cotangent(s) for {len(inputs)} active operand(s); a "
            "node rule returns one cotangent per input it receives."
        )
    fitted: list[Any] = []
    for position, (x, c) in enumerate(zip(inputs, cts, strict=True)):
        if c is None:
            fitted.append(None)
            continue
        c = jnp.asarray(c)
        if c.shape != x.shape:
            try:
                c = unbroadcast(c, x.shape)
            except RuleError:
                raise RuleError(
                    f"{where} returned a cotangent of shape {c.shape} for active operand "
                    f"{position} of shape {x.shape} (output shape {out.shape}); a node rule "
                    "returns cotangents of each operand's shape, or of a shape the operand "
                    "broadcasts to (summed over the broadcast axes)."
                ) from None
        fitted.append(c.astype(x.dtype))
    return fitted


def _fold(layer: LayerSpec, read: Callable[[Any], Array]) -> tuple[Any, Any]:
    """The unit's folded steps as ``z = S(α ⊙ f(a; W)) + β``: ``α`` in the linear op's output
    layout, ``β`` in the unit's output layout (see :func:`jaxlrp.canonize.fold_constants`)."""
    return fold_constants(layer.folds, read)


def _scale_weight(layer: LayerSpec, w: Array, alpha: Any, z_shape: tuple[int, ...]) -> Array:
    """``W' = α W``: the per-output multiplier moved onto the weight's output axes."""
    if alpha is None:
        return w
    alpha = jnp.asarray(alpha, w.dtype)
    if alpha.ndim == 0:
        return w * alpha
    pairs = _weight_scale_axes(layer, alpha.shape, z_shape)
    assert pairs is not None  # checked when the fold was accepted
    pairs = sorted(pairs)
    out_axes = [o for o, _ in pairs]
    w_axes = [d for _, d in pairs]
    squeezed = jnp.squeeze(alpha, axis=tuple(a for a in range(alpha.ndim) if a not in out_axes))
    order = np.argsort(w_axes)
    moved = jnp.transpose(squeezed, order)
    shape = [1] * w.ndim
    for k, d in enumerate(sorted(w_axes)):
        shape[d] = moved.shape[k]
    return w * moved.reshape(shape)


def _layer_call(
    layer: LayerSpec,
    read: Callable[[Any], Array],
    rule: LayerRule,
    tap: Array | None,
    batched: bool,
) -> Array:
    """Evaluate a layer unit with its LRP rule as backward.

    The unit is ``z = S(f(a; W')) + b``: the linear op ``f`` (``a ⊙ s`` for an affine layer), the
    data movement ``S`` it was followed by, the weights ``W'`` with the multipliers folded in and
    the bias ``b`` (see ``canonize.py``). The rule sees ``apply(a, w) = S(f(a; w))``.
    """
    eqn = layer.eqn
    k = layer.active_operand
    a = read(layer.input)
    alpha, beta = _fold(layer, read)
    if layer.affine:
        w = jnp.ones((), a.dtype) if alpha is None else jnp.asarray(alpha, a.dtype)
    else:
        w = _scale_weight(layer, read(eqn.inputs[1 - k]), alpha, layer.linear_shape)
    out_dtype = layer.output.dtype
    b = jnp.zeros((), out_dtype) if beta is None else jnp.asarray(beta, out_dtype)
    moves = [f.eqn for f in layer.folds if f.moves]

    def apply(a_: Array, w_: Array) -> Array:
        if layer.affine:
            out = a_ * w_
        else:
            operands = [a_, w_] if k == 0 else [w_, a_]
            out = eqn.primitive.bind(*operands, **eqn.params)
        for move in moves:
            out = _bind(move, [out])[0]
        return out

    @jax.custom_vjp
    def unit(a_: Array, w_: Array, b_: Array, tap_: Array | None) -> Array:
        return apply(a_, w_) + b_

    def fwd(a_, w_, b_, tap_):
        z = apply(a_, w_) + b_
        return z, (a_, w_, b_, z)

    def bwd(res, cotangent):
        a_, w_, b_, z = res
        ctx = LayerContext(
            apply=apply, a=a_, w=w_, b=b_, z=z, cotangent=cotangent,
            input_nonneg=layer.input_nonneg, batched=batched, info=layer.info,
        )
        relevance = rule(ctx, z * cotangent)
        c_a = relevance.times_input
        if c_a is None:
            c_a = jnp.zeros_like(a_)
        c_a = c_a.astype(a_.dtype)
        c_tap = None
        if relevance.free is not None:
            if tap is not None:
                c_tap = relevance.free.astype(a_.dtype)
            else:
                c_a = c_a + safe_divide(relevance.free, a_).astype(a_.dtype)
        if tap is not None and c_tap is None:
            c_tap = jnp.zeros_like(a_)
        return c_a, None, None, c_tap

    unit.defvjp(fwd, bwd)
    return unit(a, w, b, tap)


UNPROBED_KINDS = frozenset({"plain", "structural", "layer"})
"""Node kinds that ``evaluate``'s ``probe`` skips: no relevance (plain), exact data movement
(structural), or equations that are part of a layer unit (layer)."""


def evaluate(
    plan: Plan,
    rules: RuleSource,
    args: Sequence[Array],
    taps: dict[Var, Array] | None = None,
    batched: bool = False,
    probe: Callable[[tuple, Array], Array] | None = None,
) -> list[Array]:
    """Run ``plan.program`` on ``args`` with LRP rules installed as custom VJPs.

    Args:
      plan: the analysed program.
      rules: the composite deciding the rule of each layer and node kind.
      args: values of the program inputs.
      taps: zero arrays keyed by program input, whose cotangents receive the relevance that
        first-layer rules give independently of the input value (see the module docstring).
      batched: whether axis 0 is a batch axis (for rules with per-example statistics).
      probe: ``(site, value) -> value``, called on every layer's and node's output
        (``("out", i)``), relevance-carrying operand (``("in", i, k)``) and input tap
        (``("tap", i)``), ``i`` being the layer's anchor or the node's equation index; the
        ledger adds zero arrays there to read the relevance passing through (``ledger.py``).

    Returns:
      The program outputs.
    """
    program = plan.program
    if probe is None:
        def probe(site: tuple, value: Array) -> Array:
            return value

    env: dict[Var, Array] = dict(zip(program.inputs, args, strict=True))
    tap_env: dict[Var, Array] = dict(taps or {})

    def read(x: Any) -> Array:
        return x.value if isinstance(x, Const) else env[x]

    for i, eqn in enumerate(program.eqns):
        if i in plan.skip:
            continue
        layer = plan.layers.get(i)
        if layer is not None:
            tap = tap_env.get(layer.input)
            if tap is not None:
                tap = probe(("tap", i), tap)
            rule = rules.layer_rule(layer.info)

            def read_layer(x: Any, i: int = i, layer: LayerSpec = layer) -> Array:
                value = read(x)
                return probe(("in", i, 0), value) if x is layer.input else value

            env[layer.output] = probe(("out", i), _layer_call(layer, read_layer, rule, tap,
                                                              batched))  # fmt: skip
            continue
        spec = plan.nodes.get(i)
        if spec is not None and spec.post:
            node_eqn = program.eqns[spec.first]
            post = []
            inside = {node_eqn.inputs[k] for k in spec.active_inputs} | {node_eqn.outputs[0]}
            for j in spec.post:
                post_eqn = program.eqns[j]
                operands = [None if isinstance(x, Var) and x in inside else read(x)
                            for x in post_eqn.inputs]  # fmt: skip
                post.append((post_eqn, operands))
                inside.add(post_eqn.outputs[0])
            values = [read(x) for x in node_eqn.inputs]
            for k in spec.active_inputs:
                values[k] = probe(("in", i, k), values[k])
            rule = rules.node_rule(spec.kind)
            (out,) = _node_call(node_eqn, values, spec, rule, post)
            env[eqn.outputs[0]] = probe(("out", i), out)
            continue
        values = [read(x) for x in eqn.inputs]
        probed = spec is not None and spec.kind not in UNPROBED_KINDS
        if probed:
            for k in spec.active_inputs:
                values[k] = probe(("in", i, k), values[k])
        if spec is None or spec.kind in ("plain", "structural", "block", "layer"):
            outs = _bind(eqn, values)
            if spec is not None and spec.kind == "structural":
                _propagate_tap(eqn, values, tap_env)
        elif spec.kind == "control":
            outs = _control(eqn, values, spec, plan, rules, batched)
        elif len(eqn.outputs) != 1:
            outs = _bind(eqn, values)
        else:
            outs = _node_call(eqn, values, spec, rules.node_rule(spec.kind))
        if probed and len(outs) == 1:
            outs = [probe(("out", i), outs[0])]
        for v, o in zip(eqn.outputs, outs, strict=True):
            env[v] = o
    return [read(x) for x in program.outputs]


def _propagate_tap(eqn: Eqn, values: list[Array], tap_env: dict[Var, Array]) -> None:
    if eqn.name not in _TAP_STRUCTURAL or not isinstance(eqn.inputs[0], Var):
        return
    tap = tap_env.get(eqn.inputs[0])
    if tap is None:
        return
    rest = [jnp.zeros_like(v) for v in values[1:]]  # pad value 0
    tap_env[eqn.outputs[0]] = _bind(eqn, [tap, *rest])[0]


def _scan_partition(ft_in: Any) -> tuple[int, int]:
    """(number of constants, number of carries) from JAX 0.11's scan operand tree ``ft_in``,
    a tree ``(consts, carry, xs)`` of placeholder leaves, e.g. ``((None,), (None,), ())``."""
    try:
        parts = ast.literal_eval(str(ft_in))
    except (ValueError, SyntaxError) as error:
        raise NotImplementedError(
            f"jaxlrp does not understand this JAX version's scan parameters (ft_in={ft_in!r})"
        ) from error
    return len(jax.tree_util.tree_leaves(parts[0], is_leaf=lambda x: x is None)), len(
        jax.tree_util.tree_leaves(parts[1], is_leaf=lambda x: x is None)
    )


def _sub_plan(closed: Any, active: list[bool], name_stack: str) -> Plan:
    return analyze(program_from_jaxpr(closed, prefix=name_stack), active)


def _control(
    eqn: Eqn, values: list[Array], spec: NodeSpec, plan: Plan, rules: RuleSource, batched: bool
) -> list[Array]:
    """``scan`` and ``cond``: re-interpret the bodies with the same rules."""
    is_active = [isinstance(x, Var) and x in plan.active for x in eqn.inputs]
    if eqn.name == "cond":
        index, ops = values[0], values[1:]
        plans = [_sub_plan(br, is_active[1:], eqn.name_stack) for br in eqn.params["branches"]]
        branches = [
            (lambda *o, p=p: tuple(evaluate(p, rules, list(o), batched=batched))) for p in plans
        ]
        return list(lax.switch(index, branches, *ops))
    if eqn.name == "scan":
        p = eqn.params
        if "num_carry" in p:
            nc, nk = p.get("num_consts", 0), p["num_carry"]
        else:  # JAX >= 0.11: "ft_in" partitions the operands into (consts, carry, xs)
            nc, nk = _scan_partition(p["ft_in"])
        consts, init, xs = values[:nc], values[nc : nc + nk], values[nc + nk :]
        active = list(is_active)
        body_jaxpr = p["jaxpr"]
        if not isinstance(body_jaxpr, jcore.ClosedJaxpr):
            body_jaxpr = jcore.ClosedJaxpr(body_jaxpr, ())
        body = program_from_jaxpr(body_jaxpr, prefix=eqn.name_stack)
        while True:  # carries become active once any iteration makes them so
            sub = analyze(body, active)
            carry_out = [isinstance(x, Var) and x in sub.active for x in body.outputs[:nk]]
            updated = active[:nc] + [
                a or c for a, c in zip(active[nc : nc + nk], carry_out, strict=True)
            ] + active[nc + nk :]
            if updated == active:
                break
            active = updated

        def step(carry: Any, x: Any) -> tuple[Any, Any]:
            outs = evaluate(sub, rules, [*consts, *carry, *x], batched=batched)
            return tuple(outs[:nk]), tuple(outs[nk:])

        carry, ys = lax.scan(
            step, tuple(init), tuple(xs), length=p["length"], reverse=p.get("reverse", False),
            unroll=p.get("unroll", 1),
        )
        return [*carry, *ys]
    return _bind(eqn, values)
