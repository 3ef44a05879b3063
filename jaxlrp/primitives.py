"""The per-primitive table: every fact jaxlrp knows about a JAX primitive, in one entry.

This table is the one place to edit to support a new primitive (in the style of JAX's own
``primitive_jvps`` registries): ``graph.py`` (the analysis), ``canonize.py`` (layer folding),
``interpreter.py`` and ``tracing.py`` read these fields and hold no primitive names of their own.
Each entry's *kind* says what node the primitive forms when it touches the relevance path
(operands that depend on the explained input, "active" operands):

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
    ``scan``/``cond``: bodies are analysed as part of the whole program (``graph.py``) and
    evaluated with the same rules.
``call``
    Call-like primitives (``pjit``, ``custom_jvp_call``, ``checkpoint``, ...): inlined when the
    program is traced; ``body`` names the parameter holding the called jaxpr.

In the modified-gradient form that jaxlrp propagates (see ``interpreter.py``), the gradient of a
``structural`` op, a ``sum`` op and an element-wise op with constants is already exact LRP, which
is why most entries need no code at all.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
from jax import lax

Array = Any


class PrimitiveKind(enum.StrEnum):
    """What a primitive is on the relevance path (see the module docstring)."""

    STRUCTURAL = "structural"
    ELEMENTWISE = "elementwise"
    LAYER = "layer"
    SUM = "sum"
    MAX = "max"
    BLOCK = "block"
    CONTROL = "control"
    CALL = "call"


Multi = Literal["sum", "product", "route"] | None
Nonneg = Literal["always", "all", "any", "first", "even_power"] | None
Moves = Literal["same", "axes"] | None
Role = Literal["exp", "inverse_root", "root"] | None


@dataclasses.dataclass(frozen=True)
class PrimitiveInfo:
    """Everything the analysis and the interpreter need to know about one primitive.

    Attributes:
      kind: the node kind (see the module docstring).
      multi: for ``elementwise``: treatment when active operands come from different sources.
      routes: for ``elementwise``: the op routes its input (select, max, min, clamp), so operands
        of one common source share relevance by the gradient rather than equally.
      nonneg: how the result inherits non-negativity (values known ``>= 0`` let rules skip terms
        on negative inputs): ``"always"`` (``exp``, ``logistic``, ``abs``, ...), ``"all"`` (when
        every operand is), ``"any"`` (``max``: when one operand is), ``"first"`` (when the first
        operand is: data movement, ``clamp``'s lower bound), ``"even_power"``
        (``integer_pow``: even powers, or a non-negative base), None (never known).
      affine: affine in one operand when the others are constants (bias add, batch-norm scale,
        negation): may be folded into a neighbouring layer (``canonize.py``).
      moves: data movement that a layer's folded chain may cross: ``"same"`` keeps the layout
        (casts, copies), ``"axes"`` moves axes (``canonize.Layout`` follows it); None otherwise.
      shape_only: changes only the shape or dtype (size-1 axes, reshapes, broadcasts, casts);
        pattern matchers look through it (a gate ``σ(·)`` broadcast in a squeeze-excite block).
      tap: linear data movement of its first operand (zero padding): the input *tap* that carries
        input-independent relevance (``interpreter.py``) follows it, and parameter names are
        traced back through it.
      gate: the output lies in ``(0, 1)`` (``logistic``): a product with it is a *gate* node.
      role: the function's part in the patterns of ``patterns.py``: ``"exp"`` (the numerator of
        a softmax ``exp(x) / Σ exp(x)``), ``"inverse_root"`` (``rsqrt``: a normalizer's factor
        ``x · 1/√(var + ε)``), ``"root"`` (``sqrt``: a normalizer's divisor ``x / √(var + ε)``).
      sum_twin: for ``max``: ``sum_twin(params)`` is the matching sum (proportional max pooling).
      body: for ``call``: the equation parameter holding the called jaxpr (None: not inlinable).
    """

    kind: PrimitiveKind
    multi: Multi = None
    routes: bool = False
    nonneg: Nonneg = None
    affine: bool = False
    moves: Moves = None
    shape_only: bool = False
    tap: bool = False
    gate: bool = False
    role: Role = None
    sum_twin: Callable[[dict[str, Any]], Callable[[Array], Array]] | None = None
    body: str | None = None


def _reduce_sum_twin(params: dict[str, Any]) -> Callable[[Array], Array]:
    axes = params["axes"]
    return lambda x: jnp.sum(x, axis=axes)


def _window_sum_twin(p: dict[str, Any]) -> Callable[[Array], Array]:
    return lambda x: lax.reduce_window(
        x, np.zeros((), x.dtype), lax.add, p["window_dimensions"], p["window_strides"],
        p["padding"], p["base_dilation"], p["window_dilation"]
    )  # fmt: skip


def _table() -> dict[str, PrimitiveInfo]:
    table: dict[str, PrimitiveInfo] = {}

    def add(names: str, kind: PrimitiveKind, **fields: Any) -> None:
        for name in names.split():
            table[name] = PrimitiveInfo(kind, **fields)

    S, E = PrimitiveKind.STRUCTURAL, PrimitiveKind.ELEMENTWISE
    # data movement: shape-only ones, axis moves, layout-preserving casts, the rest
    add("reshape squeeze expand_dims broadcast_in_dim", S, nonneg="first", moves="axes",
        shape_only=True, tap=True)  # fmt: skip
    add("convert_element_type copy copy_p name", S, nonneg="first", moves="same", shape_only=True,
        tap=True)  # fmt: skip
    add("reduce_precision", S, nonneg="first", moves="same", tap=True)
    add("transpose", S, nonneg="first", moves="axes", tap=True)
    add("rev slice pad", S, nonneg="first", tap=True)
    add("gather dynamic_slice", S, nonneg="first")
    add("concatenate stack", S, nonneg="all")
    add("unstack tile", S, nonneg="first")
    add("""dynamic_update_slice scatter scatter-add scatter_add select_and_gather_add real imag
        complex conj split device_put sharding_constraint mesh_cast optimization_barrier""", S)
    # element-wise maps
    add("exp", E, nonneg="always", role="exp")
    add("sqrt", E, nonneg="always", role="root")
    add("exp2 abs", E, nonneg="always")
    add("logistic", E, nonneg="always", gate=True)
    add("integer_pow", E, nonneg="even_power")
    add("neg", E, affine=True)
    add("rsqrt", E, nonneg="always", role="inverse_root")
    add("""log log1p expm1 tanh sin cos tan asin acos atan sinh cosh asinh acosh atanh erf erfc
        erf_inv cbrt sign floor ceil round square is_finite lgamma digamma not
        population_count pow atan2 rem nextafter bessel_i0e bessel_i1e igamma igammac polygamma
        zeta""", E)
    add("add", E, multi="sum", nonneg="all", affine=True)
    add("add_any", E, multi="sum", nonneg="all")
    add("sub", E, multi="sum", affine=True)
    add("mul div", E, multi="product", nonneg="all", affine=True)
    add("max", E, multi="route", routes=True, nonneg="any")
    add("min", E, multi="route", routes=True, nonneg="all")
    add("clamp", E, multi="route", routes=True, nonneg="first")
    add("select_n", E, multi="route", routes=True)
    add("eq ne lt le gt ge and or xor", E, multi="route")
    # layers, reductions, the rest
    add("dot_general conv_general_dilated", PrimitiveKind.LAYER)
    add("reduce_sum reduce_window_sum cumsum", PrimitiveKind.SUM, nonneg="all")
    table["reduce_max"] = PrimitiveInfo(PrimitiveKind.MAX, nonneg="all", sum_twin=_reduce_sum_twin)
    table["reduce_window_max"] = PrimitiveInfo(
        PrimitiveKind.MAX, nonneg="all", sum_twin=_window_sum_twin
    )
    add("reduce_min reduce_window_min", PrimitiveKind.MAX, nonneg="all")
    add("cummax cummin argmax argmin sort top_k approx_top_k", PrimitiveKind.MAX)
    add("stop_gradient", PrimitiveKind.BLOCK)
    # side effects without results (jax.debug.print, jax.debug.callback): run, carry nothing
    add("debug_print debug_callback", PrimitiveKind.BLOCK)
    add("scan cond while", PrimitiveKind.CONTROL)
    add("pjit jit remat2 checkpoint remat", PrimitiveKind.CALL, body="jaxpr")
    add("closed_call core_call custom_jvp_call custom_vjp_call", PrimitiveKind.CALL,
        body="call_jaxpr")  # fmt: skip
    add("custom_vjp_call_jaxpr", PrimitiveKind.CALL, body="fun_jaxpr")
    add("custom_lin", PrimitiveKind.CALL)
    return table


PRIMITIVES: dict[str, PrimitiveInfo] = _table()
"""Primitive name -> :class:`PrimitiveInfo`. Add an entry here to support a new primitive."""


_COLLECTIVE_HINT = (
    "Collectives and shard_map bodies run per device with mesh axis names and cannot be "
    "re-evaluated as one program. Explain the model written without shard_map (shard its "
    "inputs with jax.sharding: jaxlrp.explain under jax.jit is data parallel), or call "
    "jaxlrp.explain inside shard_map on the per-device function (see docs/scale.md)."
)

_CALLBACK_HINT = (
    "A host callback runs Python that jaxlrp cannot see into. Write it in jax.numpy, or wrap "
    "its operand in jax.lax.stop_gradient if no relevance should flow through it."
)
_NO_RULE_HINT = (
    "LRP has no rule for it (it is not a layer, a sum, a max, data movement or an element-wise "
    "map). Explain the part of the model before it (return its operand as the output), or wrap "
    "its operand in jax.lax.stop_gradient if no relevance should flow through it."
)
_PRODUCT_HINT = (
    "A running product of many activations has no LRP rule. For positive values write it as "
    "jnp.exp(jnp.cumsum(jnp.log(x))) (an activation, a sum and an activation), or wrap its "
    "operand in jax.lax.stop_gradient."
)

UNSUPPORTED_HINTS: dict[str, str] = {
    **{name: _COLLECTIVE_HINT
       for name in ("shard_map", "psum", "psum2", "pmax", "pmin", "all_gather", "all_to_all",
                    "ppermute", "reduce_scatter", "psum_invariant", "pvary", "pmean")},
    **{name: _CALLBACK_HINT for name in ("pure_callback", "io_callback", "ffi_call")},
    **{name: _NO_RULE_HINT
       for name in ("fft", "eigh", "eig", "svd", "qr", "lu", "cholesky", "triangular_solve",
                    "custom_linear_solve", "schur", "hessenberg", "tridiagonal_solve")},
    **{name: _PRODUCT_HINT for name in ("cumprod", "reduce_prod", "cumlogsumexp")},
}  # fmt: skip
"""What to do instead, for primitives jaxlrp deliberately does not table."""


def unsupported_hint(name: str) -> str:
    """How to get past an unsupported primitive ``name``: its entry in
    :data:`UNSUPPORTED_HINTS`, else how to add a table entry."""
    return UNSUPPORTED_HINTS.get(name) or (
        "Add an entry for it to jaxlrp.primitives.PRIMITIVES (structural, elementwise, layer, "
        "sum, max, block or control)."
    )


def lookup(name: str) -> PrimitiveInfo | None:
    """The table entry for a primitive name, or None if it is not supported."""
    return PRIMITIVES.get(name)


def has(name: str, field: str) -> bool:
    """Whether primitive ``name`` has the (truthy) table ``field``; False for unknown names."""
    entry = PRIMITIVES.get(name)
    return entry is not None and bool(getattr(entry, field))


def result_nonneg(name: str, params: dict[str, Any], operands: Sequence[bool]) -> bool:
    """Whether the result of ``name`` is ``>= 0``, given which operands are (see ``nonneg``)."""
    entry = PRIMITIVES.get(name)
    how = entry.nonneg if entry is not None else None
    if how == "always":
        return True
    if how == "all":
        return all(operands)
    if how == "any":
        return any(operands)
    if how == "first":
        return bool(operands) and operands[0]
    if how == "even_power":
        return params.get("y", 1) % 2 == 0 or operands[0]
    return False
