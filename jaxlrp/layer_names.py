"""Naming and numbering layers: module paths from parameter paths, indices over the program.

A layer is named after the pytree path of its weight (``params/backbone/Conv_0/kernel`` →
``backbone/Conv_0``), traced back through casts and reshapes to the explained function's
argument; without one (a weight closed over by the function) after its Flax name stack. Layers
are numbered over the whole program, those inside ``scan``/``cond`` bodies where their loop is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxlrp.canonize import weight_shape
from jaxlrp.plan import LayerInfo, LayerSpec, Plan
from jaxlrp.primitives import has
from jaxlrp.tracing import Program, Var

_COLLECTIONS = {"params", "batch_stats"}
_LEAF_NAMES = {"kernel", "weight", "w", "value", "raw_value", "embedding", "scale"}
_AFFINE_LEAF_NAMES = _LEAF_NAMES | {"bias", "b", "offset", "beta", "gamma", "mean", "var",
                                    "average", "shift"}  # fmt: skip


def trace_param(x: Any, producer: dict[Var, int], program: Program) -> Var | None:
    """Follow an operand back through data movement (table field ``tap``) to a program input;
    None when it is computed otherwise."""
    seen = 0
    while isinstance(x, Var) and x in producer and seen < 16:
        eqn = program.eqns[producer[x]]
        if not has(eqn.name, "tap"):
            return None
        x = eqn.inputs[0]
        seen += 1
    return x if isinstance(x, Var) else None


def module_path(param_path: str, leaves: set[str] = _LEAF_NAMES) -> str:
    """``"params/backbone/Conv_0/kernel"`` → ``"backbone/Conv_0"`` (collection, argument position
    and leaf names dropped)."""
    parts = [p for p in param_path.split("/") if p]
    while parts and parts[-1] in leaves:
        parts.pop()
    if parts and parts[0] in _COLLECTIONS:
        parts = parts[1:]
    if parts and parts[0].isdigit():  # argument position
        parts = parts[1:]
        if parts and parts[0] in _COLLECTIONS:
            parts = parts[1:]
    return "/".join(parts)


def describe_layers(
    program: Program,
    layers: dict[int, LayerSpec],
    producer: dict[Var, int],
    input_paths: list[str | None],
    loop: str,
) -> None:
    """Give every layer of one program its :class:`LayerInfo` (paths, shapes, folds); indices
    and positions are set for the whole program by :func:`number_layers` and ``positions.py``."""
    path_of = dict(zip(program.inputs, input_paths, strict=True))
    for layer in layers.values():
        eqn = layer.eqn
        if layer.affine:
            kind, primitive, leaves = "affine", "mul", _AFFINE_LEAF_NAMES
            # name it after its last parameter (a batch norm's shift, usually a named argument)
            weights = [f.const for f in reversed(layer.folds) if isinstance(f.const, Var)]
            w_shape = weight_shape(layer.folds)
        else:
            kind = "conv" if eqn.name == "conv_general_dilated" else "dense"
            primitive, leaves = eqn.name, _LEAF_NAMES
            weights = [eqn.inputs[1 - layer.active_operand]]
            w_shape = tuple(weights[0].shape)
        param_path = None
        for weight in weights:
            origin = trace_param(weight, producer, program)
            param_path = path_of.get(origin) if origin is not None else None
            if param_path:
                break
        path = module_path(param_path, leaves) if param_path else eqn.name_stack
        layer.info = LayerInfo(
            index=-1,
            kind=kind,
            kind_index=-1,
            path=path,
            name_stack=eqn.name_stack,
            param_path=param_path,
            primitive=primitive,
            input_shape=layer.input.shape,
            weight_shape=w_shape,
            output_shape=layer.output.shape,
            folded=tuple(f.primitive for f in layer.folds if not f.moves),
            is_first=False,
            is_last=False,
            num_layers=0,
            loop=loop,
        )


def number_layers(plan: Plan) -> None:
    """Index every layer of the program, bodies included, in program order; a layer without a
    path is called ``"<kind>_<kind index>"``."""
    ordered = list(plan.all_layers())
    counts: dict[str, int] = {}
    for index, layer in enumerate(ordered):
        info = layer.info
        kind_index = counts.get(info.kind, 0)
        counts[info.kind] = kind_index + 1
        layer.info = dataclasses.replace(
            info, index=index, kind_index=kind_index, num_layers=len(ordered),
            path=info.path or f"{info.kind}_{kind_index}",
        )  # fmt: skip
