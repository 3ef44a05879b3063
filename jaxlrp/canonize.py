"""Canonization on the traced program: affine chains folded into layers, or made layers.

After a dense/conv equation, the ops up to the next nonlinearity are usually affine with
constants: a bias add, inference batch norm ``(z − μ)·γ/σ + β``, a scaling. They may be separated
by data movement: ``jax.vmap`` of a per-example ``W @ x + b`` (Equinox) computes ``Wxᵀ``, then a
transpose, then the add; a vmapped convolution adds a reshape and a squeeze. A *layer unit* is
the linear op followed by such a single-use chain,

.. math::  z = S(f(a; W)) \\odot c + t  \\;\\to\\;  z = S(f(a; W')) + b,

where ``S`` is the chain's data movement (reshape, transpose, squeeze, broadcast that only adds
size-1 axes, casts), every multiplier is moved back through ``S`` onto the weight's output axes
(``W' = αW``, so rules see the folded weights: zennit's batch-norm canonization) and every
additive constant is carried forward through ``S`` into the bias ``b``, in the unit's output
layout. Rules then see the unit as the linear map ``a ↦ S(f(a; W'))`` with bias ``b``.

An affine chain that no layer can absorb (pre-activation batch norm, a norm's scale and shift on
a residual sum or on the input, ``x·s + t``) becomes an element-wise *affine layer*
``z = S(a ⊙ s) + t``: a dense layer with the diagonal weight ``s``.

This module finds the chains and keeps their layout bookkeeping; ``graph.py`` makes them layer
units and ``interpreter.py`` evaluates them (:func:`fold_constants`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxlrp.tracing import Eqn, Program, Var

Array = Any

AFFINE_OPS = {"add", "sub", "mul", "div", "neg"}
"""Element-wise ops that are affine in one operand when the other is a constant."""

MOVES = {
    "reshape", "transpose", "squeeze", "expand_dims", "broadcast_in_dim", "convert_element_type",
    "copy", "copy_p", "reduce_precision",
}
"""Data movement a chain may cross (when it is a bijection: no replication, no slicing)."""

_SAME_LAYOUT = {"convert_element_type", "copy", "copy_p", "reduce_precision"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the axes of a value moved by data-movement ops come from.

    Attributes:
      base_shape: the shape of the value before the moves (the linear op's output).
      groups: per current axis, the base axes (of size > 1) it is made of, in row-major order;
        ``()`` for an axis of size 1.
    """

    base_shape: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, shape: tuple[int, ...]) -> Layout:
        """The identity layout of a value of ``shape``."""
        return cls(tuple(shape), tuple((d,) if n != 1 else () for d, n in enumerate(shape)))


def move_layout(layout: Layout, eqn: Eqn) -> Layout | None:
    """The layout after the data-movement ``eqn``, or None when it is not a bijection we follow
    (it replicates, slices, or splits an axis into pieces)."""
    if eqn.name not in MOVES or len(eqn.inputs) != 1 or len(eqn.outputs) != 1:
        return None
    out = eqn.outputs[0]
    if not jnp.issubdtype(out.dtype, jnp.inexact):
        return None
    if eqn.name in _SAME_LAYOUT:
        return layout
    if eqn.name == "transpose":
        perm = tuple(eqn.params["permutation"])
        return Layout(layout.base_shape, tuple(layout.groups[p] for p in perm))
    if eqn.name == "reshape" and eqn.params.get("dimensions") is not None:
        return None
    if math.prod(eqn.inputs[0].shape) != math.prod(out.shape):
        return None  # a broadcast that replicates
    # reshape, squeeze, expand_dims and a broadcast that adds size-1 axes all keep the order of
    # the elements: regroup the base axes along the new shape, whole axes only
    sequence = [p for g in layout.groups for p in g]
    groups = []
    for size in out.shape:
        group: list[int] = []
        count = 1
        while count < size and sequence:
            p = sequence.pop(0)
            group.append(p)
            count *= layout.base_shape[p]
        if count != size:
            return None
        groups.append(tuple(group))
    if sequence:
        return None
    return Layout(layout.base_shape, tuple(groups))


@dataclasses.dataclass(frozen=True)
class BackMap:
    """How a multiplier in the current layout is moved back to the base layout:
    ``reshape(split) → transpose(perm) → reshape(shape)`` (``shape`` has 1 on the axes along
    which the multiplier is constant)."""

    split: tuple[int, ...]
    perm: tuple[int, ...]
    shape: tuple[int, ...]

    def __call__(self, c: Array) -> Array:
        c = jnp.asarray(c)
        if not self.shape:
            return jnp.reshape(c, ())
        return jnp.reshape(jnp.transpose(jnp.reshape(c, self.split), self.perm), self.shape)


