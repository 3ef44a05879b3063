"""The generic four-step LRP computation, written once; rules only supply modifiers.

For a layer ``z = f(a; W, b)`` (dense or convolution, with any batch norm already folded into
``W`` and ``b``) and the relevance ``R`` of its output, a rule built from *terms* computes

.. math::

    z_k = f(\\mathrm{in}_k(a); \\rho_k(W), \\beta_k(b)) \\qquad
    s_g = \\mathrm{mask}_g(z) \\odot R \\,/\\,
          \\mathrm{stab}\\big(\\textstyle\\sum_{k\\in g} t_k z_k\\big)

.. math::

    R_a = \\sum_g c_g \\sum_{k\\in g} t_k\\, \\mathrm{in}_k(a) \\odot
          \\big[\\partial_a f(a; \\rho_k(W), 0)\\big]^\\top s_g

(Montavon et al. 2019, §10.2.2: forward pass, element-wise division, backward pass, element-wise
product). ``stab(x) = x + ε·sign(x)`` with ``sign(0) = +1`` (the stabilizer shared by every rule,
as in zennit). A rule is a frozen dataclass; writing a new one means listing its terms (see
``examples/custom_rule.py``).

Relevance is returned as ``R_a = a ⊙ times_input + free``: input modifiers that are the input
times a mask (``a``, ``a⁺``, ``a⁻``) contribute to ``times_input`` and never divide by ``a``;
modifiers that replace the input (ones for Flat/WSquare, the bounds of ZBox) contribute to
``free``. The interpreter needs this split because it propagates ``R/a`` (see ``interpreter.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.errors import RuleError
from jaxlrp.plan import LayerInfo

Array = Any


def sign0(x: Array) -> Array:
    """``sign(x)`` with ``sign(0) = +1``."""
    return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def value_key(x: Any) -> Any:
    """A hashable key for a rule parameter that compares by value: numbers as floats, concrete
    arrays by shape, dtype and content, anything else (a traced array) by identity."""
    if isinstance(x, (bool, int, float, str, type(None))):
        return x
    value = concrete(x)
    if value is None:
        return ("id", id(x))
    if value.ndim == 0:
        return float(value)
    return ("array", value.shape, str(value.dtype), value.tobytes())


def stabilize(x: Array, epsilon: float | Array, clip: bool = False) -> Array:
    """``x + ε·sign(x)`` with ``sign(0) = +1``: a denominator that is never zero for ε > 0.

    With ``clip=True``, ``sign(x)·max(|x|, ε)`` instead: exact wherever ``|x| >= ε``.
    """
    if clip:
        return sign0(x) * jnp.maximum(jnp.abs(x), epsilon)
    return x + epsilon * sign0(x)


def abstract(x: Array) -> jax.ShapeDtypeStruct:
    """The shape, dtype and sharding type of ``x``: what ``jax.linear_transpose`` needs for
    its primal, including the sharding of arrays on a mesh with Explicit axes."""
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=jax.typeof(x).sharding)


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array when its value is known now, None when it is traced."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _divide(relevance: Array, denominator: Array, eps: Any) -> Array:
    """``relevance / denominator``; with no stabilizer (``ε = 0``: LRP-0) 0 where the
    denominator is 0, never NaN. A positive ε keeps the denominator away from zero already."""
    if isinstance(eps, (int, float)) and eps == 0:
        return safe_divide(relevance, denominator)
    return relevance / denominator


def safe_divide(num: Array, den: Array) -> Array:
    """``num / den`` where ``den`` is not (nearly) zero, 0 elsewhere; never NaN or inf."""
    tiny = jnp.sqrt(jnp.finfo(jnp.result_type(den)).tiny)
    ok = jnp.abs(den) > tiny
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0).astype(jnp.result_type(num))


def unbroadcast(relevance: Array, shape: Sequence[int]) -> Array:
    """Sum ``relevance`` over the axes along which an operand of ``shape`` was broadcast.

    Element-wise primitives broadcast size-1 dimensions and rank-0 operands implicitly
    (``jax.nn.softmax`` divides ``f32[B,N]`` by ``f32[B,1]``). An operand copied to several
    output positions receives the relevance of all of them, so its relevance is

    .. math::

        R_x = \\sum_{\\text{broadcast axes}} R

    (numpy's broadcasting rules: missing leading axes and size-1 axes of ``shape``). Sum the
    relevance *before* dividing it by the operand (``safe_divide(unbroadcast(R, x.shape), x)``).
    Because ``x`` is constant along those axes, the same sum applied to the modified gradient
    ``R / x`` gives the same result, which is how the interpreter adapts node rules that return
    output-shaped cotangents.

    Args:
      relevance: relevance (or modified gradient) of the broadcast result's shape.
      shape: the operand's shape; must broadcast to ``relevance.shape``.

    Returns:
      An array of ``shape`` (``relevance`` itself when the shapes already agree).

    Raises:
      RuleError: when ``shape`` does not broadcast to ``relevance.shape``.
    """
    relevance = jnp.asarray(relevance)
    shape = tuple(int(n) for n in shape)
    if relevance.shape == shape:
        return relevance
    lead = relevance.ndim - len(shape)
    pairs = list(zip(shape, relevance.shape[max(lead, 0):], strict=False))
    if lead < 0 or any(n not in (1, m) for n, m in pairs):
        raise RuleError(
            f"relevance of shape {relevance.shape} cannot be summed to an operand of shape "
            f"{shape}: the operand does not broadcast to it"
        )
    axes = tuple(range(lead)) + tuple(
        lead + i for i, (n, m) in enumerate(pairs) if n == 1 and m != 1
    )
    return jnp.sum(relevance, axis=axes).reshape(shape)


@dataclasses.dataclass(frozen=True)
class LayerContext:
    """What a layer rule sees.

    Attributes:
      apply: ``apply(a, w)``, the layer's linear map without bias: its primitive
        (``dot_general``/``conv``; ``a * w`` for an element-wise affine layer) followed by the
        data movement folded into the layer unit (e.g. the transpose of a vmapped ``W @ x``).
      a: the layer's input activation.
      w: the weights, with batch norm / scaling folded in.
      b: the additive term (bias, folded batch-norm shift), broadcastable to ``z``; may be 0.
      z: the layer's output ``apply(a, w) + b``.
      cotangent: the incoming modified gradient ``R / z`` (used by gradient-type rules).
      input_nonneg: True when the program guarantees ``a >= 0`` (e.g. after a ReLU); rules skip
        terms on ``a⁻``, which are then exactly zero.
      batched: True when axis 0 of ``a`` and ``z`` is a batch axis.
      info: the :class:`~jaxlrp.plan.LayerInfo` of this layer (path, kind, position, loop).
    """

    apply: Callable[[Array, Array], Array]
    a: Array
    w: Array
    b: Array
    z: Array
    cotangent: Array
    input_nonneg: bool
    batched: bool
    info: LayerInfo | None = None

    def forward(self, a: Array, w: Array, b: Array | None) -> Array:
        """``f(a; w, b) = apply(a, w) + b`` (no bias when ``b`` is None)."""
        out = self.apply(a, w)
        return out if b is None else out + b

    def backward(self, w: Array, s: Array) -> Array:
        """``[∂_a f(a; w, 0)]ᵀ s``: the transposed layer applied to ``s`` (input-shaped)."""
        (out,) = jax.linear_transpose(lambda x: self.apply(x, w), abstract(self.a))(s)
        return out


@dataclasses.dataclass(frozen=True)
class Relevance:
    """Input relevance split as ``R_a = a ⊙ times_input + free`` (either part may be None)."""

    times_input: Array | None = None
    free: Array | None = None


class LayerRule:
    """Base class of rules for dense/convolution layers.

    Subclasses implement ``__call__(ctx, relevance) -> Relevance``. Most rules instead subclass
    :class:`ModifiedRule` and only list their terms.
    """

    def __call__(self, ctx: LayerContext, relevance: Array) -> Relevance:  # pragma: no cover
        raise NotImplementedError


# --- input modifiers ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scaled:
    """Input modifier ``in(a) = a ⊙ factor(a)`` (e.g. ``a⁺ = a ⊙ [a > 0]``).

    Attributes:
      factor: ``a -> factor``; the modified input is ``a * factor(a)``.
      zero_when_nonneg: the modified input vanishes when ``a >= 0`` (``a⁻``); such terms are
        skipped on inputs known to be non-negative.
      name: for printing.
    """

    factor: Callable[[Array], Array]
    zero_when_nonneg: bool = False
    name: str = "scaled"

    def __repr__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Replaced:
    """Input modifier that replaces the input: ``in(a) = fn(a)`` (ones, a bound, ...)."""

    fn: Callable[[Array], Array]
    name: str = "replaced"

    def __repr__(self) -> str:
        return self.name


InputModifier = Scaled | Replaced

identity_input = Scaled(lambda a: jnp.ones((), a.dtype), name="a")
positive_input = Scaled(lambda a: (a > 0).astype(a.dtype), name="a⁺")
negative_input = Scaled(lambda a: (a < 0).astype(a.dtype), zero_when_nonneg=True, name="a⁻")
ones_input = Replaced(jnp.ones_like, name="1")


def constant_input(value: Array, name: str = "const") -> Replaced:
    """Input modifier replacing the input by ``value`` broadcast to its shape (ZBox bounds)."""
    return Replaced(lambda a: jnp.broadcast_to(jnp.asarray(value, a.dtype), a.shape), name=name)


def keep(p: Array) -> Array:
    """Parameter modifier that keeps the parameter."""
    return p


def positive(p: Array) -> Array:
    """``p⁺ = max(p, 0)``."""
    return jnp.maximum(p, 0)


def negative(p: Array) -> Array:
    """``p⁻ = min(p, 0)``."""
    return jnp.minimum(p, 0)


@dataclasses.dataclass(frozen=True)
class Term:
    """One modified forward pass ``t · f(in(a); ρ(W), β(b))``.

    Attributes:
      input: the input modifier (:class:`Scaled` or :class:`Replaced`).
      weight: ``ρ``, applied to the (folded) weights.
      bias: ``β``, applied to the (folded) bias; None drops the bias from this term.
      sign: ``t``, the term's sign in both the denominator and the reduction.
    """

    input: InputModifier = identity_input
    weight: Callable[[Array], Array] = keep
    bias: Callable[[Array], Array] | None = keep
    sign: float = 1.0
    basis: tuple[float, float] | None = None
    """Optional ``(p, q)`` with ``weight(W) == p·W + q·W⁺``. When every term of a rule states it
    and the input is known to be non-negative, the rule needs one extra forward pass (``W⁺a``)
    and at most two transposed passes, whatever its number of terms."""


@dataclasses.dataclass(frozen=True)
class Group:
    """Terms sharing one denominator, weighted by ``coefficient``, optionally masked on ``z``."""

    terms: tuple[Term, ...]
    coefficient: float = 1.0
    mask: Callable[[Array], Array] | None = None


class ModifiedRule(LayerRule):
    """A rule given by groups of terms; the four LRP steps are computed generically.

    Subclasses implement :meth:`groups` and may override :meth:`stabilizer_for` (the
    stabilizer added to each denominator; may depend on the layer, as in
    :class:`~jaxlrp.rules.RelativeEpsilon`).
    """

    stabilizer: float = 1e-6
    clip: bool = False  # stabilize by clipping |denominator| at ε instead of adding ε

    def groups(self) -> tuple[Group, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def stabilizer_for(self, ctx: LayerContext) -> float | Array:
        """The value ε added (with the sign of the denominator) to every denominator."""
        return self.stabilizer

    def __call__(self, ctx: LayerContext, relevance: Array) -> Relevance:
        eps = self.stabilizer_for(ctx)
        groups = self.groups()
        if ctx.input_nonneg and all(
            t.basis is not None and isinstance(t.input, Scaled)
            for g in groups for t in g.terms if not _vanishes(t, True)
        ):
            return _nonneg_fast_path(groups, ctx, relevance, eps, self.clip)
        times_input = None
        free = None
        for group in groups:
            terms = [t for t in group.terms if not _vanishes(t, ctx.input_nonneg)]
            if not terms:
                continue
            modified = []
            denominator = 0.0
            for term in terms:
                a_k = _modify_input(term.input, ctx.a)
                w_k = term.weight(ctx.w)
                if _is_plain(term):
                    z_k = ctx.z
                else:
                    b_k = None if term.bias is None else term.bias(ctx.b)
                    z_k = ctx.forward(a_k, w_k, b_k)
                modified.append((term, a_k, w_k))
                denominator = denominator + term.sign * z_k
            s = _divide(relevance, stabilize(denominator, eps, self.clip), eps)
            if group.mask is not None:
                s = s * group.mask(ctx.z).astype(s.dtype)
            for term, a_k, w_k in modified:
                c = ctx.backward(w_k, s)
                scale = group.coefficient * term.sign
                if isinstance(term.input, Scaled):
                    part = scale * term.input.factor(ctx.a) * c
                    times_input = part if times_input is None else times_input + part
                else:
                    part = scale * a_k * c
                    free = part if free is None else free + part
        return Relevance(times_input=times_input, free=free)


def _nonneg_fast_path(
    groups: tuple[Group, ...], ctx: LayerContext, relevance: Array, eps: Any, clip: bool
) -> Relevance:
    """Terms ``p·W + q·W⁺`` on a non-negative input, from ``Wa`` and ``W⁺a`` only.

    ``f(a; pW + qW⁺) = p·Wa + q·W⁺a`` and the transposed passes add up the same way, so any
    number of such terms costs one extra forward pass and two transposed passes (Gamma and
    AlphaBeta otherwise need two of each per output sign).
    """
    linear = ctx.z - ctx.b  # apply(a, W), derived rather than kept as a residual (memory)
    w_plus = jnp.maximum(ctx.w, 0)
    need_plus = any(t.basis[1] for g in groups for t in g.terms if not _vanishes(t, True))
    plus = ctx.apply(ctx.a, w_plus) if need_plus else None
    along_w = None
    along_plus = None
    masked = False
    for group in groups:
        terms = [t for t in group.terms if not _vanishes(t, True)]
        if not terms:
            continue
        denominator = 0.0
        for term in terms:
            p, q = term.basis
            z_k = p * linear if p else 0.0
            if q:
                z_k = z_k + q * plus
            if term.bias is not None:
                z_k = z_k + term.bias(ctx.b)
            denominator = denominator + term.sign * z_k
        s = _divide(relevance, stabilize(denominator, eps, clip), eps)
        if group.mask is not None:
            s = s * group.mask(ctx.z).astype(s.dtype)
        for term in terms:
            p, q = term.basis
            scale = group.coefficient * term.sign
            masked = masked or term.input is not identity_input
            if p:
                along_w = scale * p * s if along_w is None else along_w + scale * p * s
            if q:
                along_plus = scale * q * s if along_plus is None else along_plus + scale * q * s
    c = None
    if along_w is not None:
        c = ctx.backward(ctx.w, along_w)
    if along_plus is not None:
        c_plus = ctx.backward(w_plus, along_plus)
        c = c_plus if c is None else c + c_plus
    if c is not None and masked:
        c = c * (ctx.a > 0).astype(c.dtype)
    return Relevance(times_input=c)


def _vanishes(term: Term, input_nonneg: bool) -> bool:
    """A term on ``a⁻`` is exactly zero when the input is known to be non-negative."""
    return input_nonneg and isinstance(term.input, Scaled) and term.input.zero_when_nonneg


def _modify_input(modifier: InputModifier, a: Array) -> Array:
    if isinstance(modifier, Scaled):
        if modifier is identity_input:
            return a
        return a * modifier.factor(a)
    return modifier.fn(a)


def _is_plain(term: Term) -> bool:
    return term.input is identity_input and term.weight is keep and term.bias is keep and (
        term.sign == 1.0
    )
