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

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlrp.canonize import fold_constants, weight_scale_axes
from jaxlrp.errors import RuleError
from jaxlrp.plan import LayerInfo, LayerSpec, NodeInfo, NodeKind, NodeSpec, Plan
from jaxlrp.precision import any_low_precision, at_rule_precision, upcast
from jaxlrp.primitives import has
from jaxlrp.rules.base import LayerContext, LayerRule, safe_divide, unbroadcast
from jaxlrp.rules.nodes import NodeRule
from jaxlrp.tracing import Const, Eqn, Var

Array = Any


class RuleSource:
    """What the interpreter asks the composite: a rule per layer and per node kind."""

    def layer_rule(self, info: LayerInfo) -> LayerRule:  # pragma: no cover - interface
        raise NotImplementedError

    def node_rule(self, kind: NodeKind) -> NodeRule:  # pragma: no cover - interface
        raise NotImplementedError


def _bind(eqn: Eqn, values: Sequence[Array]) -> list[Array]:
    out = eqn.primitive.bind(*values, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


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
    info = spec.info(eqn)
    # the constants of ``post`` are operands of the custom VJP, not closed over: inside a scan
    # body they are tracers of the body, which the backward pass (run in the scan's transpose)
    # must not capture
    post_consts = [v for _, operands in post for v in operands if v is not None]
    n = len(values)

    def full(*vals: Array) -> Array:
        consts = iter(vals[n:])
        vals = vals[:n]
        local: dict[Var, Array] = {eqn.inputs[k]: vals[k] for k in act}
        out = _bind(eqn, vals)[0]
        local[eqn.outputs[0]] = out
        for post_eqn, operands in post:
            merged = [local[x] if v is None else next(consts)
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
        rule_fn, rule_inputs, rule_out, rule_ct = fn, inputs, out, cotangent
        if any_low_precision([*inputs, out]):  # the rule's arithmetic in float32
            rule_fn = at_rule_precision(fn, [x.dtype for x in inputs])
            rule_inputs = [upcast(x) for x in inputs]
            rule_out, rule_ct = upcast(out), upcast(cotangent)
        try:
            cts = rule.backward(rule_fn, rule_inputs, rule_out, rule_ct, info)
        except RuleError as error:
            raise RuleError(f"{rule!r} failed on {info.description}: {error}") from error
        result: list[Any] = [None] * len(vals)
        for k, c in zip(act, _fit_cotangents(rule, info, inputs, out, cts), strict=True):
            result[k] = c
        return tuple(result)

    node.defvjp(fwd, bwd)
    return [node(*values, *post_consts)]


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
    pairs = weight_scale_axes(layer, alpha.shape, z_shape)
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
    probe_weight: Callable[[Array], Array] | None = None,
) -> Array:
    """Evaluate a layer unit with its LRP rule as backward.

    The unit is ``z = S(f(a; W')) + b``: the linear op ``f`` (``a ⊙ s`` for an affine layer), the
    data movement ``S`` it was followed by, the weights ``W'`` with the multipliers folded in and
    the bias ``b`` (see ``canonize.py``). The rule sees ``apply(a, w) = S(f(a; w))``.

    With ``probe_weight`` (recorded parameter relevance, ``record.py``), ``W'`` passes through
    it and the backward pass also returns the weights' modified gradient ``c_w``
    (:func:`jaxlrp.record.weight_cotangent`), so that ``R_w = W' ⊙ c_w``.

    A weight operand the program made by transposing a parameter (``layer.stored_weight``; a
    tied unembedding ``h @ Eᵀ``), neither scaled by a fold nor probed, is used as stored: the
    transpose is in the op's dimension numbers, so that neither the forward product nor the
    backward pass materializes a transposed copy. The rule then sees ``w`` in the stored layout;
    rules use it only through ``apply`` and element-wise (``w⁺``, ``w²``, ones), which a
    transpose commutes with.
    """
    eqn = layer.eqn
    k = layer.active_operand
    a = read(layer.input)
    alpha, beta = _fold(layer, read)
    params = eqn.params
    untransposed = None
    if not layer.affine and alpha is None and probe_weight is None:
        untransposed = layer.stored_weight
    if layer.affine:
        w = jnp.ones((), a.dtype) if alpha is None else jnp.asarray(alpha, a.dtype)
    elif untransposed is not None:
        source, params = untransposed
        w = read(source)
    else:
        w = _scale_weight(layer, read(eqn.inputs[1 - k]), alpha, layer.linear_shape)
        if probe_weight is not None:
            w = probe_weight(w)
    out_dtype = layer.output.dtype
    b = jnp.zeros((), out_dtype) if beta is None else jnp.asarray(beta, out_dtype)
    moves = [f.eqn for f in layer.folds if f.moves]

    def apply(a_: Array, w_: Array) -> Array:
        if layer.affine:
            out = a_ * w_
        else:
            operands = [a_, w_] if k == 0 else [w_, a_]
            out = eqn.primitive.bind(*operands, **params)
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
        rule_apply = apply
        if any_low_precision([a_, w_, z]):  # the rule's arithmetic in float32
            rule_apply = at_rule_precision(apply, [a_.dtype, w_.dtype])
        a_r, w_r, b_r, z_r, ct_r = (upcast(v) for v in (a_, w_, b_, z, cotangent))
        ctx = LayerContext(
            apply=rule_apply, a=a_r, w=w_r, b=b_r, z=z_r, cotangent=ct_r,
            input_nonneg=layer.input_nonneg, batched=batched, info=layer.info,
        )
        relevance = rule(ctx, z_r * ct_r)
        c_w = None
        if probe_weight is not None:
            from jaxlrp.record import weight_cotangent

            c_w = weight_cotangent(rule, ctx, z_r * ct_r).astype(w_.dtype)
        c_a = relevance.times_input
        if c_a is None:
            c_a = jnp.zeros_like(a_r)
        c_tap = None
        if relevance.free is not None:
            if tap is not None:
                c_tap = relevance.free.astype(a_.dtype)
            else:
                c_a = c_a + safe_divide(relevance.free, a_r)
        c_a = c_a.astype(a_.dtype)
        if tap is not None and c_tap is None:
            c_tap = jnp.zeros_like(a_)
        return c_a, c_w, None, c_tap

    unit.defvjp(fwd, bwd)
    return unit(a, w, b, tap)


UNPROBED_KINDS = frozenset({NodeKind.PLAIN, NodeKind.STRUCTURAL, NodeKind.LAYER})
"""Node kinds that ``evaluate``'s ``probe`` skips: no relevance (plain), exact data movement
(structural), or equations that are part of a layer unit (layer)."""


_BOUND_KINDS = frozenset({NodeKind.PLAIN, NodeKind.STRUCTURAL, NodeKind.BLOCK, NodeKind.LAYER})
"""Node kinds evaluated by binding the primitive (their gradient is the exact propagation)."""


def evaluate(
    plan: Plan,
    rules: RuleSource,
    args: Sequence[Array],
    taps: dict[Var, Array] | None = None,
    batched: bool = False,
    probe: Callable[[tuple, Array], Array] | None = None,
    record_weights: frozenset[int] = frozenset(),
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
      record_weights: anchors of the layers whose (folded) weight operand is also probed, at
        ``("weight", i)``, with a backward pass that returns its modified gradient (parameter
        relevance, ``record.py``; ε-rule family only).

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

            probe_w = None
            if i in record_weights:
                def probe_w(w: Array, i: int = i) -> Array:
                    return probe(("weight", i), w)
            env[layer.output] = probe(("out", i), _layer_call(layer, read_layer, rule, tap,
                                                              batched, probe_w))  # fmt: skip
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
        if spec is None or spec.kind in _BOUND_KINDS:
            outs = _bind(eqn, values)
            if spec is not None and spec.kind == NodeKind.STRUCTURAL:
                _propagate_tap(eqn, values, tap_env)
        elif spec.kind == NodeKind.CONTROL:
            taps_in = [tap_env.get(x) if isinstance(x, Var) else None for x in eqn.inputs]
            outs = _control(eqn, values, taps_in, spec, rules, batched)
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
    if not has(eqn.name, "tap") or not isinstance(eqn.inputs[0], Var):
        return
    tap = tap_env.get(eqn.inputs[0])
    if tap is None:
        return
    rest = [jnp.zeros_like(v) for v in values[1:]]  # pad value 0
    tap_env[eqn.outputs[0]] = _bind(eqn, [tap, *rest])[0]


def _control(
    eqn: Eqn,
    values: list[Array],
    taps: list[Array | None],
    spec: NodeSpec,
    rules: RuleSource,
    batched: bool,
) -> list[Array]:
    """``scan`` and ``cond``: evaluate the analysed bodies (``spec.bodies``) with the same rules.

    Input taps (``taps``, per operand) enter the bodies: a scan constant's tap as a constant, a
    scanned input's tap scanned along with it; their cotangents receive the relevance the
    body's first layers give independently of the input value."""
    if eqn.name == "cond":
        index, ops = values[0], values[1:]

        def branch(body: Plan) -> Callable[..., tuple[Array, ...]]:
            def run(*operands: Array) -> tuple[Array, ...]:
                body_taps = {v: t for v, t in zip(body.program.inputs, taps[1:], strict=True)
                             if t is not None}  # fmt: skip
                return tuple(evaluate(body, rules, list(operands), body_taps, batched))

            return run

        return list(lax.switch(index, [branch(b) for b in spec.bodies], *ops))
    (body,) = spec.bodies
    nc, nk = spec.scan_partition
    p = eqn.params
    consts, init, xs = values[:nc], values[nc : nc + nk], values[nc + nk :]
    inputs = body.program.inputs
    const_taps = {inputs[k]: t for k, t in enumerate(taps[:nc]) if t is not None}
    scanned = [(inputs[nc + nk + k], t) for k, t in enumerate(taps[nc + nk :]) if t is not None]

    def step(carry: Any, x: Any) -> tuple[Any, Any]:
        x_values, x_taps = x
        body_taps = {**const_taps, **{v: t for (v, _), t in zip(scanned, x_taps, strict=True)}}
        outs = evaluate(body, rules, [*consts, *carry, *x_values], body_taps, batched)
        return tuple(outs[:nk]), tuple(outs[nk:])

    carry, ys = lax.scan(
        step, tuple(init), (tuple(xs), tuple(t for _, t in scanned)), length=p["length"],
        reverse=p.get("reverse", False), unroll=p.get("unroll", 1),
    )  # fmt: skip
    return [*carry, *ys]
