"""The per-primitive table: how relevance crosses each JAX primitive.

This table is the one place to edit to support a new primitive (in the style of JAX's own
``primitive_jvps`` registries). Each entry says which *kind* of node the primitive forms when it
touches the relevance path (operands that depend on the explained input, "active" operands):

``structural``
    Linear data movement (reshape, transpose, slice, pad, concatenate, broadcast, gather, ...).
    Relevance follows the plain vector-Jacobian product; no rule is involved.
``elementwise``
    Element-wise maps. With one active operand (or several that are functions of one common
    source, like ``x * tanh(x)`` inside GELU) the op is part of an *activation*: the composite's
    activation rule applies (default ``Pass``). With active operands from different sources the
    ``multi`` field decides: ``"sum"`` (residual ``a + b``: the composite's sum rule, default
    ``Norm``), ``"product"`` (gating ``a * b``: the product rule, default uniform ``R/N``),
    ``"route"`` (``max``/``select``: winner-take-all, i.e. the gradient), ``None`` (unsupported).
``layer``
    ``dot_general``/``conv_general_dilated`` with exactly one active operand: a dense/conv layer
    that gets an LRP rule (with its bias and batch-norm affine ops folded in). With two active
    operands it is a bilinear product (attention), handled like ``"product"``.
``sum``
    Linear reductions (sum pooling, ``reduce_sum``): the composite's sum rule (``Norm``).
``max``
    Max reductions (max pooling): the composite's max-pool rule (winner-take-all by default).
``block``
    ``stop_gradient``: no relevance flows through.
``control``
    ``scan``/``cond``: bodies are re-interpreted with the same table.

In the modified-gradient form that jaxlrp propagates (see ``interpreter.py``), the gradient of a
``structural`` op, a ``sum`` op and an element-wise op with constants is already exact LRP, which
is why most entries need no code at all.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Kind = Literal["structural", "elementwise", "layer", "sum", "max", "block", "control"]
Multi = Literal["sum", "product", "route"] | None


@dataclasses.dataclass(frozen=True)
class PrimitiveInfo:
    """How one primitive is treated on the relevance path.

    Attributes:
      kind: the node kind (see the module docstring).
      multi: for ``elementwise``: treatment when active operands come from different sources.
      routes: for ``elementwise``: the op routes its input (select, max, min, clamp), so operands
        of one common source share relevance by the gradient rather than equally.
      sum_twin: for ``max``: the name of the matching sum primitive (proportional max pooling).
    """

    kind: Kind
    multi: Multi = None
    routes: bool = False
    sum_twin: str | None = None


def _table() -> dict[str, PrimitiveInfo]:
    table: dict[str, PrimitiveInfo] = {}
    structural = """reshape transpose squeeze expand_dims broadcast_in_dim slice dynamic_slice
        dynamic_update_slice pad concatenate rev convert_element_type copy copy_p gather scatter
        scatter-add scatter_add select_and_gather_add reduce_precision real imag complex conj
        split device_put sharding_constraint mesh_cast optimization_barrier""".split()
    for name in structural:
        table[name] = PrimitiveInfo("structural")
    unary = """neg exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan sinh cosh
        asinh acosh atanh erf erfc erf_inv sqrt rsqrt cbrt abs sign floor ceil round
        integer_pow square is_finite lgamma digamma not population_count""".split()
    for name in unary:
        table[name] = PrimitiveInfo("elementwise")
    for name in ("add", "sub", "add_any"):
        table[name] = PrimitiveInfo("elementwise", multi="sum")
    for name in ("mul", "div"):
        table[name] = PrimitiveInfo("elementwise", multi="product")
    for name in ("max", "min", "select_n", "clamp"):
        table[name] = PrimitiveInfo("elementwise", multi="route", routes=True)
    for name in ("pow", "atan2", "rem", "nextafter"):
        table[name] = PrimitiveInfo("elementwise")
    for name in "eq ne lt le gt ge and or xor".split():
        table[name] = PrimitiveInfo("elementwise", multi="route")
    for name in ("dot_general", "conv_general_dilated"):
        table[name] = PrimitiveInfo("layer")
    for name in ("reduce_sum", "reduce_window_sum", "cumsum"):
        table[name] = PrimitiveInfo("sum")
    table["reduce_max"] = PrimitiveInfo("max", sum_twin="reduce_sum")
    table["reduce_window_max"] = PrimitiveInfo("max", sum_twin="reduce_window_sum")
    for name in ("reduce_min", "reduce_window_min", "cummax", "cummin", "argmax", "argmin",
                 "sort"):
        table[name] = PrimitiveInfo("max")
    table["stop_gradient"] = PrimitiveInfo("block")
    for name in ("scan", "cond", "while"):
        table[name] = PrimitiveInfo("control")
    return table


PRIMITIVES: dict[str, PrimitiveInfo] = _table()
"""Primitive name -> :class:`PrimitiveInfo`. Add an entry here to support a new primitive."""


def lookup(name: str) -> PrimitiveInfo | None:
    """The table entry for a primitive name, or None if it is not supported."""
    return PRIMITIVES.get(name)
