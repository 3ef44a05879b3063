"""The rule plan of a program, for reading: its layers, and a table of every rule it gets.

:func:`layers` lists the dense, conv and affine layers found in ``fn(*args)``; :func:`rule_table`
(printed by :func:`print_rules`) says which rule each layer and node kind receives and why — with
``nodes=True``, every equation on the relevance path, ``scan``/``cond`` bodies included. This is
how a user checks what a model we never saw receives before trusting its heatmap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxlrp.composites import Composite
from jaxlrp.explain import ArgNums, _as_function, _trace
from jaxlrp.plan import RULED_KINDS, LayerInfo, NodeKind, Plan

Array = Any


def layers(fn: Callable[..., Array], *args: Any, argnums: ArgNums = -1) -> list[LayerInfo]:
    """The dense, conv and affine layers jaxlrp finds in ``fn(*args)``, in program order, those
    inside ``scan``/``cond`` bodies included (where their loop is; see :attr:`LayerInfo.loop`)."""
    call, call_args, nums = _as_function(fn, args, argnums)
    traced = _trace(call, call_args, nums)
    return [layer.info for layer in traced.plan.all_layers()]


def rule_table(
    fn: Callable[..., Array],
    *args: Any,
    composite: Composite | None = None,
    argnums: ArgNums = -1,
    nodes: bool = False,
) -> str:
    """A printable table: every layer, its shapes, the rule it receives and why.

    Also lists the rules used for the other node kinds (activations, sums, max pools, products)
    with how many of each the program has. With ``nodes=True`` it lists instead every equation
    on the relevance path, in program order, with the rule it gets (structural ops follow their
    exact gradient; affine ops folded into a layer name that layer) — the whole rule plan, for
    checking what a model we never saw receives.
    """
    composite = composite if composite is not None else Composite()
    call, call_args, nums = _as_function(fn, args, argnums)
    traced = _trace(call, call_args, nums)
    if nodes:
        return _node_table(traced.plan, composite)
    rows = [("#", "layer", "kind", "input -> output", "rule", "because")]
    for info in (layer.info for layer in traced.plan.all_layers()):
        rule, why = composite.explain_choice(info)
        flags = "".join([" (first)" if info.is_first else "", " (last)" if info.is_last else "",
                         f" [in {info.loop}]" if info.loop else ""])  # fmt: skip
        shapes = f"{list(info.input_shape)} -> {list(info.output_shape)}"
        fold = f" +{'+'.join(info.folded)}" if info.folded else ""
        rows.append((str(info.index), info.path + flags, info.kind + fold, shapes, repr(rule), why))
    lines = _columns(rows)
    counts: dict[str, int] = {}
    for _, _, spec in traced.plan.all_nodes():
        if spec.kind in RULED_KINDS:
            counts[spec.kind] = counts.get(spec.kind, 0) + 1
    for kind, n in sorted(counts.items()):
        lines.append(f"{n} {kind} node(s): {composite.node_rule(kind)!r}")
    return "\n".join(lines)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]  # fmt: skip


_NODE_NOTES = {
    NodeKind.STRUCTURAL: "gradient (exact data movement)",
    NodeKind.PLAIN: "(carries no relevance: integer or boolean result)",
    NodeKind.BLOCK: "(blocks relevance: stop_gradient)",
    NodeKind.CONTROL: "(body evaluated with these rules; its equations follow)",
}


def _node_table(plan: Plan, composite: Composite) -> str:
    """Every equation with an active operand, its kind and its rule; the equations of a
    ``scan``/``cond`` body follow their loop, numbered ``<loop eqn>.<branch>.<eqn>``."""
    rows = [("eqn", "primitive", "kind", "shapes", "module", "rule")]
    _node_rows(plan, composite, "", rows)
    return "\n".join(_columns(rows))


def _node_rows(plan: Plan, composite: Composite, prefix: str, rows: list) -> None:
    program = plan.program
    member_of: dict[int, int] = {}
    for anchor, layer in plan.layers.items():
        for j in layer.members:
            member_of[j] = anchor
    post_of: dict[int, int] = {}
    for anchor, spec in plan.nodes.items():
        for j in [spec.first, *spec.post] if spec.post else []:
            post_of[j] = anchor
    for i, eqn in enumerate(program.eqns):
        shapes = " ".join(str(list(v.shape)) for v in eqn.outputs)
        where = eqn.name_stack or "-"
        number = f"{prefix}{i}"
        if i in member_of:
            layer = plan.layers[member_of[i]]
            info = layer.info
            if i == layer.members[0]:
                rule = repr(composite.layer_rule(info))
                kind = f"layer/{info.kind} #{info.index}"
            else:
                kind, rule = "fold", f"folded into layer #{info.index} ({info.path})"
            rows.append((number, eqn.name, kind, shapes, where, rule))
            continue
        if i in post_of:
            spec = plan.nodes[post_of[i]]
            if i == spec.first:
                kind, rule = spec.kind, repr(composite.node_rule(spec.kind))
            else:
                kind, rule = "fold", f"part of the {spec.kind} node at eqn {prefix}{spec.first}"
            rows.append((number, eqn.name, kind, shapes, where, rule))
            continue
        spec = plan.nodes.get(i)
        if spec is None:
            continue
        note = _NODE_NOTES.get(spec.kind)
        rule = note if note is not None else repr(composite.node_rule(spec.kind))
        rows.append((number, eqn.name, str(spec.kind), shapes, where, rule))
        for k, body in enumerate(spec.bodies):
            _node_rows(body, composite, f"{number}.{k}." if len(spec.bodies) > 1 else
                       f"{number}.", rows)  # fmt: skip


def print_rules(
    fn: Callable[..., Array],
    *args: Any,
    composite: Composite | None = None,
    argnums: ArgNums = -1,
    nodes: bool = False,
) -> None:
    """Print :func:`rule_table` (with ``nodes=True``: every equation and its rule)."""
    print(rule_table(fn, *args, composite=composite, argnums=argnums, nodes=nodes))
