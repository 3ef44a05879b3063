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

This module follows the chains and keeps their layout bookkeeping; ``graph.py`` makes them layer
units (``patterns.find_affine_chains`` finds the unabsorbed ones) and ``interpreter.py``
evaluates them (:func:`fold_constants`). Which primitives are affine or move data comes from the
table in ``primitives.py`` (fields ``affine`` and ``moves``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxlrp.primitives import has, lookup
from jaxlrp.tracing import Eqn, Program, Var

Array = Any

def _moves(name: str) -> str | None:
    """How the data-movement primitive ``name`` moves a layout (table field ``moves``)."""
    entry = lookup(name)
    return entry.moves if entry is not None else None


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
    if _moves(eqn.name) is None or len(eqn.inputs) != 1 or len(eqn.outputs) != 1:
        return None
    out = eqn.outputs[0]
    if not jnp.issubdtype(out.dtype, jnp.inexact):
        return None
    if _moves(eqn.name) == "same":
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
    ``layer_on_left`` is False), or (``primitive`` has the table field ``moves``) a data-movement
    op re-applied to the running value.

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
        return _moves(self.primitive) is not None


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
    if not has(eqn.name, "affine") or eqn.outputs[0].shape != z.shape:
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
    if value.ndim == 0 or _moves(eqn.name) == "same":
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


def output_weight_axes(layer: Any) -> list[tuple[int, int]] | None:
    """Pairs (output axis, weight axis) along which the output of ``layer`` (a
    :class:`~jaxlrp.plan.LayerSpec`) follows its weight; None when a multiplier cannot be moved
    onto the weight (a convolution whose input is its right operand)."""
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


def weight_scale_axes(
    layer: Any, const_shape: tuple[int, ...], z_shape: tuple[int, ...]
) -> list[tuple[int, int]] | None:
    """Axis pairs to fold a multiplier of ``const_shape`` into the weight, or None."""
    pairs = output_weight_axes(layer)
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


def untransposed_weight(
    eqn: Eqn, k: int, producer: dict[Var, int], program: Program
) -> tuple[Var, dict[str, Any]] | None:
    """For ``dot_general(a, transpose(W, perm))`` (or with the weight on the left): ``W`` and the
    dot's parameters on it, so that the layer can use the weight as stored; None otherwise.

    Dimension ``d`` of the transposed operand is dimension ``perm[d]`` of ``W``: the contracting
    and batch dimensions are renumbered. The output is unchanged only if the weight's free
    dimensions keep their order, so other permutations return None (the transpose is kept).
    A tied unembedding ``h @ Eᵀ`` is the case that matters: without this, the forward product and
    the backward pass each materialize ``Eᵀ`` (Gemma 3 270M: ``f32[640, 262144]``, 671 MB).
    """
    if eqn.name != "dot_general":
        return None
    weight = eqn.inputs[1 - k]
    j = producer.get(weight) if isinstance(weight, Var) else None
    if j is None or program.eqns[j].name != "transpose":
        return None
    source = program.eqns[j]
    if not isinstance(source.inputs[0], Var):
        return None
    perm = tuple(source.params["permutation"])
    (lhs_c, rhs_c), (lhs_b, rhs_b) = eqn.params["dimension_numbers"]
    contract, batch = (rhs_c, rhs_b) if k == 0 else (lhs_c, lhs_b)
    free = [d for d in range(len(perm)) if d not in contract and d not in batch]
    mapped_free = [perm[d] for d in free]
    if mapped_free != sorted(mapped_free):
        return None
    contract = tuple(perm[d] for d in contract)
    batch = tuple(perm[d] for d in batch)
    if k == 0:
        numbers = ((lhs_c, contract), (lhs_b, batch))
    else:
        numbers = ((contract, rhs_c), (batch, rhs_b))
    return source.inputs[0], {**eqn.params, "dimension_numbers": numbers}
