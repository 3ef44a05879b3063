"""Analysis of a traced program: which values carry relevance, what is a layer, what is a node.

Run once per trace, before evaluation, over the whole program, ``scan``/``cond`` bodies
included (each body is a :class:`~jaxlrp.plan.Plan` held by its control node):

* **activity**: a value is *active* when it depends differentiably on the explained input
  (``stop_gradient`` and integer/boolean results cut the dependency; a scan carry is active
  once any iteration makes it so);
* **sources**: for active element-wise chains, the value they are a function of (GELU's
  ``x · Φ(x)`` has both factors from source ``x``, so it is an activation, not a product);
* **layers**: a ``dot_general``/``conv_general_dilated`` with exactly one active operand, plus the
  single-use chain of affine ops with constants that follows it (bias add, inference batch norm
  ``(z − μ)·γ/σ + β``, scaling), also across data movement (a vmapped ``W @ x + b`` transposes
  before the add) — folded into the layer's weights and bias, so batch norm is canonized
  automatically (see ``canonize.py``);
* **affine layers**: a chain of affine ops with parameters that no layer absorbs (pre-activation
  batch norm, a norm's shift on a residual sum or on the input) becomes an element-wise layer
  ``z = a ⊙ s + t`` of kind ``"affine"``, which gets the composite's layer rule;
* **patterns** (``patterns.py``): gates ``x ⊙ σ(·)``, normalizations ``x · 1/√(var + ε)``,
  sums followed by a scaling (means), element-wise chains of one input (GELU, SiLU) and
  softmaxes as one node, products with attention weights;
* **non-negativity**: values known to be ``>= 0`` (ReLU outputs, their pooling; the table's
  ``nonneg`` field), so rules skip terms on negative inputs, which are exactly zero there;
* **names, indices and positions** over the whole program (``layer_names.py``,
  ``positions.py``): the first layers (fed by the input without another layer in between) and
  the last layers (reaching the output without another layer).

Every per-primitive fact comes from the table in ``primitives.py``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxlrp.canonize import follow_chain, output_weight_axes, untransposed_weight
from jaxlrp.control_flow import body_programs, loop_label, scan_partition
from jaxlrp.errors import UnsupportedPrimitiveError
from jaxlrp.layer_names import describe_layers, number_layers, trace_param
from jaxlrp.patterns import (
    absorb_scalings,
    find_affine_chains,
    gate_operand,
    mark_attention,
    mark_gated_products,
    merge_activation_chains,
    merge_log_softmax,
    merge_softmax,
    norm_operand,
)
from jaxlrp.plan import LayerSpec, NodeKind, NodeSpec, Plan
from jaxlrp.positions import mark_positions
from jaxlrp.primitives import PrimitiveInfo, PrimitiveKind, lookup, result_nonneg, unsupported_hint
from jaxlrp.tracing import Const, Eqn, Program, Var


def analyze(
    program: Program,
    active_inputs: list[bool],
    input_paths: list[str | None] | None = None,
    input_nonneg: list[bool] | None = None,
) -> Plan:
    """Classify every equation of ``program`` and of its control-flow bodies; raise on
    unsupported primitives.

    Args:
      program: the traced program.
      active_inputs: per program input, whether it is explained (carries relevance).
      input_paths: per program input, its pytree path (for naming layers).
      input_nonneg: per program input, whether it is known to be non-negative.
    """
    n = len(program.inputs)
    plan = _analyze(
        program, list(active_inputs), list(input_paths or [None] * n),
        list(input_nonneg or [False] * n), loop="",
    )  # fmt: skip
    number_layers(plan)
    mark_positions(plan)
    return plan


def _is_float(atom: Any) -> bool:
    return jnp.issubdtype(atom.dtype, jnp.inexact)


def _is_nonneg(x: Any, nonneg: set[Var]) -> bool:
    if isinstance(x, Var):
        return x in nonneg
    if isinstance(x, Const) and np.ndim(x.value) == 0:
        try:
            return float(x.value) >= 0
        except (TypeError, ValueError):  # tracers
            return False
    return False


def _analyze(
    program: Program,
    active_inputs: list[bool],
    input_paths: list[str | None],
    input_nonneg: list[bool],
    loop: str,
) -> Plan:
    active: set[Var] = {v for v, a in zip(program.inputs, active_inputs, strict=True) if a}
    nonneg: set[Var] = {v for v, n in zip(program.inputs, input_nonneg, strict=True) if n}
    path_of = dict(zip(program.inputs, input_paths, strict=True))
    producer: dict[Var, int] = {}
    uses: dict[Var, list[int]] = {}
    for i, eqn in enumerate(program.eqns):
        for x in eqn.inputs:
            if isinstance(x, Var):
                uses.setdefault(x, []).append(i)
        for v in eqn.outputs:
            producer[v] = i
    outputs = {x for x in program.outputs if isinstance(x, Var)}

    def operand_path(x: Any) -> str | None:
        origin = trace_param(x, producer, program)
        return path_of.get(origin) if origin is not None else None

    # activity, element-wise sources, non-negativity
    source: dict[Var, Var] = {}
    nodes: dict[int, NodeSpec] = {}
    for i, eqn in enumerate(program.eqns):
        act = [k for k, x in enumerate(eqn.inputs) if isinstance(x, Var) and x in active]
        if not act:
            continue
        entry = lookup(eqn.name)
        if entry is None:
            raise UnsupportedPrimitiveError(
                f"jaxlrp cannot propagate relevance through {eqn.describe()}. "
                + unsupported_hint(eqn.name)
            )
        kind, routes = _classify(eqn, entry, act, source)
        if kind == NodeKind.CONTROL:
            nodes[i] = _control_node(eqn, entry, act, active, nonneg, operand_path, loop)
            continue
        gate = None
        if kind == NodeKind.PRODUCT:
            gate = gate_operand(eqn, act, producer, program)
            if gate is not None:
                kind = NodeKind.GATE
            else:
                gate = norm_operand(eqn, act, producer, program, active)
                kind = NodeKind.PRODUCT if gate is None else NodeKind.NORM
        nodes[i] = NodeSpec(kind, entry, act, routes, gate)
        if kind == NodeKind.BLOCK:
            continue
        active.update(v for v in eqn.outputs if _is_float(v))
        if kind == NodeKind.ACTIVATION:
            srcs = {source.get(eqn.inputs[k], eqn.inputs[k]) for k in act}
            for v in eqn.outputs:
                source[v] = srcs.pop() if len(srcs) == 1 else v
        if result_nonneg(eqn.name, eqn.params, [_is_nonneg(x, nonneg) for x in eqn.inputs]):
            nonneg.update(eqn.outputs)

    # layers and their folded affine chains
    layers: dict[int, LayerSpec] = {}
    skip: set[int] = set()
    for i, spec in list(nodes.items()):
        if spec.kind != NodeKind.LAYER or i not in nodes:
            continue
        eqn = program.eqns[i]
        layer = LayerSpec(eqn, spec.active_inputs[0], [], eqn.outputs[0], [i])
        layer.stored_weight = untransposed_weight(eqn, layer.active_operand, producer, program)
        pairs = output_weight_axes(layer)
        allowed = None if pairs is None else {o for o, _ in pairs}
        layer.folds, members = follow_chain(
            program, eqn.outputs[0], None, uses, outputs, active, allowed, pairs is not None
        )
        _add_unit(program, layer, members, nonneg, layers, skip, nodes)

    absorb_scalings(program, nodes, skip, uses, outputs, active)

    # affine chains no layer absorbed (pre-activation batch norm, ...): element-wise layers
    def register(i: int, operand: int, folds: list, members: list[int]) -> None:
        layer = LayerSpec(program.eqns[i], operand, folds, program.eqns[i].outputs[0], [],
                          affine=True)  # fmt: skip
        _add_unit(program, layer, members, nonneg, layers, skip, nodes)

    find_affine_chains(program, nodes, source, active, uses, outputs, skip, register)
    merge_activation_chains(program, nodes, skip, uses, outputs, producer)
    merge_softmax(program, nodes, skip, uses, outputs, producer)
    merge_log_softmax(program, nodes, skip, uses, outputs, producer)
    mark_attention(program, nodes, producer, layers)
    mark_gated_products(program, nodes, producer)
    describe_layers(program, layers, producer, input_paths, loop)
    return Plan(program, active, nonneg, layers, skip, nodes, loop)


def _classify(
    eqn: Eqn, entry: PrimitiveInfo, act: list[int], source: dict[Var, Var]
) -> tuple[NodeKind, bool]:
    if not any(_is_float(v) for v in eqn.outputs):
        return NodeKind.PLAIN, False
    kind = entry.kind
    if kind == PrimitiveKind.LAYER:
        return (NodeKind.LAYER if len(act) == 1 else NodeKind.PRODUCT), False
    if kind == PrimitiveKind.CONTROL and eqn.name == "while":
        raise UnsupportedPrimitiveError(
            f"jaxlrp cannot propagate relevance through a while loop ({eqn.describe()}): "
            "while loops are not reverse-differentiable; use lax.scan or lax.fori_loop with "
            "a static trip count."
        )
    if kind != PrimitiveKind.ELEMENTWISE:
        return NodeKind(kind.value), False
    srcs = {source.get(eqn.inputs[k], eqn.inputs[k]) for k in act}
    same_shape = all(eqn.inputs[k].shape == eqn.outputs[0].shape for k in act)
    if len(act) == 1:
        return NodeKind.ACTIVATION, False
    if len(srcs) == 1 and same_shape:
        return NodeKind.ACTIVATION, entry.routes
    if entry.multi is None:
        raise UnsupportedPrimitiveError(
            f"jaxlrp has no rule for {eqn.describe()} with operands from different activations."
        )
    multi = {"sum": NodeKind.SUM, "product": NodeKind.PRODUCT, "route": NodeKind.MAX}
    return multi[entry.multi], entry.routes


def _control_node(
    eqn: Eqn,
    entry: PrimitiveInfo,
    act: list[int],
    active: set[Var],
    nonneg: set[Var],
    operand_path: Any,
    loop: str,
) -> NodeSpec:
    """Analyse the bodies of a ``scan``/``cond`` in the context of the program around it (which
    operands are active and non-negative, their parameter paths); mark its outputs."""
    flags = [isinstance(x, Var) and x in active for x in eqn.inputs]
    signs = [_is_nonneg(x, nonneg) for x in eqn.inputs]
    paths = [operand_path(x) for x in eqn.inputs]
    programs = body_programs(eqn)

    def inner(k: int) -> str:
        return " > ".join(p for p in (loop, loop_label(eqn, k)) if p)

    if eqn.name == "cond":  # operand 0 is the branch index
        bodies = tuple(_analyze(b, flags[1:], paths[1:], signs[1:], inner(k))
                       for k, b in enumerate(programs))  # fmt: skip
        outs = [[x for x in b.program.outputs] for b in bodies]
        out_active = [any(isinstance(x, Var) and x in b.active for b, x in zip(bodies, col,
                      strict=True)) for col in zip(*outs, strict=True)]  # fmt: skip
        out_nonneg = [all(_is_nonneg(x, b.nonneg) for b, x in zip(bodies, col, strict=True))
                      for col in zip(*outs, strict=True)]  # fmt: skip
        spec = NodeSpec(NodeKind.CONTROL, entry, act, bodies=bodies)
    else:
        nc, nk = scan_partition(eqn.params)
        (program,) = programs
        while True:  # carries are active once any iteration makes them so, and non-negative
            body = _analyze(program, flags, paths, signs, inner(0))  # while every one keeps them
            out_active = [isinstance(x, Var) and x in body.active for x in program.outputs]
            out_nonneg = [_is_nonneg(x, body.nonneg) for x in program.outputs]
            carry = slice(nc, nc + nk)
            new_flags = [*flags[:nc], *(a or b for a, b in zip(flags[carry], out_active[:nk],
                         strict=True)), *flags[nc + nk:]]  # fmt: skip
            new_signs = [*signs[:nc], *(a and b for a, b in zip(signs[carry], out_nonneg[:nk],
                         strict=True)), *signs[nc + nk:]]  # fmt: skip
            if new_flags == flags and new_signs == signs:
                break
            flags, signs = new_flags, new_signs
        out_active = [*flags[carry], *out_active[nk:]]
        out_nonneg = [*signs[carry], *out_nonneg[nk:]]
        spec = NodeSpec(NodeKind.CONTROL, entry, act, bodies=(body,), scan_partition=(nc, nk))
    for v, is_active, is_nonneg in zip(eqn.outputs, out_active, out_nonneg, strict=True):
        if is_active and _is_float(v):
            active.add(v)
        if is_nonneg:
            nonneg.add(v)
    return spec


def _add_unit(
    program: Program,
    layer: LayerSpec,
    members: list[int],
    nonneg: set[Var],
    layers: dict[int, LayerSpec],
    skip: set[int],
    nodes: dict[int, NodeSpec],
) -> None:
    """Register a layer unit: evaluated at its last equation, the others skipped."""
    layer.members = [*layer.members, *members]
    layer.output = program.eqns[layer.members[-1]].outputs[0]
    layer.input_nonneg = layer.input in nonneg
    layers[layer.members[-1]] = layer
    skip.update(layer.members[:-1])
    for j in layer.members:
        nodes.pop(j, None)

