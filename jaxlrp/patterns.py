"""Pattern matchers on the analysed program: equations that form one node together.

Each matcher reads the node specs ``graph.analyze`` found and rewrites them in place; the
primitive facts they need (``shape_only``, ``gate``, ``affine``) come from the table in
``primitives.py``.

* :func:`gate_operand`: ``x ⊙ σ(·)`` is a *gate* node (LSTM gates, squeeze-excite), and so is
  ``x ⊙ (1 − σ(·))`` (the GRU update);
* :func:`absorb_scalings`: a sum followed by a division by a constant (average pooling, a mean)
  is one sum node, so the sum rule stabilizes the mean;
* :func:`merge_activation_chains`: an element-wise chain of one input (softmax's
  ``exp(x − max)``, GELU's ``x · Φ(x)``) is one activation node;
* :func:`find_affine_chains`: an affine chain with parameters that no layer absorbed
  (pre-activation batch norm, a norm's scale and shift) is an element-wise affine layer;
* :func:`mark_gated_products`: in ``act(x) ⊙ y`` (GeGLU, SwiGLU, ReGLU) the activation's
  output is noted as the product's gate, for rules that treat it as one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxlrp.canonize import Fold, follow_chain, is_parameter_shift, with_constant
from jaxlrp.plan import NodeKind, NodeSpec
from jaxlrp.primitives import PrimitiveKind, has, lookup
from jaxlrp.rules.base import concrete
from jaxlrp.tracing import Const, Eqn, Program, Var


def gate_operand(
    eqn: Eqn, act: list[int], producer: dict[Var, int], program: Program
) -> int | None:
    """For ``x * g`` with ``g`` a gate: the position of ``g`` in ``act``; None for other products.

    A gate is the output of a primitive with the table field ``gate`` (``σ(·)``, in ``(0, 1)``),
    seen through shape-only ops (a squeeze-excite gate broadcast over the image) and through
    affine ops with constant operands that keep it in ``[0, 1]``: the GRU update's ``1 − σ(·)``
    (``sub``), ``0.5 · σ(·)``, ``1 + (−σ(·))``, but not ``σ(·) + 1``. Whether an affine chain keeps
    the gate in ``[0, 1]`` is decided by evaluating it at the ends of ``[0, 1]`` (an affine map is
    monotone, so the image of ``[0, 1]`` lies between the two results; :func:`_gate_range`).
    """
    if eqn.name != "mul" or len(act) != 2:
        return None
    gates = [position for position, k in enumerate(act)
             if _is_gate(eqn.inputs[k], producer, program)]  # fmt: skip
    return gates[0] if len(gates) == 1 else None


def _is_gate(x: Any, producer: dict[Var, int], program: Program) -> bool:
    """Whether ``x`` is a gate (see :func:`gate_operand`)."""
    chain: list[tuple[Eqn, int]] = []  # (equation, position of the running value), outermost first
    while isinstance(x, Var) and x in producer:
        source = program.eqns[producer[x]]
        if has(source.name, "gate"):
            if all(has(e.name, "shape_only") for e, _ in chain):
                return True
            return _gate_range(source.outputs[0], chain[::-1])
        if has(source.name, "shape_only"):
            chain.append((source, 0))
        elif has(source.name, "affine"):
            vars_ = [k for k, v in enumerate(source.inputs) if isinstance(v, Var)]
            if len(vars_) != 1 or len(source.outputs) != 1:
                return False  # the other operands must be constants (numbers in the formula)
            chain.append((source, vars_[0]))
        else:
            return False
        x = source.inputs[chain[-1][1]]
    return False


def _gate_range(gate: Var, chain: list[tuple[Eqn, int]]) -> bool:
    """Whether the element-wise affine (and shape-only) ``chain`` applied to a value of ``gate``'s
    shape in ``[0, 1]`` stays in ``[0, 1]``: the chain is evaluated on the bounds, element-wise
    (``lo``, ``hi``), each affine step being monotone. Constants that are not concrete (traced
    values) make it False."""
    consts = [concrete(c.value) for eqn, _ in chain for c in eqn.inputs if isinstance(c, Const)]
    if any(c is None for c in consts):
        return False
    with jax.ensure_compile_time_eval():
        lo = np.zeros(gate.shape, gate.dtype)
        hi = np.ones(gate.shape, gate.dtype)
        for eqn, position in chain:
            ends = []
            for end in (lo, hi):
                operands = [end if k == position else np.asarray(concrete(a.value))
                            for k, a in enumerate(eqn.inputs)]  # fmt: skip
                ends.append(np.asarray(eqn.primitive.bind(*operands, **eqn.params)))
            lo, hi = np.minimum(*ends), np.maximum(*ends)
    return bool(np.all(lo >= 0) and np.all(hi <= 1))


def absorb_scalings(
    program: Program,
    nodes: dict[int, NodeSpec],
    skip: set[int],
    uses: dict[Var, list[int]],
    outputs: set[Var],
    active: set[Var],
) -> None:
    """Sums absorb the scalings by constants that follow them (average pooling = window sum /
    n; a mean with keepdims = sum, broadcast, / n), so that ``Norm`` stabilizes the mean, as
    zennit does."""
    for i, spec in list(nodes.items()):
        if spec.kind != NodeKind.SUM or len(program.eqns[i].outputs) != 1:
            continue
        z = program.eqns[i].outputs[0]
        chain: list[int] = []
        while z not in outputs and len(uses.get(z, [])) == 1:
            j = uses[z][0]
            nxt = program.eqns[j]
            if has(nxt.name, "shape_only") and len(nxt.inputs) == 1:
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


def merge_activation_chains(
    program: Program,
    nodes: dict[int, NodeSpec],
    skip: set[int],
    uses: dict[Var, list[int]],
    outputs: set[Var],
    producer: dict[Var, int],
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

    def candidate(i: int) -> bool:
        spec = nodes.get(i)
        return (spec is not None and spec.kind == NodeKind.ACTIVATION and not spec.post
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

    for _anchor, (members, _) in chain_of.items():
        if len(members) == 1:
            continue
        first = members[0]
        spec = nodes[first]
        spec.routes = False  # the rule sees the chain's function of its input
        spec.first = first
        spec.post = members[1:]
        for j in members:
            nodes.pop(j, None)
        nodes[members[-1]] = spec
        skip.update(members[:-1])


def find_affine_chains(
    program: Program,
    nodes: dict[int, NodeSpec],
    source: dict[Var, Var],
    active: set[Var],
    uses: dict[Var, list[int]],
    outputs: set[Var],
    skip: set[int],
    register: Callable[[int, int, list[Fold], list[int]], None],
) -> None:
    """Find the affine chains no layer absorbed, for element-wise layers ``z = S(a ⊙ s) + t``.

    A chain qualifies when it shifts by a parameter (a pure scaling keeps ``Pass``, which is
    exact for it), its constants do not depend on the explained input even through
    ``stop_gradient`` (softmax's ``x − max(x)`` stays part of the softmax), and it is not the
    inside of an activation formula that combines it with its own input (GELU's ``x/√2``).

    Args:
      program, source, active, uses, outputs: from the analysis (``graph.analyze``).
      nodes: equation index -> node spec; ``register`` removes a chain's equations from it.
      skip: equations already evaluated as part of another unit.
      register: ``(first index, position of the input in it, folds, members)``, called for each
        chain in program order.
    """
    tainted = {v for v in program.inputs if v in active}
    for eqn in program.eqns:
        if any(isinstance(x, Var) and x in tainted for x in eqn.inputs):
            tainted.update(eqn.outputs)
    compound = set()
    for i, spec in nodes.items():
        if spec.kind == NodeKind.ACTIVATION and len(spec.active_inputs) > 1:
            x = program.eqns[i].inputs[spec.active_inputs[0]]
            compound.add(source.get(x, x))

    def accept(j: int, fold: Fold) -> bool:
        spec = nodes.get(j)
        if spec is None or spec.kind not in (NodeKind.ACTIVATION, NodeKind.STRUCTURAL) or j in skip:
            return False  # already part of a layer or of a pooling node
        return not (isinstance(fold.const, Var) and fold.const in tainted)

    for i, eqn in enumerate(program.eqns):
        spec = nodes.get(i)
        if spec is None or spec.kind != NodeKind.ACTIVATION or not has(eqn.name, "affine"):
            continue
        if len(spec.active_inputs) != 1:
            continue
        x = eqn.inputs[spec.active_inputs[0]]
        folds, members = follow_chain(program, x, i, uses, outputs, active, None, True, accept)
        if not any(is_parameter_shift(f) for f in folds):
            continue
        if source.get(x, x) in compound and not _separable(program, nodes, members[-1]):
            continue
        register(i, spec.active_inputs[0], folds, members)


def _separable(program: Program, nodes: dict[int, NodeSpec], end: int) -> bool:
    """Whether the chain ending at equation ``end`` can be cut out of its activation cluster: no
    later activation combines a value computed from the chain's output with one that is not (as
    ``x · Φ(x/√2)`` combines ``x`` with ``Φ`` of the chain ``x/√2``)."""
    through = set(program.eqns[end].outputs)
    for i in range(end + 1, len(program.eqns)):
        spec = nodes.get(i)
        if spec is None or spec.kind != NodeKind.ACTIVATION:
            continue
        eqn = program.eqns[i]
        flags = [eqn.inputs[k] in through for k in spec.active_inputs]
        if any(flags):
            if not all(flags):
                return False
            through.update(eqn.outputs)
    return True


def _factor_root(x: Any, want: str, producer: dict[Var, int], program: Program,
                 active: set[Var]) -> bool:  # fmt: skip
    """Whether ``x`` is ``1/√(·)`` (``want="inverse_root"``) or ``√(·)`` (``"root"``) of a value
    computed through a reduction, seen through shape-only ops, affine ops with constants
    (``rsqrt(var + ε) · γ``, ``√var + ε``) and reciprocals (``1 / √var``)."""
    for _ in range(16):
        if not (isinstance(x, Var) and x in producer):
            return False
        eqn = program.eqns[producer[x]]
        entry = lookup(eqn.name)
        if entry is None:
            return False
        if entry.shape_only:
            x = eqn.inputs[0]
            continue
        if entry.role == want:
            return _reduces(eqn.inputs[0], producer, program)
        signal = [k for k, y in enumerate(eqn.inputs) if isinstance(y, Var) and y in active]
        if eqn.name not in ("mul", "div", "add", "sub") or len(signal) != 1:
            return False
        if eqn.name == "div" and signal == [1]:  # a reciprocal: 1/√ ↔ √
            want = "root" if want == "inverse_root" else "inverse_root"
        x = eqn.inputs[signal[0]]
    return False


def _reduces(x: Any, producer: dict[Var, int], program: Program) -> bool:
    """Whether ``x`` is computed from a sum reduction (a mean, a variance) within a few steps."""
    frontier, seen = [x], 0
    while frontier and seen < 24:
        y = frontier.pop()
        if not (isinstance(y, Var) and y in producer):
            continue
        eqn = program.eqns[producer[y]]
        seen += 1
        entry = lookup(eqn.name)
        if entry is not None and entry.kind == PrimitiveKind.SUM:
            return True
        frontier.extend(eqn.inputs)
    return False


def norm_operand(
    eqn: Eqn, act: list[int], producer: dict[Var, int], program: Program, active: set[Var]
) -> int | None:
    """For a normalization ``x · 1/√(v + ε)`` or ``x / √(v + ε)`` with ``v`` a statistic (a
    reduction: LayerNorm, RMSNorm, GroupNorm, L2 normalization): the position in ``act`` of the
    normalizer; None for other products."""
    if len(act) != 2:
        return None
    if eqn.name == "div":
        is_norm = act == [0, 1] and _factor_root(eqn.inputs[1], "root", producer, program, active)
        return 1 if is_norm else None
    if eqn.name != "mul":
        return None
    found = [position for position, k in enumerate(act)
             if _factor_root(eqn.inputs[k], "inverse_root", producer, program, active)]  # fmt: skip
    return found[0] if len(found) == 1 else None


def merge_softmax(
    program: Program,
    nodes: dict[int, NodeSpec],
    skip: set[int],
    uses: dict[Var, list[int]],
    outputs: set[Var],
    producer: dict[Var, int],
) -> None:
    """Evaluate each softmax ``e / Σ e`` with ``e = exp(·)`` (``jax.nn.softmax`` inlined: the
    exponential chain ``exp(x − stop_gradient(max x))``, its sum, the broadcast, the division) as
    one node of kind ``softmax`` whose input is the exponential chain's input."""
    for i, spec in sorted(nodes.items()):
        eqn = program.eqns[i]
        if eqn.name != "div" or spec.kind != NodeKind.PRODUCT or spec.active_inputs != [0, 1]:
            continue
        numerator, x = eqn.inputs
        j = producer.get(numerator)
        chain = nodes.get(j) if j is not None else None
        if chain is None or chain.kind != NodeKind.ACTIVATION or not has_role(program.eqns[j],
                                                                              "exp"):  # fmt: skip
            continue
        x, moves = _through_shape_only(x, producer, program)
        k = producer.get(x)
        total = nodes.get(k) if k is not None else None
        if total is None or total.kind != NodeKind.SUM or total.post:
            continue
        # the sum of the numerator, seen through casts (a bfloat16 softmax sums in float32)
        summed, casts = _through_shape_only(program.eqns[k].inputs[0], producer, program)
        if summed is not numerator:
            continue
        members = [chain.first, *chain.post] if chain.post else [j]
        inner = [k, *moves, *casts]
        values = [program.eqns[m].outputs[0] for m in [*members[:-1], *inner]]
        if any(v in outputs or len(uses.get(v, [])) != 1 for v in values):
            continue
        reads_numerator = casts[-1] if casts else k
        if numerator in outputs or sorted(uses.get(numerator, [])) != sorted([reads_numerator, i]):
            continue
        post = sorted([*members[1:], *inner, i])
        for m in [*members, *inner]:
            nodes.pop(m, None)
        nodes[i] = NodeSpec(NodeKind.SOFTMAX, chain.entry, chain.active_inputs,
                            post=post, first=members[0])  # fmt: skip
        skip.update([*members, *inner])


def merge_log_softmax(
    program: Program,
    nodes: dict[int, NodeSpec],
    skip: set[int],
    uses: dict[Var, list[int]],
    outputs: set[Var],
    producer: dict[Var, int],
) -> None:
    """Evaluate each log-softmax ``a − log Σ exp(a)`` (``jax.nn.log_softmax`` inlined, ``a`` the
    shifted input ``x − stop_gradient(max x)``) as one node of kind ``softmax`` whose input is
    ``a``: the exponential, its sum, the logarithm, the broadcasts and casts, the subtraction."""
    for i, spec in sorted(nodes.items()):
        eqn = program.eqns[i]
        if eqn.name != "sub" or spec.active_inputs != [0, 1] or len(eqn.outputs) != 1:
            continue
        a, rest = eqn.inputs
        logsum, moves = _through_shape_only(rest, producer, program)
        m = producer.get(logsum)
        if m is None or program.eqns[m].name != "log" or m not in nodes:
            continue
        total, casts = _through_shape_only(program.eqns[m].inputs[0], producer, program)
        k = producer.get(total)
        if k is None or k not in nodes or nodes[k].kind != NodeKind.SUM or nodes[k].post:
            continue
        exps, casts_in = _through_shape_only(program.eqns[k].inputs[0], producer, program)
        j = producer.get(exps)
        if (j is None or j not in nodes or nodes[j].post or not has_role(program.eqns[j], "exp")
                or program.eqns[j].inputs[0] is not a):  # fmt: skip
            continue
        members = sorted([j, *casts_in, k, *casts, m, *moves])
        if any(v in outputs or len(uses.get(v, [])) != 1
               for v in (program.eqns[q].outputs[0] for q in members)):  # fmt: skip
            continue
        for q in members:
            nodes.pop(q, None)
        del nodes[i]
        nodes[i] = NodeSpec(NodeKind.SOFTMAX, lookup("exp"), [0],
                            post=[*members[1:], i], first=j)  # fmt: skip
        skip.update(members)


def _through_shape_only(
    x: Any, producer: dict[Var, int], program: Program, transposes: bool = False
) -> tuple[Any, list[int]]:
    """The value ``x`` is a reshape/broadcast/cast (and, with ``transposes``, a transpose) of,
    and the indices of those equations, outermost first."""
    moves = []
    while isinstance(x, Var) and x in producer:
        name = program.eqns[producer[x]].name
        if not (has(name, "shape_only") or (transposes and name == "transpose")):
            break
        moves.append(producer[x])
        x = program.eqns[producer[x]].inputs[0]
    return x, moves


def has_role(eqn: Eqn, role: str) -> bool:
    """Whether ``eqn``'s primitive has the table ``role``."""
    entry = lookup(eqn.name)
    return entry is not None and entry.role == role


def mark_attention(
    program: Program,
    nodes: dict[int, NodeSpec],
    producer: dict[Var, int],
    layers: dict[int, Any] | None = None,
) -> None:
    """A product of two activations one of which is a softmax output (seen through shape-only
    ops and element-wise scalings by constants, such as a head mask ``A ⊙ m``) is an *attention*
    node ``A·v``; ``gate`` is the position of ``A``."""
    scalings = {layer.output: layer for layer in (layers or {}).values()
                if _is_elementwise_scaling(layer)}  # fmt: skip
    for i, spec in nodes.items():
        if spec.kind != NodeKind.PRODUCT or len(spec.active_inputs) != 2:
            continue
        found = []
        for position, k in enumerate(spec.active_inputs):
            x, _ = _through_shape_only(program.eqns[i].inputs[k], producer, program, True)
            while x in scalings:
                x, _ = _through_shape_only(scalings[x].input, producer, program, True)
            j = producer.get(x)
            if j is not None and j in nodes and nodes[j].kind == NodeKind.SOFTMAX:
                found.append(position)
        if len(found) == 1:
            spec.kind = NodeKind.ATTENTION
            spec.gate = found[0]


def _is_elementwise_scaling(layer: Any) -> bool:
    """Whether a layer unit multiplies its input element by element by constants: an affine
    layer, or a ``dot_general`` that contracts nothing and keeps the input's size (the head mask
    ``einsum("bhqk,h->bhqk")``)."""
    if layer.affine:
        return True
    eqn = layer.eqn
    if eqn.name != "dot_general":
        return False
    (contract_lhs, contract_rhs), _ = eqn.params["dimension_numbers"]
    return (not contract_lhs and not contract_rhs
            and int(np.prod(eqn.outputs[0].shape)) == int(np.prod(layer.input.shape)))


def mark_gated_products(
    program: Program, nodes: dict[int, NodeSpec], producer: dict[Var, int]
) -> None:
    """A product ``act(x) ⊙ y`` of two activations exactly one of which is the output of an
    element-wise activation node (GELU, SiLU, ReLU, ...; seen through shape-only ops), as in
    gated MLPs (GeGLU, SwiGLU), stays a *product* node with ``gate`` the position of ``act(x)``.

    :class:`~jaxlrp.rules.UniformProduct` ignores it (AttnLRP splits such products uniformly);
    :class:`~jaxlrp.rules.SignalTakesAll` gives all relevance to ``y``, which is how CP-LRP (as
    LXT's ``cp_LRP`` maps, which detach the activated branch) treats the gate.
    """
    for i, spec in nodes.items():
        eqn = program.eqns[i]
        if (spec.kind != NodeKind.PRODUCT or spec.gate is not None or eqn.name != "mul"
                or len(spec.active_inputs) != 2):  # fmt: skip
            continue
        activated = []
        for position, k in enumerate(spec.active_inputs):
            x, _ = _through_shape_only(eqn.inputs[k], producer, program, True)
            j = producer.get(x)
            if j is not None and j in nodes and nodes[j].kind == NodeKind.ACTIVATION:
                activated.append(position)
        if len(activated) == 1:
            spec.gate = activated[0]
