"""The rule plan: the types the analysis (``graph.py``) produces and the interpreter reads.

A :class:`Plan` says, for every equation of a traced program, how it is evaluated: as part of a
*layer unit* (:class:`LayerSpec`, described to composites by :class:`LayerInfo`), as a *node*
with a rule (:class:`NodeSpec` of a :class:`NodeKind`, described to node rules by
:class:`NodeInfo`), or plainly. The bodies of ``scan``/``cond`` equations are plans of their own,
held by their control node (``NodeSpec.bodies``), analysed as part of the whole program: their
layers are numbered, named and placed (first/last) among all layers.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator
from typing import Any

from jaxlrp.canonize import Fold
from jaxlrp.primitives import PrimitiveInfo
from jaxlrp.tracing import Eqn, Program, Var

Array = Any


class NodeKind(enum.StrEnum):
    """How a (non-layer) equation on the relevance path is evaluated.

    Members compare equal to their lower-case names (``NodeKind.SUM == "sum"``), which is what
    ``Composite.node_rule`` receives.
    """

    STRUCTURAL = "structural"  # exact data movement: the plain gradient
    ACTIVATION = "activation"  # an element-wise chain of one input: the activation rule
    SUM = "sum"  # a sum of several activations or a sum reduction: the sum rule
    MAX = "max"  # a max reduction or routing op: the max rule
    PRODUCT = "product"  # a product of several activations: the product rule
    GATE = "gate"  # a product with a gate σ(·): the gate rule
    NORM = "norm"  # x ⊙ 1/√(var + ε) (LayerNorm, RMSNorm, GroupNorm): the norm rule
    SOFTMAX = "softmax"  # exp(x) / Σ exp(x), as one node: the softmax rule
    ATTENTION = "attention"  # a product with attention weights (a softmax output): A·v
    BLOCK = "block"  # stop_gradient: no relevance
    PLAIN = "plain"  # integer or boolean result: no relevance
    CONTROL = "control"  # scan/cond: bodies evaluated with the same rules
    LAYER = "layer"  # a dense/conv equation (becomes a layer unit)


RULED_KINDS = frozenset({
    NodeKind.ACTIVATION, NodeKind.SUM, NodeKind.MAX, NodeKind.PRODUCT, NodeKind.GATE,
    NodeKind.NORM, NodeKind.SOFTMAX, NodeKind.ATTENTION,
})  # fmt: skip
"""Node kinds whose backward pass is a rule chosen by the composite (``node_rule(kind)``)."""


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """A dense, convolution or element-wise affine layer as the composite sees it.

    Attributes:
      index: position among all layers of the program, in program order (layers inside a
        ``scan``/``cond`` body counted where the loop is).
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
        Inside a ``scan`` body these are per-iteration shapes.
      folded: names of the affine ops folded into the layer (``"add"``, ``"mul"``, ...).
      is_first: fed by the explained input with no other layer in between (in every iteration,
        for a layer inside a loop).
      is_last: reaches the output with no other layer in between.
      num_layers: number of layers in the program.
      loop: where the layer runs when it is inside control flow: the enclosing ``scan``/``cond``
        equations, outermost first, e.g. ``"scan(length=8)"`` or ``"scan(length=8) > cond[1]"``;
        empty at top level.
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
    loop: str = ""

    @property
    def paths(self) -> tuple[str, ...]:
        """All names a path pattern is matched against."""
        names = [self.path, self.name_stack]
        if self.param_path:
            names.append(self.param_path)
        return tuple(n for n in names if n)


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """What a node rule receives about its node (the ``info`` argument of ``backward``).

    Attributes:
      kind: the node kind.
      primitive: the primitive's name (``"div"``, ``"reduce_max"``, ...); for a fused chain, its
        first equation's.
      routes: the op routes its input (max, select), so operands share relevance by the gradient.
      sum_fn: for max nodes, the matching sum (proportional max pooling), else None.
      name_stack: the Flax/JAX name stack (module) the equation came from.
      description: primitive, operand and result shapes and module, for error messages.
      gate: for gate, norm and attention nodes, the position among the active inputs of the
        modulating factor: the gate ``σ(·)``, the normalizer ``1/√(var + ε)`` (or the divisor
        ``√(var + ε)``), the attention weights ``A`` of ``A·v``.
    """

    kind: NodeKind
    primitive: str
    routes: bool
    sum_fn: Callable[[Array], Array] | None
    name_stack: str
    description: str
    gate: int | None = None


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
    stored_weight: tuple[Var, dict[str, Any]] | None = None
    """The weight as stored and the linear op's parameters on it, when the program transposes
    a parameter into the op (:func:`jaxlrp.canonize.untransposed_weight`)."""

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

    kind: NodeKind
    entry: PrimitiveInfo | None
    active_inputs: list[int]  # operand positions that are active
    routes: bool = False
    gate: int | None = None  # gate/norm/attention: position in active_inputs of the factor
    # equations evaluated after the node's own one as part of the same node, in program order:
    # for sums, the single-use scalings by constants that follow (average pooling's ``/ n``),
    # so that Norm stabilizes the pooled *mean*; for activations, the rest of an element-wise
    # chain of one input (softmax's ``exp(x − max)``, GELU's ``x · Φ(x)``), so that the rule
    # sees the chain's function of its input. Their operands are constants or values computed
    # inside the node (the node's active inputs, earlier outputs).
    post: list[int] = dataclasses.field(default_factory=list)
    first: int = -1  # index of the node's own equation (when ``post`` is not empty)
    # for control nodes: the analysed body (scan) or branches (cond), and for a scan the
    # partition of its operands into (constants, carries); the rest are the scanned inputs
    bodies: tuple[Plan, ...] = ()
    scan_partition: tuple[int, int] | None = None

    def info(self, eqn: Eqn) -> NodeInfo:
        """The :class:`NodeInfo` a rule receives for this node, whose equation is ``eqn``."""
        entry = self.entry
        sum_fn = entry.sum_twin(eqn.params) if entry is not None and entry.sum_twin else None
        return NodeInfo(self.kind, eqn.name, self.routes, sum_fn, eqn.name_stack,
                        eqn.describe(), self.gate)  # fmt: skip


@dataclasses.dataclass
class Plan:
    """The analysis result for one program (or one control-flow body).

    Attributes:
      program: the program.
      active: the values that carry relevance.
      nonneg: the values known to be ``>= 0``.
      layers: layer units, keyed by their anchor (last member) equation index.
      skip: equation indices evaluated as part of a layer unit or a node anchored elsewhere.
      nodes: equation index -> node spec.
      loop: for a body, the enclosing control flow (see :attr:`LayerInfo.loop`).
    """

    program: Program
    active: set[Var]
    nonneg: set[Var]
    layers: dict[int, LayerSpec]
    skip: set[int]
    nodes: dict[int, NodeSpec]
    loop: str = ""

    def all_layers(self) -> Iterator[LayerSpec]:
        """Every layer unit, bodies included, in program order (a body's layers where its loop
        is)."""
        starts = {layer.members[0]: layer for layer in self.layers.values()}
        for i in range(len(self.program.eqns)):
            if i in starts:
                yield starts[i]
            spec = self.nodes.get(i)
            if spec is not None:
                for body in spec.bodies:
                    yield from body.all_layers()

    def all_nodes(self) -> Iterator[tuple[Plan, int, NodeSpec]]:
        """Every node ``(plan, index, spec)``, bodies included, in program order."""
        for i in sorted(self.nodes):
            spec = self.nodes[i]
            yield self, i, spec
            for body in spec.bodies:
                yield from body.all_nodes()