def back_map(layout: Layout, shape: tuple[int, ...], allowed: set[int] | None) -> BackMap | None:
    """The map of a multiplier of ``shape`` (rank 0 or the current rank) back to the base
    layout, or None when it varies along a base axis not in ``allowed`` (None: any axis)."""
    if all(n == 1 for n in shape):
        return BackMap((), (), ())
    if len(shape) != len(layout.groups):
        return None
    split: list[int] = []
    labels: list[int] = []
    for n, group in zip(shape, layout.groups, strict=True):
        if n == 1:
            continue
        if not group or (allowed is not None and any(p not in allowed for p in group)):
            return None
        split += [layout.base_shape[p] for p in group]
        labels += list(group)
    perm = tuple(int(k) for k in np.argsort(labels))
    out = tuple(layout.base_shape[p] if p in labels else 1 for p in range(len(layout.base_shape)))
    return BackMap(tuple(split), perm, out)


@dataclasses.dataclass
class Fold:
    """One step of a layer unit after its linear op.

    Either an affine op with a constant, ``z ← z op const`` (``const op z`` when
    ``layer_on_left`` is False), or (``primitive`` in :data:`MOVES`) a data-movement op re-applied
    to the running value.

    Attributes:
      primitive: the op's name.
      const: the constant operand (a ``Var`` or ``Const``); None for ``neg`` and data movement.
      layer_on_left: whether the running value is the left operand.
      eqn: the equation.
      to_base: for ``mul``/``div``, the map of the constant to the linear op's output layout.
    """

    primitive: str
    const: Any
    layer_on_left: bool
    eqn: Eqn | None = None
    to_base: BackMap | None = None

    @property
    def moves(self) -> bool:
        """Whether this step is data movement."""
        return self.primitive in MOVES


def with_constant(eqn: Eqn, z: Var, active: set[Var]) -> tuple[Any, bool] | None:
    """``(constant, z_on_left)`` when ``eqn`` is a binary op of ``z`` and an inactive operand
    that is affine in ``z`` (``c / z`` is not), else None."""
    if len(eqn.inputs) != 2:
        return None
    left = eqn.inputs[0] is z
    other = eqn.inputs[1] if left else eqn.inputs[0]
    if (isinstance(other, Var) and other in active) or other is z:
        return None
    if eqn.name == "div" and not left:
        return None
    return other, left


def as_fold(
    eqn: Eqn, z: Var, active: set[Var], layout: Layout, allowed: set[int] | None, scalable: bool
) -> Fold | None:
    """``eqn`` as an affine step on the running value ``z``, or None.

    Args:
      eqn: the equation using ``z``.
      z: the running value.
      active: the values that carry relevance (not constants).
      layout: where the axes of ``z`` come from.
      allowed: base axes a multiplier may vary along (None: any).
      scalable: whether multipliers can be folded at all.
    """
    if eqn.name not in AFFINE_OPS or eqn.outputs[0].shape != z.shape:
        return None
    if eqn.name == "neg":
        return Fold("neg", None, True, eqn)
    found = with_constant(eqn, z, active)
    if found is None:
        return None
    other, left = found
    if eqn.name in ("mul", "div"):
        mapped = back_map(layout, tuple(other.shape), allowed) if scalable else None
        if mapped is None:
            return None
        return Fold(eqn.name, other, left, eqn, mapped)
    return Fold(eqn.name, other, left, eqn)


def move_value(eqn: Eqn, value: Array) -> Array:
    """Apply the data-movement ``eqn`` to ``value``, which broadcasts to its operand."""
    dtype = eqn.outputs[0].dtype
    value = jnp.asarray(value)
    if value.ndim == 0 or eqn.name in _SAME_LAYOUT:
        return value.astype(dtype)
    if eqn.name == "transpose":
        return jnp.transpose(value, tuple(eqn.params["permutation"])).astype(dtype)
    full = jnp.broadcast_to(value, eqn.inputs[0].shape)
    return jnp.reshape(full, eqn.outputs[0].shape).astype(dtype)


