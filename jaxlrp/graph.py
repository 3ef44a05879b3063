"""Analysis of a traced program: which values carry relevance, what is a layer, what is a node.

Run once per trace, before evaluation:

* **activity**: a value is *active* when it depends differentiably on the explained input
  (``stop_gradient`` and integer/boolean results cut the dependency);
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
* **activation chains**: a maximal element-wise chain of one input whose intermediates are
  single-use (softmax's ``exp(x − max)``, GELU's ``x · Φ(x)``) is one activation node, so ``Pass``
  gives ``R_x = R_out`` even where an intermediate is exactly zero;
* **non-negativity**: values known to be ``>= 0`` (ReLU outputs, their pooling), so rules skip
  terms on negative inputs, which are exactly zero there;
* **positions**: the first layers (fed by the input without another layer in between) and the
  last layers (reaching the output without another layer).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxlrp.canonize import Fold, find_affine_chains, follow_chain, weight_shape, with_constant
from jaxlrp.errors import UnsupportedPrimitiveError
from jaxlrp.primitives import PrimitiveInfo, lookup
from jaxlrp.tracing import Const, Eqn, Program, Var


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """A dense, convolution or element-wise affine layer as the composite sees it.

    Attributes:
      index: position among all layers, in program order.
      kind: ``"dense"``, ``"conv"`` or ``"affine"`` (``z = a ⊙ s + t`` with constants ``s``, ``t``:
        an affine chain, e.g. a batch norm, that no dense/conv layer absorbs).
      kind_index: position among layers of the same kind.
      path: the module path (from the weight's parameter path, e.g. ``"backbone/Conv_0"``, or
        from the Flax name stack when the weight is not a named argument).
      name_stack: the Flax/JAX name stack of the equation (e.g. ``"ResNet/Conv_0"`` for linen;
        empty for nnx).
      param_path: the full pytree path of the weight operand (``"params/Conv_0/kernel"``), or
        None when the weight is a constant closed over by the function.
      primitive: ``"dot_general"`` or ``"conv_general_dilated"``; ``"mul"`` for affine layers.
      input_shape, weight_shape, output_shape: shapes as traced (for an affine layer the weight
        is the folded multiplier ``s``, broadcastable to the input; ``()`` for a pure shift).
      folded: names of the affine ops folded into the layer (``"add"``, ``"mul"``, ...).
      is_first: fed by the explained input with no other layer in between.
      is_last: reaches the output with no other layer in between.
      num_layers: number of layers in the program.
    """

    index: int
    kind: str
    kind_index: int
    path: str
    name_stack: str
    param_path: str | None
    primitive: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    folded: tuple[str, ...]
    is_first: bool
    is_last: bool
    num_layers: int

    @property
    def paths(self) -> tuple[str, ...]:
        """All names a path pattern is matched against."""
        names = [self.path, self.name_stack]
        if self.param_path:
            names.append(self.param_path)
        return tuple(n for n in names if n)


@dataclasses.dataclass
class LayerSpec:
    """A layer unit: the linear equation, the folded steps after it, where it is evaluated.

    For an affine layer (``affine=True``) ``eqn`` is the chain's first op, whose operand
    ``active_operand`` is the input, and the linear part is ``a ⊙ s`` with every op in ``folds``.
    """

    eqn: Eqn
    active_operand: int  # 0: lhs is the activation, 1: rhs is
    folds: list[Fold]  # affine steps and data movement, in program order
    output: Var  # the value after the last fold
    members: list[int]  # equation indices belonging to the unit
    info: LayerInfo | None = None
    input_nonneg: bool = False
    affine: bool = False

    @property
    def input(self) -> Any:
        """The layer's input (the active operand)."""
        return self.eqn.inputs[self.active_operand]

    @property
    def linear_shape(self) -> tuple[int, ...]:
        """The shape of the linear op's output (the layout multipliers are folded in)."""
        return self.input.shape if self.affine else self.eqn.outputs[0].shape


@dataclasses.dataclass
class NodeSpec:
    """How one (non-layer) equation is evaluated."""

    kind: str  # structural | activation | sum | max | product | gate | block | plain | control
    entry: PrimitiveInfo | None
    active_inputs: list[int]  # operand positions that are active
    routes: bool = False
    gate: int | None = None  # for gates: which active input (position in active_inputs) is σ(·)
    # equations evaluated after the node's own one as part of the same node, in program order:
    # for sums, the single-use scalings by constants that follow (average pooling's ``/ n``),
    # so that Norm stabilizes the pooled *mean*; for activations, the rest of an element-wise
    # chain of one input (softmax's ``exp(x − max)``, GELU's ``x · Φ(x)``), so that the rule
    # sees the chain's function of its input. Their operands are constants or values computed
    # inside the node (the node's active inputs, earlier outputs).
    post: list[int] = dataclasses.field(default_factory=list)
    first: int = -1  # index of the node's own equation (when ``post`` is not empty)


