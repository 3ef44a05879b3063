"""Rules for the nodes that are not dense/conv layers: activations, sums, max pooling, products.

jaxlrp propagates the *modified gradient* ``c = R / x`` (see ``interpreter.py``). In that form
each rule below is a short formula; ``c_out`` is the cotangent arriving at the node's output and
the rule returns one cotangent per input.

==========================  ==========================================  =======================
rule                        relevance                                   modified gradient
==========================  ==========================================  =======================
``Pass`` (activation)       ``R_x = R_y``                               ``c_x = c_y · y / x``
``Norm`` (sum, avg pool)    ``R_i = x_i / stab(z) · R_z``               ``c_i = Jᵀ(c_z z/stab(z))``
``WinnerTakesAll`` (max)    all ``R`` to the arg-max                    the gradient
``ProportionalMaxPool``     ``R_i = x_i⁺ / Σ x⁺ · R_z`` per window      see :class:`...`
``UniformProduct``          ``R_i = R_z / N`` for ``N`` factors         ``c_i = Jᵢᵀ c_z / N``
``Gradient``                (not LRP) the plain gradient                the gradient
==========================  ==========================================  =======================

The uniform product rule is AttnLRP's rule for multiplicative interactions (Achtibat et al. 2024).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxlrp.plan import NodeInfo
from jaxlrp.rules.base import Array, safe_divide, stabilize, unbroadcast

Fn = Callable[..., Array]


class NodeRule:
    """Base class of rules for activation, sum, max and product nodes.

    ``backward(fn, inputs, output, cotangent, info)`` receives the node's function of its active
    inputs, the input values, the output value and the output cotangent ``c_out = R_out / out``;
    it returns the cotangents of the inputs, one per input, each of that input's shape (or None
    for no relevance). ``info`` is the node's :class:`~jaxlrp.plan.NodeInfo` (kind, primitive,
    module, the gate operand, ...).

    Element-wise primitives broadcast size-1 and rank-0 operands implicitly, so an input may be
    smaller than the output: sum relevance computed in the output's shape with
    :func:`~jaxlrp.rules.unbroadcast` before dividing it by the input. A cotangent returned in
    the output's shape is summed the same way by the interpreter; any other shape raises
    :class:`~jaxlrp.errors.RuleError`.
    """

    def backward(
        self, fn: Fn, inputs: Sequence[Array], output: Array, cotangent: Array, info: NodeInfo
    ) -> Sequence[Array]:  # pragma: no cover - abstract
        raise NotImplementedError


def _vjp(fn: Fn, inputs: Sequence[Array], cotangent: Array) -> Sequence[Array]:
    _, pullback = jax.vjp(fn, *inputs)
    return pullback(cotangent)


@dataclasses.dataclass(frozen=True)
class Gradient(NodeRule):
    """The plain gradient (no LRP modification), for activation, sum, max and product nodes.

    For layers use :class:`~jaxlrp.rules.LayerGradient` (a node rule is not a layer rule).
    """

    def backward(self, fn, inputs, output, cotangent, info):
        return _vjp(fn, inputs, cotangent)


@dataclasses.dataclass(frozen=True)
class TaylorAtInput(NodeRule):
    """The first-order Taylor expansion of the node at its input: ``R_x = x ⊙ Jᵀ(R_y / y)``.

    For a softmax ``s = softmax(x)`` this is AttnLRP's softmax rule

    .. math::  R_x = x ⊙ (R_s − s · Σ_j R_{s,j}),

    (the modified gradient is the plain gradient: ``c_x = Jᵀ c_s``). It is not conservative:
    the difference is the relevance of the implicit bias of the linearization.

    References:
      Achtibat et al., "AttnLRP: Attention-aware layer-wise relevance propagation for
      transformers", ICML 2024, Proposition 3.1.
    """

    def backward(self, fn, inputs, output, cotangent, info):
        return _vjp(fn, inputs, cotangent)


@dataclasses.dataclass(frozen=True)
class Pass(NodeRule):
    """Pass relevance through an element-wise activation unchanged: ``R_x = R_y``.

    When several operands of one element-wise op are functions of the same activation (GELU's
    ``x · Φ(x)``), the relevance is shared equally between them (routing ops such as ``max`` and
    ``select`` share it by the gradient instead), which composes to ``R_x = R_y`` for the whole
    activation. An operand broadcast to the output (``s * γ`` with ``s`` of shape ``(B, 1)``)
    receives the relevance summed over the broadcast axes. Relevance at an exactly-zero
    pre-activation cannot be represented and is dropped.
    """

    def backward(self, fn, inputs, output, cotangent, info):
        if info.routes:
            return _vjp(fn, inputs, cotangent)
        share = cotangent * output / len(inputs)
        return [safe_divide(unbroadcast(share, x.shape), x).astype(x.dtype) for x in inputs]


@dataclasses.dataclass(frozen=True)
class Norm(NodeRule):
    """Proportional split of sums (residual adds, sum and average pooling):
    ``R_i = x_i / stab(z) · R_z``.

    Args:
      stabilizer: ε added to ``z`` with its sign; 0 gives the exact (unstabilized) split, which is
        the gradient in the modified-gradient form.
    """

    stabilizer: float = 1e-6

    def backward(self, fn, inputs, output, cotangent, info):
        if self.stabilizer:
            cotangent = cotangent * output / stabilize(output, self.stabilizer)
        return _vjp(fn, inputs, cotangent)


@dataclasses.dataclass(frozen=True)
class WinnerTakesAll(NodeRule):
    """Max pooling gives all relevance of a window to its maximum (the gradient)."""

    def backward(self, fn, inputs, output, cotangent, info):
        return _vjp(fn, inputs, cotangent)


@dataclasses.dataclass(frozen=True)
class ProportionalMaxPool(NodeRule):
    """Max pooling redistributed as if it were average pooling over positive inputs:
    ``R_i = x_i⁺ / stab(Σ_window x⁺) · R_z``.

    Smoother heatmaps than winner-take-all (Montavon et al. 2019, §10.3). Falls back to the
    gradient for max primitives without a sum counterpart.

    Args:
      stabilizer: ε added to the window sums.
    """

    stabilizer: float = 1e-6

    def backward(self, fn, inputs, output, cotangent, info):
        sum_fn = info.sum_fn
        if sum_fn is None or len(inputs) != 1:
            return _vjp(fn, inputs, cotangent)
        (x,) = inputs
        positive = jnp.maximum(x, 0)
        total, pullback = jax.vjp(sum_fn, positive)
        relevance = output * cotangent
        (c,) = pullback(relevance / stabilize(total, self.stabilizer))
        return [(c * (x > 0)).astype(x.dtype)]


@dataclasses.dataclass(frozen=True)
class UniformProduct(NodeRule):
    """Products of activations (gating, attention ``q·kᵀ`` and ``A·v``): each of the ``N`` factors
    receives ``R / N`` (AttnLRP's uniform rule).

    For a product ``z = x · y`` (element-wise or a contraction) this is ``c_x = Jₓᵀ c_z / N``;
    for a quotient ``x / y`` both operands receive ``R / 2``. A broadcast factor (softmax's
    denominator, of shape ``(B, 1)``) receives its share summed over the broadcast axes.

    References:
      Achtibat et al., "AttnLRP: Attention-aware layer-wise relevance propagation for
      transformers", ICML 2024.
    """

    def backward(self, fn, inputs, output, cotangent, info):
        n = len(inputs)
        if info.primitive == "div" and n == 2:
            relevance = output * cotangent / 2
            return [
                safe_divide(unbroadcast(relevance, x.shape), x).astype(x.dtype) for x in inputs
            ]
        return [c / n for c in _vjp(fn, inputs, cotangent)]


@dataclasses.dataclass(frozen=True)
class SignalTakesAll(NodeRule):
    """Gating products ``z = x ⊙ g`` with a gate ``g = σ(·) ∈ (0, 1)`` (LSTM gates,
    squeeze-excite blocks): the gate acts as a weight, so all relevance goes to the signal and
    none to the gate: ``R_x = R_z`` (``c_x = g ⊙ c_z``), ``R_g = 0``.

    Splitting ``R_z`` with the gate (the uniform product rule) sends relevance into the gate's
    pre-activation, where ``Pass`` keeps it even when σ is saturated and the next ε-rule
    amplifies it over cancelling contributions: on an EfficientNet with 16 squeeze-excite
    blocks, Σ R at the input reached 10¹² × the logit.

    References:
      Arras, Montavon, Müller, Samek, "Explaining recurrent neural network predictions in
      sentiment analysis", WASSA 2017 (the signal-take-all rule for LSTM gates); Montavon et
      al., "Layer-Wise Relevance Propagation: An Overview", 2019, §10.4.
    """

    def backward(self, fn, inputs, output, cotangent, info):
        gate = info.gate
        if gate is None:  # a product without a gate: the uniform split
            return UniformProduct().backward(fn, inputs, output, cotangent, info)
        cts = _vjp(fn, inputs, cotangent)
        return [jnp.zeros_like(x) if k == gate else c
                for k, (x, c) in enumerate(zip(inputs, cts, strict=True))]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class GuidedBackprop(NodeRule):
    """Guided backpropagation on activations: the gradient, with negative cotangents zeroed.

    References:
      Springenberg et al., "Striving for simplicity: the all convolutional net", 2015.
    """

    def backward(self, fn, inputs, output, cotangent, info):
        return _vjp(fn, inputs, jnp.maximum(cotangent, 0))


@dataclasses.dataclass(frozen=True)
class DeconvNet(NodeRule):
    """DeconvNet on activations: the cotangent's positive part, ignoring the forward mask
    (summed over the broadcast axes for a broadcast operand, as the gradient is).

    References:
      Zeiler & Fergus, "Visualizing and understanding convolutional networks", 2014.
    """

    def backward(self, fn, inputs, output, cotangent, info):
        positive = jnp.maximum(cotangent, 0)
        return [unbroadcast(positive, x.shape).astype(x.dtype) for x in inputs]
