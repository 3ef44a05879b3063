"""An independent float64 NumPy implementation of Layer-wise Relevance Propagation.

This module is the yardstick the tests hold ``jaxlrp`` to. It deliberately imports neither
``jaxlrp`` nor ``jax``: every layer's forward map and its transpose are written out here in NumPy,
and every rule is the "four steps" of Montavon et al. (2019), section 10.2.2, spelled out:

    1. z_k   = f(in_k(a); W_k, b_k)                      (forward of the modified layer)
    2. s_g   = mask_g(z) * R_out / stab(sum_{k in g} t_k z_k)
    3. c_k   = VJP_{W_k}(s_g)                             (transpose of a -> f(a; W_k, 0))
    4. R_in  = sum_g coef_g sum_{k in g} t_k in_k(a) * c_k

Conventions (the ones jaxlrp documents in README.md, "Rules and composites"):

* ``sign0(0) = +1``;
* every rule except LRP-0 *adds* its stabilizer: ``stab(x) = x + eps * sign0(x)`` (LRP-eps with
  ``eps = epsilon``; gamma, alpha-beta, z+, z^B, w^2, flat and Norm with ``eps = stabilizer``,
  default 1e-6);
* LRP-0 (:func:`Zero`) *clips* instead: ``stab(x) = sign0(x) * max(|x|, eps)``, which leaves every
  denominator with ``|z| >= eps`` exact, so ``Zero()`` and ``Epsilon(1e-6)`` differ;
* the bias is an extra input with ``a_0 = 1`` that absorbs its share, modified per term: in gamma,
  alpha-beta and z+ only the term on ``a+`` carries a bias (gamma: ``b + gamma b+`` for positive
  outputs, ``b + gamma b-`` for negative ones; alpha-beta: ``b+`` in the positive part, ``b-`` in
  the negative part), the terms on ``a-`` none; z^B's three terms carry ``b``, ``b+`` and ``b-``;
  w^2 uses ``b^2``; flat none;
* the output relevance is ``R_out = logits * onehot(target)``.

The rule definitions (terms, groups, masks, defaults) are those of zennit (PyTorch) 0.5, which has
no separate LRP-0 rule: its ``Epsilon`` with a small epsilon plays that part, while :func:`Zero`
here (as in jaxlrp) clips.

A network is a list of layers (:class:`Dense`, :class:`Conv`, :class:`ReLU`, :class:`MaxPool`,
:class:`AvgPool`, :class:`Flatten`). Arrays are NHWC, conv kernels HWIO, dense kernels
(in, out), exactly like Flax, so weights taken from Flax ``variables`` plug in unchanged.

References:
    G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller, "Layer-Wise Relevance
    Propagation: An Overview", in Explainable AI, LNCS 11700, Springer, 2019.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_STABILIZER = 1e-6

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def sign0(x: np.ndarray) -> np.ndarray:
    """Sign with sign0(0) = +1 (the stabilizer's convention)."""
    return np.where(x >= 0, 1.0, -1.0)


def stabilize(x: np.ndarray, eps: float, clip: bool = False) -> np.ndarray:
    """x + eps * sign0(x): moves a denominator away from zero, keeping its sign.

    With ``clip``: sign0(x) * max(|x|, eps), exact wherever |x| >= eps (LRP-0's convention).
    """
    if clip:
        return sign0(x) * np.maximum(np.abs(x), eps)
    return x + eps * sign0(x)


def pos(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def neg(x: np.ndarray) -> np.ndarray:
    return np.minimum(x, 0.0)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """The (low, high) zero padding of XLA's / Flax's ``padding='SAME'`` for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------------------------
# Linear maps written out in NumPy: dense and 2-D convolution (NHWC, HWIO), with their transposes
# --------------------------------------------------------------------------------------------


def conv2d(x: np.ndarray, w: np.ndarray, strides=(1, 1), padding=((0, 0), (0, 0))) -> np.ndarray:
    """Cross-correlation of NHWC ``x`` with HWIO ``w`` (no bias), zero padding, given strides."""
    kh, kw, cin, cout = w.shape
    assert x.shape[-1] == cin, (x.shape, w.shape)
    sh, sw = strides
    xp = np.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    hp, wp = xp.shape[1:3]
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, cout), dtype=np.result_type(x, w))
    for di in range(kh):
        for dj in range(kw):
            patch = xp[:, di : di + sh * (ho - 1) + 1 : sh, dj : dj + sw * (wo - 1) + 1 : sw, :]
            out += patch @ w[di, dj]
    return out


def conv2d_transpose(
    g: np.ndarray, w: np.ndarray, in_shape, strides=(1, 1), padding=((0, 0), (0, 0))
) -> np.ndarray:
    """The adjoint of ``x -> conv2d(x, w, strides, padding)`` applied to ``g`` (shape ``in_shape``).

    Every output position scatters ``g @ w[di, dj].T`` back to the input position it read; the
    padded border is cropped at the end, and input positions no window reads get zero.
    """
    kh, kw, cin, cout = w.shape
    sh, sw = strides
    (p0, p1), (q0, q1) = padding
    n, h, wd, c = in_shape
    assert c == cin
    ho, wo = g.shape[1:3]
    gp = np.zeros((n, h + p0 + p1, wd + q0 + q1, cin), dtype=np.result_type(g, w))
    for di in range(kh):
        for dj in range(kw):
            gp[:, di : di + sh * (ho - 1) + 1 : sh, dj : dj + sw * (wo - 1) + 1 : sw, :] += (
                g @ w[di, dj].T
            )
    return gp[:, p0 : p0 + h, q0 : q0 + wd, :]


@dataclass(frozen=True)
class Dense:
    """z = a @ kernel + bias, kernel of shape (in, out)."""

    kernel: np.ndarray
    bias: np.ndarray | None = None
    kind = "dense"

    def linear(self, a, kernel, bias):
        z = a @ kernel
        return z if bias is None else z + bias

    def transpose(self, g, kernel, in_shape):
        return g @ kernel.T


@dataclass(frozen=True)
class Conv:
    """2-D convolution, NHWC input, HWIO kernel, explicit zero padding ((ph0, ph1), (pw0, pw1))."""

    kernel: np.ndarray
    bias: np.ndarray | None = None
    strides: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    kind = "conv"

    def linear(self, a, kernel, bias):
        z = conv2d(a, kernel, self.strides, self.padding)
        return z if bias is None else z + bias

    def transpose(self, g, kernel, in_shape):
        return conv2d_transpose(g, kernel, in_shape, self.strides, self.padding)


@dataclass(frozen=True)
class ReLU:
    kind = "activation"


@dataclass(frozen=True)
class Flatten:
    """Row-major reshape of each example to a vector (Flax: ``x.reshape((x.shape[0], -1))``)."""

    kind = "reshape"


def _windows(shape, window, strides):
    """Yield (i, j, row-slice, col-slice) for every pooling window of a VALID pool."""
    (wh, ww), (sh, sw) = window, strides
    ho, wo = (shape[1] - wh) // sh + 1, (shape[2] - ww) // sw + 1
    for i in range(ho):
        for j in range(wo):
            yield i, j, slice(i * sh, i * sh + wh), slice(j * sw, j * sw + ww)


@dataclass(frozen=True)
class MaxPool:
    """Max pooling with VALID padding (Flax ``nn.max_pool`` default)."""

    window: tuple[int, int] = (2, 2)
    strides: tuple[int, int] = (2, 2)
    kind = "maxpool"

    def forward(self, a):
        (wh, ww), (sh, sw) = self.window, self.strides
        ho, wo = (a.shape[1] - wh) // sh + 1, (a.shape[2] - ww) // sw + 1
        out = np.empty((a.shape[0], ho, wo, a.shape[3]), dtype=a.dtype)
        for i, j, rs, cs in _windows(a.shape, self.window, self.strides):
            out[:, i, j, :] = a[:, rs, cs, :].max(axis=(1, 2))
        return out


@dataclass(frozen=True)
class AvgPool:
    """Average pooling with VALID padding (Flax ``nn.avg_pool`` default): window sum / size."""

    window: tuple[int, int] = (2, 2)
    strides: tuple[int, int] = (2, 2)
    kind = "avgpool"

    def forward(self, a):
        (wh, ww), (sh, sw) = self.window, self.strides
        ho, wo = (a.shape[1] - wh) // sh + 1, (a.shape[2] - ww) // sw + 1
        out = np.empty((a.shape[0], ho, wo, a.shape[3]), dtype=a.dtype)
        for i, j, rs, cs in _windows(a.shape, self.window, self.strides):
            out[:, i, j, :] = a[:, rs, cs, :].mean(axis=(1, 2))
        return out

    def transpose(self, g, in_shape):
        """Adjoint of the average pool: each input gets g / window size of every window it is in."""
        size = self.window[0] * self.window[1]
        out = np.zeros(in_shape, dtype=g.dtype)
        for i, j, rs, cs in _windows(in_shape, self.window, self.strides):
            out[:, rs, cs, :] += g[:, i : i + 1, j : j + 1, :] / size
        return out


Layer = Dense | Conv | ReLU | Flatten | MaxPool | AvgPool


def layer_forward(layer: Layer, a: np.ndarray) -> np.ndarray:
    if isinstance(layer, Dense | Conv):
        return layer.linear(a, layer.kernel, layer.bias)
    if isinstance(layer, ReLU):
        return pos(a)
    if isinstance(layer, Flatten):
        return a.reshape(a.shape[0], -1)
    return layer.forward(a)


def forward(net: Sequence[Layer], x: np.ndarray) -> list[np.ndarray]:
    """All activations: [x, layer_0(x), layer_1(layer_0(x)), ...]; the last one is the logits."""
    acts = [np.asarray(x, dtype=np.float64)]
    for layer in net:
        acts.append(layer_forward(layer, acts[-1]))
    return acts


# --------------------------------------------------------------------------------------------
# Rules for linear layers: terms grouped into groups, one generic four-step propagation
# --------------------------------------------------------------------------------------------

# A term's input modifier maps the layer input a to the modified input (a+, a-, ones, bounds);
# its parameter modifiers map W and b to the modified parameters (W+, W^2, W + gamma W+, ...).
InputMod = Callable[[np.ndarray], np.ndarray]
ParamMod = Callable[[np.ndarray], np.ndarray]


def _identity(x):
    return x


def _zero(x):
    return np.zeros_like(x)


def _ones(x):
    return np.ones_like(x)


@dataclass(frozen=True)
class Term:
    """One modified forward f(input(a); weight(W), bias(b)), entering its group with sign t."""

    input: InputMod = _identity
    weight: ParamMod = _identity
    bias: ParamMod = _identity
    sign: float = 1.0
    multiply_by_input: bool = True  # R_in = in(a) * c ; the "input" of WSquare/Flat is ones


@dataclass(frozen=True)
class Group:
    terms: tuple[Term, ...]
    coefficient: float = 1.0
    mask: Callable[[np.ndarray], np.ndarray] | None = None  # a function of the unmodified z


@dataclass(frozen=True)
class LinearRule:
    """A rule for dense/conv layers: its groups of terms and how denominators are stabilized
    (``stabilize(denominator, stabilizer, clip)``: added, or with ``clip`` clipped at it)."""

    name: str
    groups: tuple[Group, ...]
    stabilizer: float = DEFAULT_STABILIZER
    clip: bool = False


def propagate_linear(
    layer: Dense | Conv, rule: LinearRule, a: np.ndarray, r_out: np.ndarray
) -> np.ndarray:
    """The four steps of LRP for one dense/conv layer and one rule (float64)."""
    z = layer.linear(a, layer.kernel, layer.bias)
    bias = layer.bias if layer.bias is not None else np.zeros(z.shape[-1])
    r_in = np.zeros_like(a, dtype=np.float64)
    for group in rule.groups:
        mods = [
            (term, term.input(a), term.weight(layer.kernel), term.bias(bias))
            for term in group.terms
        ]
        # step 1: the modified forward of every term of the group, summed with signs
        denominator = sum(term.sign * layer.linear(a_k, w_k, b_k) for term, a_k, w_k, b_k in mods)
        # step 2: the relevance per unit of (stabilized) denominator, masked
        s = r_out / stabilize(denominator, rule.stabilizer, rule.clip)
        if group.mask is not None:
            s = group.mask(z) * s
        # steps 3 and 4: transposed (VJP) of each modified layer, times its modified input
        for term, a_k, w_k, _ in mods:
            c = layer.transpose(s, w_k, a.shape)
            contribution = a_k * c if term.multiply_by_input else c
            r_in = r_in + group.coefficient * term.sign * contribution
    return r_in


def _no_bias(b):
    return np.zeros_like(b)


def Zero(stabilizer: float = DEFAULT_STABILIZER) -> LinearRule:
    """LRP-0: R_j = sum_k a_j w_jk / z_k R_k, with |z_k| clipped at the stabilizer (no epsilon)."""
    return LinearRule("Zero", (Group((Term(),)),), stabilizer, clip=True)


def Epsilon(epsilon: float = 1e-6) -> LinearRule:
    """LRP-eps: R_j = sum_k a_j w_jk / (z_k + eps * sign0(z_k)) R_k (eps added, never clipped)."""
    return LinearRule(f"Epsilon({epsilon})", (Group((Term(),)),), epsilon)


def Gamma(gamma: float = 0.25, stabilizer: float = DEFAULT_STABILIZER) -> LinearRule:
    """Generalized LRP-gamma (zennit): positive and negative outputs, mixed-sign inputs."""

    def up(x):  # x + gamma * x+
        return x + gamma * pos(x)

    def down(x):  # x + gamma * x-
        return x + gamma * neg(x)

    positive = Group(
        (Term(pos, up, up), Term(neg, down, _no_bias)), mask=lambda z: (z > 0).astype(float)
    )
    negative = Group(
        (Term(pos, down, down), Term(neg, up, _no_bias)), mask=lambda z: (z < 0).astype(float)
    )
    return LinearRule(f"Gamma({gamma})", (positive, negative), stabilizer)


def OriginalGamma(gamma: float = 0.25, stabilizer: float = DEFAULT_STABILIZER) -> LinearRule:
    """The overview's LRP-gamma: a (w + gamma w+) / (sum a (w + gamma w+) + b + gamma b+) for
    every output, whatever its sign."""

    def up(x):
        return x + gamma * pos(x)

    return LinearRule(f"OriginalGamma({gamma})", (Group((Term(_identity, up, up),)),), stabilizer)


def AlphaBeta(alpha: float = 2.0, beta: float = 1.0, stabilizer=DEFAULT_STABILIZER) -> LinearRule:
    """alpha * (positive contributions share) - beta * (negative contributions share)."""
    positive = Group((Term(pos, pos, pos), Term(neg, neg, _no_bias)), coefficient=alpha)
    negative = Group((Term(pos, neg, neg), Term(neg, pos, _no_bias)), coefficient=-beta)
    return LinearRule(f"AlphaBeta({alpha}, {beta})", (positive, negative), stabilizer)


def ZPlus(stabilizer: float = DEFAULT_STABILIZER) -> LinearRule:
    """z+ (= alpha1beta0): only positive contributions a+w+ + a-w- (bias only with a+w+)."""
    return LinearRule(
        "ZPlus", (Group((Term(pos, pos, pos), Term(neg, neg, _no_bias))),), stabilizer
    )


def ZBox(low, high, stabilizer: float = DEFAULT_STABILIZER) -> LinearRule:
    """z^B: a w - l w+ - h w- with bounds l <= a <= h (broadcast to a's shape)."""

    def lows(a):
        return np.broadcast_to(np.asarray(low, dtype=np.float64), a.shape)

    def highs(a):
        return np.broadcast_to(np.asarray(high, dtype=np.float64), a.shape)

    terms = (Term(), Term(lows, pos, pos, sign=-1.0), Term(highs, neg, neg, sign=-1.0))
    return LinearRule("ZBox", (Group(terms),), stabilizer)


def WSquare(stabilizer: float = DEFAULT_STABILIZER) -> LinearRule:
    """w^2: R_j = sum_k w_jk^2 / stab(sum_j w_jk^2 + b_k^2) R_k, independent of the input."""

    def square(w):
        return w * w

    term = Term(_ones, square, square, multiply_by_input=False)
    return LinearRule("WSquare", (Group((term,)),), stabilizer)


def Flat(stabilizer: float = DEFAULT_STABILIZER) -> LinearRule:
    """flat: relevance spread uniformly over each output's receptive field."""
    term = Term(_ones, _ones, _no_bias, multiply_by_input=False)
    return LinearRule("Flat", (Group((term,)),), stabilizer)


# --------------------------------------------------------------------------------------------
# Rules for pooling layers
# --------------------------------------------------------------------------------------------


def winner_takes_all(pool: MaxPool, a: np.ndarray, r_out: np.ndarray) -> np.ndarray:
    """All of a window's relevance goes to its (first) maximum: the gradient of max pooling."""
    r_in = np.zeros_like(a, dtype=np.float64)
    wh, ww = pool.window
    for i, j, rs, cs in _windows(a.shape, pool.window, pool.strides):
        patch = a[:, rs, cs, :].reshape(a.shape[0], wh * ww, a.shape[3])
        winner = patch.argmax(axis=1)  # first maximum in row-major window order
        onehot = np.zeros_like(patch)
        np.put_along_axis(onehot, winner[:, None, :], 1.0, axis=1)
        r_in[:, rs, cs, :] += (
            onehot.reshape(a.shape[0], wh, ww, a.shape[3]) * r_out[:, i : i + 1, j : j + 1, :]
        )
    return r_in


def proportional_maxpool(
    pool: MaxPool, a: np.ndarray, r_out: np.ndarray, stabilizer: float = DEFAULT_STABILIZER
) -> np.ndarray:
    """Max pooling explained as if it summed the positive inputs: R_in = a+ / stab(sum a+) R_out."""
    r_in = np.zeros_like(a, dtype=np.float64)
    for i, j, rs, cs in _windows(a.shape, pool.window, pool.strides):
        patch = pos(a[:, rs, cs, :])
        total = patch.sum(axis=(1, 2), keepdims=True)
        r_in[:, rs, cs, :] += (
            patch / stabilize(total, stabilizer) * r_out[:, i : i + 1, j : j + 1, :]
        )
    return r_in


def norm_avgpool(
    pool: AvgPool, a: np.ndarray, r_out: np.ndarray, stabilizer: float = DEFAULT_STABILIZER
) -> np.ndarray:
    """Norm rule on average pooling: R_in = a * VJP(R_out / stab(z)), z the pooled output."""
    z = pool.forward(a)
    return a * pool.transpose(r_out / stabilize(z, stabilizer), a.shape)


# --------------------------------------------------------------------------------------------
# Composites and the whole backward pass
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Composite:
    """Which rule each layer gets: ``first`` for the first dense/conv layer (the one fed by the
    input), then ``conv``/``dense`` by kind, then ``default``; max pooling by ``maxpool``
    ("winner" or "proportional"); average pooling always uses Norm, ReLU always Pass."""

    default: LinearRule | None = None
    first: LinearRule | None = None
    conv: LinearRule | None = None
    dense: LinearRule | None = None
    maxpool: str = "winner"
    norm_stabilizer: float = DEFAULT_STABILIZER

    def rule_for(self, index: int, layer: Layer, first_index: int) -> LinearRule:
        if index == first_index and self.first is not None:
            return self.first
        specific = self.conv if isinstance(layer, Conv) else self.dense
        rule = specific if specific is not None else self.default
        if rule is None:
            raise ValueError(f"no rule for layer {index} ({layer.kind})")
        return rule


def EpsilonGammaBox(
    low, high, epsilon: float = 1e-6, gamma: float = 0.25, generalized: bool = True
) -> Composite:
    """zennit's preset: ZBox on the first conv, Gamma on other convs, Epsilon on dense layers
    (with ``generalized=False`` the overview's original gamma on the convs)."""
    conv = Gamma(gamma) if generalized else OriginalGamma(gamma)
    return Composite(first=ZBox(low, high), conv=conv, dense=Epsilon(epsilon))


def output_relevance(logits: np.ndarray, target) -> np.ndarray:
    """R_out = logits * onehot(target); target an int or one int per example."""
    target = np.broadcast_to(np.asarray(target), (logits.shape[0],))
    onehot = np.zeros_like(logits)
    onehot[np.arange(logits.shape[0]), target] = 1.0
    return logits * onehot


@dataclass
class Explanation:
    relevance: np.ndarray  # relevance of the input, x's shape
    activations: list[np.ndarray]  # forward activations, acts[0] = x, acts[-1] = logits
    layer_relevances: list[np.ndarray] = field(default_factory=list)  # R entering each layer's
    # input, aligned with ``activations`` (layer_relevances[i] has acts[i]'s shape)


def first_linear_index(net: Sequence[Layer]) -> int:
    return next(i for i, layer in enumerate(net) if isinstance(layer, Dense | Conv))


def propagate_layer(layer: Layer, rule, a: np.ndarray, r_out: np.ndarray, composite: Composite):
    if isinstance(layer, Dense | Conv):
        return propagate_linear(layer, rule, a, r_out)
    if isinstance(layer, ReLU):
        return r_out  # Pass
    if isinstance(layer, Flatten):
        return r_out.reshape(a.shape)
    if isinstance(layer, MaxPool):
        if composite.maxpool == "winner":
            return winner_takes_all(layer, a, r_out)
        if composite.maxpool == "proportional":
            return proportional_maxpool(layer, a, r_out)
        raise ValueError(composite.maxpool)
    if isinstance(layer, AvgPool):
        return norm_avgpool(layer, a, r_out, composite.norm_stabilizer)
    raise TypeError(layer)


def explain(
    net: Sequence[Layer], x: np.ndarray, target, composite: Composite, r_out=None
) -> Explanation:
    """LRP of ``net`` at ``x`` for ``target`` (or a given output relevance ``r_out``)."""
    acts = forward(net, x)
    r = output_relevance(acts[-1], target) if r_out is None else np.asarray(r_out, np.float64)
    first = first_linear_index(net)
    layer_relevances = [None] * len(acts)
    layer_relevances[-1] = r
    for index in reversed(range(len(net))):
        layer = net[index]
        rule = composite.rule_for(index, layer, first) if isinstance(layer, Dense | Conv) else None
        r = propagate_layer(layer, rule, acts[index], r, composite)
        layer_relevances[index] = r
    return Explanation(r, acts, layer_relevances)


def gradient(net: Sequence[Layer], x: np.ndarray, target) -> np.ndarray:
    """d logits[target] / dx by reverse mode written out per layer (for checking LRP-0)."""
    acts = forward(net, x)
    g = output_relevance(np.ones_like(acts[-1]), target)
    for index in reversed(range(len(net))):
        layer, a = net[index], acts[index]
        if isinstance(layer, Dense | Conv):
            g = layer.transpose(g, layer.kernel, a.shape)
        elif isinstance(layer, ReLU):
            g = g * (a > 0)
        elif isinstance(layer, Flatten):
            g = g.reshape(a.shape)
        elif isinstance(layer, MaxPool):
            g = winner_takes_all(layer, a, g)
        elif isinstance(layer, AvgPool):
            g = layer.transpose(g, a.shape)
    return g


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| (Frobenius), in float64."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))