@dataclasses.dataclass
class Plan:
    """The analysis result for one program."""

    program: Program
    active: set[Var]
    nonneg: set[Var]
    layers: dict[int, LayerSpec]  # keyed by the anchor (last member) equation index
    skip: set[int]  # equation indices evaluated as part of a layer unit
    nodes: dict[int, NodeSpec]


def _is_float(atom: Any) -> bool:
    return jnp.issubdtype(atom.dtype, jnp.inexact)


def _literal_value(atom: Any) -> float | None:
    if isinstance(atom, Const) and np.ndim(atom.value) == 0:
        try:
            return float(atom.value)
        except (TypeError, ValueError):  # tracers
            return None
    return None


_SHAPE_ONLY = {"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "convert_element_type"}
_TAP_STRUCTURAL = {
    "reshape", "transpose", "squeeze", "expand_dims", "broadcast_in_dim", "convert_element_type",
    "copy", "copy_p", "rev", "slice", "pad", "reduce_precision",
}


def analyze(
    program: Program,
    active_inputs: list[bool],
    input_paths: list[str | None] | None = None,
    input_nonneg: list[bool] | None = None,
) -> Plan:
    """Classify every equation of ``program``; raise on unsupported primitives.

    Args:
      program: the traced program.
      active_inputs: per program input, whether it is explained (carries relevance).
      input_paths: per program input, its pytree path (for naming layers).
      input_nonneg: per program input, whether it is known to be non-negative.
    """
    active: set[Var] = {v for v, a in zip(program.inputs, active_inputs, strict=True) if a}
    nonneg: set[Var] = set()
    if input_nonneg:
        nonneg |= {v for v, n in zip(program.inputs, input_nonneg, strict=True) if n}
    producer: dict[Var, int] = {}
    uses: dict[Var, list[int]] = {}
    for i, eqn in enumerate(program.eqns):
        for x in eqn.inputs:
            if isinstance(x, Var):
                uses.setdefault(x, []).append(i)
        for v in eqn.outputs:
            producer[v] = i
    outputs = {x for x in program.outputs if isinstance(x, Var)}

    # activity and element-wise sources
    source: dict[Var, Var] = {}
    nodes: dict[int, NodeSpec] = {}
    for i, eqn in enumerate(program.eqns):
        act = [k for k, x in enumerate(eqn.inputs) if isinstance(x, Var) and x in active]
        if not act:
            continue
        entry = lookup(eqn.name)
        if entry is None:
            raise UnsupportedPrimitiveError(
                f"jaxlrp cannot propagate relevance through {eqn.describe()}. Add an entry for "
                "it to jaxlrp.primitives.PRIMITIVES (structural, elementwise, layer, sum, max, "
                "block or control)."
            )
        kind, routes = _classify(eqn, entry, act, source)
        if kind == "control" and eqn.name == "while":
            raise UnsupportedPrimitiveError(
                f"jaxlrp cannot propagate relevance through a while loop ({eqn.describe()}): "
                "while loops are not reverse-differentiable; use lax.scan or lax.fori_loop with "
                "a static trip count."
            )
        gate = _gate_operand(eqn, act, producer, program) if kind == "product" else None
        if gate is not None:
            kind = "gate"
        nodes[i] = NodeSpec(kind, entry, act, routes, gate)
        if kind == "block":
            continue
        for v in eqn.outputs:
            if _is_float(v):
                active.add(v)
        if kind == "activation":
            srcs = {source.get(eqn.inputs[k], eqn.inputs[k]) for k in act}
            for v in eqn.outputs:
                source[v] = srcs.pop() if len(srcs) == 1 else v
        _propagate_nonneg(eqn, nonneg)

    # layers and their folded affine chains
    layers: dict[int, LayerSpec] = {}
    skip: set[int] = set()
    for i, spec in list(nodes.items()):
        if spec.kind != "layer" or i not in nodes:
            continue
        eqn = program.eqns[i]
        layer = LayerSpec(eqn, spec.active_inputs[0], [], eqn.outputs[0], [i])
        pairs = _output_weight_axes(layer)
        allowed = None if pairs is None else {o for o, _ in pairs}
        layer.folds, members = follow_chain(
            program, eqn.outputs[0], None, uses, outputs, active, allowed, pairs is not None
        )
        _add_unit(program, layer, members, nonneg, layers, skip, nodes)

    # sums absorb the scalings that follow them (avg pool = window sum / n; a mean with
    # keepdims = sum, broadcast, / n), so that Norm stabilizes the mean, as zennit does
    for i, spec in list(nodes.items()):
        if spec.kind != "sum" or len(program.eqns[i].outputs) != 1:
            continue
        z = program.eqns[i].outputs[0]
        chain: list[int] = []
        while z not in outputs and len(uses.get(z, [])) == 1:
            j = uses[z][0]
            nxt = program.eqns[j]
            if nxt.name in _SHAPE_ONLY and len(nxt.inputs) == 1:
                chain.append(j)
                z = nxt.outputs[0]
                continue
            if nxt.name not in ("mul", "div") or nxt.outputs[0].shape != z.shape:
                break
            if with_constant(nxt, z, active) is None:
                break
            chain.append(j)
            z = nxt.outputs[0]
        while chain and program.eqns[chain[-1]].name not in ("mul", "div"):
            chain.pop()  # keep shape-only ops only when a scaling follows them
        if chain:
            anchor = chain[-1]
            for j in chain:
                nodes.pop(j, None)
            del nodes[i]
            spec.post = chain
            spec.first = i
            nodes[anchor] = spec
            skip.add(i)
            skip.update(chain[:-1])

    # affine chains no layer absorbed (pre-activation batch norm, ...): element-wise layers
    def register(i: int, operand: int, folds: list[Fold], members: list[int]) -> None:
        layer = LayerSpec(program.eqns[i], operand, folds, program.eqns[i].outputs[0], [],
                          affine=True)
        _add_unit(program, layer, members, nonneg, layers, skip, nodes)

    find_affine_chains(program, nodes, source, active, uses, outputs, skip, register)
    _merge_activation_chains(program, nodes, skip, uses, outputs)
    _name_layers(program, layers, producer, input_paths or [None] * len(program.inputs))
    _mark_positions(program, layers, active)
    return Plan(program, active, nonneg, layers, skip, nodes)


def _classify(
    eqn: Eqn, entry: PrimitiveInfo, act: list[int], source: dict[Var, Var]
) -> tuple[str, bool]:
    if not any(_is_float(v) for v in eqn.outputs):
        return "plain", False
    kind = entry.kind
    if kind == "layer":
        return ("layer" if len(act) == 1 else "product"), False
    if kind != "elementwise":
        return kind, False
    srcs = {source.get(eqn.inputs[k], eqn.inputs[k]) for k in act}
    same_shape = all(eqn.inputs[k].shape == eqn.outputs[0].shape for k in act)
    if len(act) == 1:
        return "activation", False
    if len(srcs) == 1 and same_shape:
        return "activation", entry.routes
    if entry.multi is None:
        raise UnsupportedPrimitiveError(
            f"jaxlrp has no rule for {eqn.describe()} with operands from different activations."
        )
    return {"sum": "sum", "product": "product", "route": "max"}[entry.multi], entry.routes


GATE_PRIMITIVES = frozenset({"logistic"})
"""Primitives whose output is a gate in ``(0, 1)``: a product with one is a *gate* node."""

_GATE_LOOK_THROUGH = frozenset(
    {"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "convert_element_type", "copy"}
)


def _gate_operand(
    eqn: Eqn, act: list[int], producer: dict[Var, int], program: Program
) -> int | None:
    """For ``x * g`` with ``g = σ(·)`` (through reshapes and broadcasts, as in squeeze-excite
    blocks and LSTM gates): the position of ``g`` in ``act``; None for other products."""
    if eqn.name != "mul" or len(act) != 2:
        return None
    gates = []
    for position, k in enumerate(act):
        x = eqn.inputs[k]
        while isinstance(x, Var) and x in producer:
            source = program.eqns[producer[x]]
            if source.name not in _GATE_LOOK_THROUGH:
                break
            x = source.inputs[0]
        if isinstance(x, Var) and x in producer:
            if program.eqns[producer[x]].name in GATE_PRIMITIVES:
                gates.append(position)
    return gates[0] if len(gates) == 1 else None


def _merge_activation_chains(
    program: Program,
    nodes: dict[int, NodeSpec],
    skip: set[int],
    uses: dict[Var, list[int]],
    outputs: set[Var],
) -> None:
    """Evaluate each maximal element-wise chain of one input as one activation node.

    Activation equations join when every active operand is either the chain's single input or
    the output of a chain member used only there (and not a program output). The chain is then
    one node, evaluated at its last equation as the function of its input: ``Pass`` gives
    ``R_input = R_output`` even where an intermediate is exactly zero (softmax's ``x − max(x)`` at
    the arg-max, which a per-equation ``Pass`` on ``exp`` cannot carry relevance through).
    Non-active operands (constants, ``stop_gradient``'d values) stay constants of the node.
    """
    chain_of: dict[int, tuple[list[int], set[Var]]] = {}  # anchor -> (members, inputs)
    producer = {v: i for i, eqn in enumerate(program.eqns) for v in eqn.outputs}

    def candidate(i: int) -> bool:
        spec = nodes.get(i)
        return (spec is not None and spec.kind == "activation" and not spec.post
                and i not in skip and len(program.eqns[i].outputs) == 1)  # fmt: skip

    for i, eqn in enumerate(program.eqns):
        if not candidate(i):
            continue
        members, inputs, absorbed = [i], set(), []
        for k in nodes[i].active_inputs:
            x = eqn.inputs[k]
            j = producer.get(x)
            if (j is not None and j in chain_of and x not in outputs
                    and all(u == i for u in uses.get(x, []))):  # fmt: skip
                if j not in absorbed:
                    absorbed.append(j)
                    members += chain_of[j][0]
                    inputs |= chain_of[j][1]
            else:
                inputs.add(x)
        if len(inputs) != 1:
            chain_of[i] = ([i], {eqn.inputs[k] for k in nodes[i].active_inputs})
            continue
        for j in absorbed:
            del chain_of[j]
        chain_of[i] = (sorted(members), inputs)

    for anchor, (members, _) in chain_of.items():
        if len(members) == 1:
            continue
        first = members[0]
        spec = nodes[first]
        spec.routes = False  # the rule sees the chain's function of its input
        spec.first = first
        spec.post = members[1:]
        for j in members:
            nodes.pop(j, None)
        nodes[anchor] = spec
        skip.update(members[:-1])


def _propagate_nonneg(eqn: Eqn, nonneg: set[Var]) -> None:
    name = eqn.name
    ins = eqn.inputs

    def nn(x: Any) -> bool:
        if isinstance(x, Var):
            return x in nonneg
        value = _literal_value(x)
        return value is not None and value >= 0

    result = False
    if name in ("max",):
        result = any(nn(x) for x in ins)
    elif name in ("min", "add", "add_any", "mul", "div", "reduce_sum", "reduce_window_sum",
                  "reduce_max", "reduce_window_max", "reduce_min", "reduce_window_min",
                  "concatenate", "cumsum"):
        result = all(nn(x) for x in ins)
    elif name == "clamp":
        result = nn(ins[0])
    elif name in ("exp", "logistic", "abs", "sqrt", "exp2"):
        result = True
    elif name == "integer_pow":
        result = eqn.params.get("y", 1) % 2 == 0 or nn(ins[0])
    elif name in _TAP_STRUCTURAL or name in ("gather", "dynamic_slice"):
        result = nn(ins[0])
    if result:
        nonneg.update(eqn.outputs)


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


def _output_weight_axes(layer: LayerSpec) -> list[tuple[int, int]] | None:
    """Pairs (output axis, weight axis) along which the layer output follows the weight."""
    eqn = layer.eqn
    w_pos = 1 - layer.active_operand
    w_ndim = len(eqn.inputs[w_pos].shape)
    if eqn.name == "conv_general_dilated":
        if layer.active_operand != 0:
            return None
        dn = eqn.params["dimension_numbers"]
        return [(dn.out_spec[1], dn.rhs_spec[0])]
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    a_ndim = len(eqn.inputs[layer.active_operand].shape)
    contract = (lc, rc)[w_pos]
    batch = (lb, rb)[w_pos]
    a_batch = (lb, rb)[layer.active_operand]
    a_contract = (lc, rc)[layer.active_operand]
    w_free = [d for d in range(w_ndim) if d not in contract and d not in batch]
    a_free = [d for d in range(a_ndim) if d not in a_contract and d not in a_batch]
    nb = len(batch)
    pairs = [(k, batch[k]) for k in range(nb)]
    if w_pos == 1:  # output: batch, lhs free (activation), rhs free (weight)
        offset = nb + len(a_free)
    else:  # output: batch, lhs free (weight), rhs free (activation)
        offset = nb
    pairs += [(offset + k, d) for k, d in enumerate(w_free)]
    return pairs


def _weight_scale_axes(
    layer: LayerSpec, const_shape: tuple[int, ...], z_shape: tuple[int, ...]
) -> list[tuple[int, int]] | None:
    """Axis pairs to fold a multiplier of ``const_shape`` into the weight, or None."""
    pairs = _output_weight_axes(layer)
    if pairs is None:
        return None
    if len(const_shape) == 0:
        return pairs
    if len(const_shape) != len(z_shape):
        return None
    allowed = {o for o, _ in pairs}
    for axis, size in enumerate(const_shape):
        if size != 1 and axis not in allowed:
            return None
    return pairs


def _trace_param(x: Any, producer: dict[Var, int], program: Program) -> Var | None:
    """Follow a weight operand back through casts and reshapes to a program input."""
    seen = 0
    while isinstance(x, Var) and x in producer and seen < 16:
        eqn = program.eqns[producer[x]]
        if eqn.name not in _TAP_STRUCTURAL:
            return None
        x = eqn.inputs[0]
        seen += 1
    return x if isinstance(x, Var) else None


_COLLECTIONS = {"params", "batch_stats"}
_LEAF_NAMES = {"kernel", "weight", "w", "value", "raw_value", "embedding", "scale"}
_AFFINE_LEAF_NAMES = _LEAF_NAMES | {"bias", "b", "offset", "beta", "gamma", "mean", "var",
                                    "average", "shift"}


def _module_path(param_path: str, leaves: set[str] = _LEAF_NAMES) -> str:
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


def _name_layers(
    program: Program,
    layers: dict[int, LayerSpec],
    producer: dict[Var, int],
    input_paths: list[str | None],
) -> None:
    path_of = dict(zip(program.inputs, input_paths, strict=True))
    counts: dict[str, int] = {}
    for index, anchor in enumerate(sorted(layers, key=lambda a: layers[a].members[0])):
        layer = layers[anchor]
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
            origin = _trace_param(weight, producer, program)
            param_path = path_of.get(origin) if origin is not None else None
            if param_path:
                break
        path = _module_path(param_path, leaves) if param_path else eqn.name_stack
        layer.info = LayerInfo(
            index=index,
            kind=kind,
            kind_index=counts.get(kind, 0),
            path=path or f"{kind}_{counts.get(kind, 0)}",
            name_stack=eqn.name_stack,
            param_path=param_path,
            primitive=primitive,
            input_shape=layer.input.shape,
            weight_shape=w_shape,
            output_shape=layer.output.shape,
            folded=tuple(f.primitive for f in layer.folds if not f.moves),
            is_first=False,
            is_last=False,
            num_layers=len(layers),
        )
        counts[kind] = counts.get(kind, 0) + 1


def _mark_positions(program: Program, layers: dict[int, LayerSpec], active: set[Var]) -> None:
    """First layers: no layer upstream. Last layers: no layer downstream."""
    layer_at = {}
    for anchor, layer in layers.items():
        for j in layer.members:
            layer_at[j] = anchor
    upstream: dict[Var, bool] = {}
    has_upstream: dict[int, bool] = {}
    for i, eqn in enumerate(program.eqns):
        flag = any(upstream.get(x, False) for x in eqn.inputs if isinstance(x, Var))
        if i in layer_at:
            anchor = layer_at[i]
            if i == layers[anchor].members[0]:
                has_upstream[anchor] = flag
            flag = True
        for v in eqn.outputs:
            upstream[v] = flag
    downstream: dict[Var, bool] = {}
    has_downstream: dict[int, bool] = {}
    for i in range(len(program.eqns) - 1, -1, -1):
        eqn = program.eqns[i]
        flag = any(downstream.get(v, False) for v in eqn.outputs)
        if i in layer_at:
            anchor = layer_at[i]
            if i == layers[anchor].members[-1]:
                has_downstream[anchor] = flag
            flag = True
        for x in eqn.inputs:
            if isinstance(x, Var):
                downstream[x] = downstream.get(x, False) or flag
    for anchor, layer in layers.items():
        layer.info = dataclasses.replace(
            layer.info,
            is_first=not has_upstream.get(anchor, False),
            is_last=not has_downstream.get(anchor, False),
        )