def fold_constants(folds: list[Fold], read: Any) -> tuple[Any, Any]:
    """Accumulate a unit's steps into ``z = S(α ⊙ f(a; W)) + β``.

    Returns ``(α, β)``: ``α`` in the linear op's output layout (broadcastable; None for 1), ``β``
    in the unit's output layout (broadcastable; None for 0).
    """
    alpha = None
    beta = None
    for fold in folds:
        if fold.moves:
            beta = None if beta is None else move_value(fold.eqn, beta)
            continue
        dtype = fold.eqn.outputs[0].dtype
        c = None if fold.const is None else jnp.asarray(read(fold.const), dtype)
        name = fold.primitive
        if name == "add":
            beta = c if beta is None else beta + c
        elif name == "sub" and fold.layer_on_left:
            beta = -c if beta is None else beta - c
        elif name == "sub":
            alpha = -1.0 if alpha is None else -alpha
            beta = c if beta is None else c - beta
        elif name in ("mul", "div"):
            scale = fold.to_base(c)
            if name == "div":
                scale = 1 / scale
                c = 1 / c
            alpha = scale if alpha is None else alpha * scale
            beta = None if beta is None else beta * c
        elif name == "neg":
            alpha = -1.0 if alpha is None else -alpha
            beta = None if beta is None else -beta
    return alpha, beta


def weight_shape(folds: list[Fold]) -> tuple[int, ...]:
    """The shape of the folded multiplier ``α`` (``()`` when there is none)."""
    shapes = [f.to_base.shape for f in folds if f.to_base is not None]
    return tuple(np.broadcast_shapes(*shapes)) if shapes else ()


def follow_chain(
    program: Program,
    z: Var,
    first: int | None,
    uses: dict[Var, list[int]],
    outputs: set[Var],
    active: set[Var],
    allowed: set[int] | None,
    scalable: bool,
    accept: Callable[[int, Fold], bool] | None = None,
) -> tuple[list[Fold], list[int]]:
    """The single-use chain of affine steps with constants after ``z`` (starting at equation
    ``first`` when given), with the data movement between them; it ends at its last affine step.

    Args:
      program: the traced program.
      z: the value the chain starts from (a linear op's output, or an affine layer's input).
      first: the index of the chain's first equation; None: the single use of ``z``.
      uses: the equations using each value.
      outputs: the program outputs (never absorbed into a chain).
      active: the values that carry relevance.
      allowed, scalable: see :func:`as_fold`.
      accept: ``(index, fold) -> bool``, may refuse a step (the chain ends before it).

    Returns:
      The steps and their equation indices.
    """
    layout = Layout.of(z.shape)
    folds: list[Fold] = []
    members: list[int] = []
    kept = 0
    j = first
    while True:
        if j is None:
            if z in outputs or len(uses.get(z, [])) != 1:
                break
            j = uses[z][0]
        eqn = program.eqns[j]
        moved = move_layout(layout, eqn) if eqn.inputs and eqn.inputs[0] is z else None
        if moved is not None:
            fold = Fold(eqn.name, None, True, eqn)
        else:
            fold = as_fold(eqn, z, active, layout, allowed, scalable)
            if fold is None:
                break
        if accept is not None and not accept(j, fold):
            break
        if moved is not None:
            layout = moved
        folds.append(fold)
        members.append(j)
        if not fold.moves:
            kept = len(folds)
        z = eqn.outputs[0]
        j = None
    return folds[:kept], members[:kept]


def is_parameter_shift(fold: Fold) -> bool:
    """An additive constant that is a parameter (an argument, or an array closed over), not a
    number written in a formula (GELU's ``+ 1``, a gate's ``1 − σ``)."""
    if fold.primitive not in ("add", "sub"):
        return False
    return isinstance(fold.const, Var) or np.ndim(fold.const.value) > 0


def find_affine_chains(
    program: Program,
    nodes: dict[int, Any],
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
        if spec.kind == "activation" and len(spec.active_inputs) > 1:
            x = program.eqns[i].inputs[spec.active_inputs[0]]
            compound.add(source.get(x, x))

    def accept(j: int, fold: Fold) -> bool:
        spec = nodes.get(j)
        if spec is None or spec.kind not in ("activation", "structural") or j in skip:
            return False  # already part of a layer or of a pooling node
        return not (isinstance(fold.const, Var) and fold.const in tainted)

    for i, eqn in enumerate(program.eqns):
        spec = nodes.get(i)
        if spec is None or spec.kind != "activation" or eqn.name not in AFFINE_OPS:
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


def _separable(program: Program, nodes: dict[int, Any], end: int) -> bool:
    """Whether the chain ending at equation ``end`` can be cut out of its activation cluster: no
    later activation combines a value computed from the chain's output with one that is not (as
    ``x · Φ(x/√2)`` combines ``x`` with ``Φ`` of the chain ``x/√2``)."""
    through = set(program.eqns[end].outputs)
    for i in range(end + 1, len(program.eqns)):
        spec = nodes.get(i)
        if spec is None or spec.kind != "activation":
            continue
        eqn = program.eqns[i]
        flags = [eqn.inputs[k] in through for k in spec.active_inputs]
        if any(flags):
            if not all(flags):
                return False
            through.update(eqn.outputs)
    return True
