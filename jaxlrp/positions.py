"""Layer positions over the whole program: which layers are first and which are last.

A layer is *first* when no other layer lies between it and the explained input, *last* when no
other layer lies between it and the output. Composites give those layers their own rules (z^B on
the pixels, ε on the logits). The flags flow through ``scan``/``cond`` bodies as through any
equation: a body layer is first only if it is fed without a layer in between in every iteration
(an RNN's input projection is, its recurrent projection is not: from the second step on the
carry comes from a layer), and the head after a loop of layers is not first.
"""

from __future__ import annotations

import dataclasses

from jaxlrp.plan import LayerSpec, NodeSpec, Plan
from jaxlrp.tracing import Eqn, Var


def mark_positions(plan: Plan) -> None:
    """Set ``is_first``/``is_last`` of every layer of ``plan`` and its bodies."""
    upstream: dict[int, bool] = {}
    downstream: dict[int, bool] = {}
    _flow_up(plan, [False] * len(plan.program.inputs), upstream)
    _flow_down(plan, [False] * len(plan.program.outputs), downstream)
    for layer in plan.all_layers():
        layer.info = dataclasses.replace(
            layer.info,
            is_first=not upstream.get(id(layer), False),
            is_last=not downstream.get(id(layer), False),
        )


def _members(plan: Plan) -> dict[int, LayerSpec]:
    return {j: layer for layer in plan.layers.values() for j in layer.members}


def _flow_up(plan: Plan, in_flags: list[bool], marks: dict[int, bool]) -> list[bool]:
    """Per program output: whether a layer lies upstream. ``marks[id(layer)]`` records whether
    one lies upstream of the layer (accumulated over calls, i.e. over loop iterations)."""
    program = plan.program
    flag: dict[Var, bool] = dict(zip(program.inputs, in_flags, strict=True))
    member = _members(plan)
    for i, eqn in enumerate(program.eqns):
        ins = [isinstance(x, Var) and flag.get(x, False) for x in eqn.inputs]
        spec = plan.nodes.get(i)
        if i in member:
            layer = member[i]
            if i == layer.members[0]:
                marks[id(layer)] = marks.get(id(layer), False) or any(ins)
            outs = [True] * len(eqn.outputs)
        elif spec is not None and spec.bodies:
            outs = _control_up(eqn, spec, ins, marks)
        else:
            outs = [any(ins)] * len(eqn.outputs)
        for v, f in zip(eqn.outputs, outs, strict=True):
            flag[v] = f
    return [isinstance(x, Var) and flag.get(x, False) for x in program.outputs]


def _control_up(eqn: Eqn, spec: NodeSpec, ins: list[bool], marks: dict[int, bool]) -> list[bool]:
    if spec.scan_partition is None:  # cond: operands after the branch index
        outs = [_flow_up(body, ins[1:], marks) for body in spec.bodies]
        return [any(column) for column in zip(*outs, strict=True)]
    (body,) = spec.bodies
    nc, nk = spec.scan_partition
    carry = ins[nc : nc + nk]
    while True:  # a carry has a layer upstream once any iteration puts one there
        outs = _flow_up(body, [*ins[:nc], *carry, *ins[nc + nk :]], marks)
        updated = [c or o for c, o in zip(carry, outs[:nk], strict=True)]
        if updated == carry:
            return [*carry, *outs[nk:]]
        carry = updated


def _flow_down(plan: Plan, out_flags: list[bool], marks: dict[int, bool]) -> list[bool]:
    """Per program input: whether a layer lies downstream; ``marks`` as in :func:`_flow_up`."""
    program = plan.program
    flag: dict[Var, bool] = {}
    for x, f in zip(program.outputs, out_flags, strict=True):
        if isinstance(x, Var):
            flag[x] = flag.get(x, False) or f
    member = _members(plan)
    for i in range(len(program.eqns) - 1, -1, -1):
        eqn = program.eqns[i]
        outs = [flag.get(v, False) for v in eqn.outputs]
        spec = plan.nodes.get(i)
        if i in member:
            layer = member[i]
            if i == layer.members[-1]:
                marks[id(layer)] = marks.get(id(layer), False) or any(outs)
            ins = [True] * len(eqn.inputs)
        elif spec is not None and spec.bodies:
            ins = _control_down(spec, outs, marks)
        else:
            ins = [any(outs)] * len(eqn.inputs)
        for x, f in zip(eqn.inputs, ins, strict=True):
            if isinstance(x, Var):
                flag[x] = flag.get(x, False) or f
    return [flag.get(v, False) for v in program.inputs]


def _control_down(spec: NodeSpec, outs: list[bool], marks: dict[int, bool]) -> list[bool]:
    if spec.scan_partition is None:
        ins = [_flow_down(body, outs, marks) for body in spec.bodies]
        return [False, *(any(column) for column in zip(*ins, strict=True))]
    (body,) = spec.bodies
    nc, nk = spec.scan_partition
    carry = outs[:nk]
    while True:  # a carry has a layer downstream once a later iteration puts one there
        ins = _flow_down(body, [*carry, *outs[nk:]], marks)
        updated = [c or i for c, i in zip(carry, ins[nc : nc + nk], strict=True)]
        if updated == carry:
            return ins
        carry = updated
