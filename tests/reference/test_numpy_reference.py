"""The NumPy reference checked on its own: before it can judge jaxlrp, it must itself be right.

What is checked: the hand-written convolution and its transpose (against a direct sum, the adjoint
identity and JAX's own VJP); the reference forward against Flax; LRP-0 against gradient x input
and conservation; every rule's conservation per layer without bias; the four-step dense rules
against their per-neuron formulas (conventions: the docstring of ``numpy_lrp``); conv rules
against the same rule on the convolution unrolled into a dense matrix; and that the test cases are
well conditioned, so that float32 rounding in jaxlrp cannot by itself exceed the comparison
tolerance.
"""

from dataclasses import replace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import numpy_lrp as ref
from .configurations import BY_NAME, PAIRS, reference_relevance, targets_for
from .models import CASES, make_case


@pytest.fixture(scope="module")
def cases():
    return {name: make_case(name) for name in CASES}


@pytest.fixture(scope="module")
def bias_free_cases():
    return {name: make_case(name, use_bias=False) for name in CASES}


@pytest.fixture(scope="module")
def finite_difference_gradients(bias_free_cases):
    """d logit[target] / dx of each bias-free case by central differences (computed once)."""
    return {
        name: _finite_difference_gradient(case.network, case.x, targets_for(case))
        for name, case in bias_free_cases.items()
    }


# ------------------------------------------------------------------------------------------
# The linear maps themselves
# ------------------------------------------------------------------------------------------


def _direct_conv(x, w, strides, padding):
    """out[b,i,j,o] = sum_{di,dj,c} xpad[b, i*sh+di, j*sw+dj, c] w[di,dj,c,o], as plain loops."""
    xp = np.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    kh, kw, _, cout = w.shape
    ho = (xp.shape[1] - kh) // strides[0] + 1
    wo = (xp.shape[2] - kw) // strides[1] + 1
    out = np.zeros((x.shape[0], ho, wo, cout))
    for b in range(x.shape[0]):
        for i in range(ho):
            for j in range(wo):
                for o in range(cout):
                    window = xp[b, i * strides[0] : i * strides[0] + kh, j * strides[1] :][:, :kw]
                    out[b, i, j, o] = np.sum(window * w[..., o])
    return out


CONV_GEOMETRIES = [
    # (input h, w), kernel (kh, kw), strides, padding
    ((7, 6), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ((7, 6), (3, 2), (2, 1), ((0, 1), (2, 0))),
    ((8, 8), (3, 3), (2, 2), ((0, 0), (0, 0))),
    ((6, 6), (3, 3), (2, 2), ((0, 1), (0, 1))),
    ((5, 9), (1, 4), (3, 2), ((0, 0), (1, 2))),
]


@pytest.mark.parametrize("hw, kernel, strides, padding", CONV_GEOMETRIES)
def test_conv_matches_direct_sum_definition(hw, kernel, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *hw, 3))
    w = rng.normal(size=(*kernel, 3, 4))
    np.testing.assert_allclose(
        ref.conv2d(x, w, strides, padding), _direct_conv(x, w, strides, padding), rtol=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose_is_the_adjoint_of_conv(h, w, kh, kw, sh, sw, pads, seed):
    """<conv(x), g> == <x, conv_transpose(g)> for any geometry."""
    rng = np.random.default_rng(seed)
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    x = rng.normal(size=(2, h, w, 3))
    kernel = rng.normal(size=(kh, kw, 3, 2))
    y = ref.conv2d(x, kernel, (sh, sw), padding)
    g = rng.normal(size=y.shape)
    xt = ref.conv2d_transpose(g, kernel, x.shape, (sh, sw), padding)
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, xt), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("hw, kernel, strides, padding", CONV_GEOMETRIES)
def test_conv_and_transpose_match_jax_conv_and_its_vjp(hw, kernel, strides, padding):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
    w = rng.normal(size=(*kernel, 3, 4)).astype(np.float32)

    def conv(x):
        return jax.lax.conv_general_dilated(
            x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    y, vjp = jax.vjp(conv, jnp.asarray(x))
    g = rng.normal(size=y.shape).astype(np.float32)
    np.testing.assert_allclose(ref.conv2d(x, w, strides, padding), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        ref.conv2d_transpose(g.astype(np.float64), w, x.shape, strides, padding),
        vjp(jnp.asarray(g))[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_pools_match_flax_and_avg_pool_transpose_is_its_adjoint():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 6, 8, 3))
    np.testing.assert_allclose(
        ref.MaxPool().forward(a), nn.max_pool(jnp.asarray(a), (2, 2), strides=(2, 2)), rtol=1e-6
    )
    np.testing.assert_allclose(
        ref.AvgPool().forward(a), nn.avg_pool(jnp.asarray(a), (2, 2), strides=(2, 2)), rtol=1e-6
    )
    g = rng.normal(size=(2, 3, 4, 3))
    np.testing.assert_allclose(
        np.vdot(ref.AvgPool().forward(a), g), np.vdot(a, ref.AvgPool().transpose(g, a.shape))
    )


def test_winner_takes_all_is_the_vjp_of_flax_max_pool():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 6, 8, 3)).astype(np.float32)
    r_out = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
    _, vjp = jax.vjp(lambda a: nn.max_pool(a, (2, 2), strides=(2, 2)), jnp.asarray(a))
    np.testing.assert_allclose(
        ref.winner_takes_all(ref.MaxPool(), a.astype(np.float64), r_out), vjp(r_out)[0], rtol=1e-6
    )


@pytest.mark.parametrize("name", CASES)
def test_reference_forward_matches_flax_apply(cases, name):
    case = cases[name]
    logits = case.model.apply(case.variables, jnp.asarray(case.x))
    assert ref.relative_error(logits, ref.forward(case.network, case.x)[-1]) < 1e-6


# ------------------------------------------------------------------------------------------
# LRP-0 on bias-free ReLU networks: conservation and gradient x input
# ------------------------------------------------------------------------------------------


def _finite_difference_gradient(net, x, target, step=1e-6):
    """Central differences of the target logit, per example (piecewise linear: exact up to
    rounding unless a step crosses a ReLU or max-pool kink)."""
    x = np.asarray(x, dtype=np.float64)
    rows = np.arange(x.shape[0])
    grad = np.zeros_like(x)
    flat = grad.reshape(x.shape[0], -1)
    for index in range(flat.shape[1]):
        e = np.zeros(flat.shape[1])
        e[index] = step
        e = np.broadcast_to(e, flat.shape).reshape(x.shape)
        up = ref.forward(net, x + e)[-1][rows, target]
        down = ref.forward(net, x - e)[-1][rows, target]
        flat[:, index] = (up - down) / (2 * step)
    return grad


@pytest.mark.parametrize("name", CASES)
def test_reference_gradient_matches_finite_differences_and_jax_grad(
    bias_free_cases, finite_difference_gradients, name
):
    case = bias_free_cases[name]
    target = targets_for(case)
    grad = ref.gradient(case.network, case.x, target)
    np.testing.assert_allclose(grad, finite_difference_gradients[name], rtol=1e-6, atol=1e-8)

    def target_logits(x):
        return case.model.apply(case.variables, x)[jnp.arange(x.shape[0]), target].sum()

    assert ref.relative_error(jax.grad(target_logits)(jnp.asarray(case.x)), grad) < 1e-5


@pytest.mark.parametrize("name", CASES)
def test_lrp0_conserves_the_target_logit_and_equals_gradient_times_input(
    bias_free_cases, finite_difference_gradients, name
):
    """LRP-0 on a bias-free dense/conv + ReLU (+ winner-takes-all
    max pool, + Norm average pool) network redistributes exactly the target logit, as x * grad."""
    case = bias_free_cases[name]
    target = targets_for(case)
    composite = ref.Composite(default=ref.Zero(stabilizer=1e-12), norm_stabilizer=1e-12)
    explanation = ref.explain(case.network, case.x, target, composite)
    logits = explanation.activations[-1][np.arange(case.x.shape[0]), target]
    per_example = explanation.relevance.reshape(case.x.shape[0], -1).sum(axis=1)
    np.testing.assert_allclose(per_example, logits, rtol=1e-9, atol=1e-12)
    x_times_grad = case.x * finite_difference_gradients[name]
    assert ref.relative_error(explanation.relevance, x_times_grad) < 1e-7


# ------------------------------------------------------------------------------------------
# Per-layer conservation without bias
# ------------------------------------------------------------------------------------------

CONSERVING_RULES = {
    "Zero": ref.Zero(stabilizer=1e-12),
    "Gamma(0.25)": ref.Gamma(0.25, stabilizer=1e-12),
    "Gamma(1)": ref.Gamma(1.0, stabilizer=1e-12),
    "ZPlus": ref.ZPlus(stabilizer=1e-12),
    "AlphaBeta(2,1)": ref.AlphaBeta(2.0, 1.0, stabilizer=1e-12),
    "AlphaBeta(3,2)": ref.AlphaBeta(3.0, 2.0, stabilizer=1e-12),
    "ZBox(-1,1)": ref.ZBox(-1.0, 1.0, stabilizer=1e-12),
    "WSquare": ref.WSquare(stabilizer=1e-12),
    "Flat": ref.Flat(stabilizer=1e-12),
}


def _bias_free_layers(rng):
    return {
        "dense": (ref.Dense(rng.normal(size=(12, 7))), (5, 12)),
        "conv_same": (
            ref.Conv(rng.normal(size=(3, 3, 4, 4)), None, (1, 1), ((1, 1), (1, 1))),
            (2, 6, 6, 4),
        ),
        "conv_stride2_asymmetric": (
            ref.Conv(rng.normal(size=(3, 3, 4, 4)), None, (2, 2), ((0, 1), (0, 1))),
            (2, 6, 6, 4),
        ),
    }


@pytest.mark.parametrize("layer_name", ["dense", "conv_same", "conv_stride2_asymmetric"])
@pytest.mark.parametrize("rule_name", list(CONSERVING_RULES))
def test_rule_conserves_relevance_per_layer_without_bias(rule_name, layer_name):
    rng = np.random.default_rng(4)
    layer, in_shape = _bias_free_layers(rng)[layer_name]
    # Without zeros in a, every output has a non-zero denominator under every rule (an output
    # whose z+ denominator is exactly 0, e.g. a corner seeing only zeros, absorbs its relevance).
    a = rng.uniform(-1.0, 1.0, size=in_shape)
    z = layer.linear(a, layer.kernel, None)
    r_out = rng.normal(size=z.shape)
    r_in = ref.propagate_linear(layer, CONSERVING_RULES[rule_name], a, r_out)
    np.testing.assert_allclose(
        r_in.reshape(len(a), -1).sum(1), r_out.reshape(len(a), -1).sum(1), rtol=1e-8, atol=1e-10
    )


def test_pooling_rules_conserve_relevance():
    rng = np.random.default_rng(5)
    a = rng.uniform(0.0, 1.0, size=(2, 6, 8, 3))  # post-ReLU: non-negative
    r_out = rng.normal(size=(2, 3, 4, 3))
    for r_in in (
        ref.winner_takes_all(ref.MaxPool(), a, r_out),
        ref.proportional_maxpool(ref.MaxPool(), a, r_out, stabilizer=1e-12),
        ref.norm_avgpool(ref.AvgPool(), a, r_out, stabilizer=1e-12),
    ):
        np.testing.assert_allclose(r_in.sum(axis=(1, 2, 3)), r_out.sum(axis=(1, 2, 3)), rtol=1e-10)


def test_epsilon_absorbs_more_relevance_as_epsilon_grows():
    rng = np.random.default_rng(6)
    layer = ref.Dense(rng.normal(size=(12, 7)))
    a = rng.normal(size=(5, 12))
    r_out = layer.linear(a, layer.kernel, None)  # R = z: every term z/(z + eps sign z) in (0, 1]
    totals = [
        ref.propagate_linear(layer, ref.Epsilon(eps), a, r_out).sum()
        for eps in (1e-6, 0.1, 1.0, 10.0)
    ]
    assert np.all(np.diff(np.abs(totals)) < 0)
    assert abs(totals[-1]) < abs(r_out.sum())


# ------------------------------------------------------------------------------------------
# The four-step dense rules equal their per-neuron formulas, written as loops
# ------------------------------------------------------------------------------------------


def _per_neuron_relevance(a, w, b, r_out, numerator, bias_part, eps=1e-6, mask=None):
    """R_j = sum_k numerator(j, k) / stab(sum_j' numerator(j', k) + bias_part(k)) R_k, looped."""
    r_in = np.zeros_like(a)
    for n in range(a.shape[0]):
        for k in range(w.shape[1]):
            if mask is not None and not mask(n, k):
                continue
            parts = [numerator(a[n, j], w[j, k]) for j in range(w.shape[0])]
            denominator = sum(parts) + bias_part(b[k])
            denominator += eps if denominator >= 0 else -eps
            for j in range(w.shape[0]):
                r_in[n, j] += parts[j] / denominator * r_out[n, k]
    return r_in


def _p(v):
    return max(v, 0.0)


def _m(v):
    return min(v, 0.0)


@pytest.fixture(scope="module")
def dense_setting():
    rng = np.random.default_rng(7)
    w, b = rng.normal(size=(6, 4)), rng.normal(size=4)
    a = rng.uniform(-1, 1, size=(3, 6))
    a[0, 1] = a[2, 4] = 0.0
    return ref.Dense(w, b), a, rng.normal(size=(3, 4))


def test_zero_matches_per_neuron_formula_with_a_clipped_denominator():
    """LRP-0: R_j = sum_k a_j w_jk / (sign0(z_k) max(|z_k|, eps)) R_k. A denominator of size
    >= eps is used as it is (not z + eps), a smaller one is replaced by +-eps."""
    w = np.array([[0.5, 1.0, 2.0], [0.25, -1.0, 1.0], [1.0, 0.5, -3.0]])
    a = np.array([[1.0, 2.0, -1.0 + 1e-4]])  # z = [1e-4, -1.5, 5 - 3e-4]
    a_small = np.array([[1.0, 2.0, -1.0 + 1e-8]])  # z_0 = 1e-8 < eps
    r_out = np.array([[2.0, 1.0, -1.0]])
    layer = ref.Dense(w, None)
    for x, eps in ((a, 1e-6), (a_small, 1e-6), (a, 1e-3)):
        z = x @ w
        clipped = np.where(z >= 0, 1.0, -1.0) * np.maximum(np.abs(z), eps)
        expected = np.zeros_like(x)
        for j in range(3):
            for k in range(3):
                expected[0, j] += x[0, j] * w[j, k] / clipped[0, k] * r_out[0, k]
        actual = ref.propagate_linear(layer, ref.Zero(stabilizer=eps), x, r_out)
        np.testing.assert_allclose(actual, expected, rtol=1e-12)
    # |z_0| = 1e-4 >= 1e-6: exact LRP-0, every unit of R_0 reaches the inputs
    exact = ref.propagate_linear(layer, ref.Zero(), a, r_out * np.array([[1.0, 0, 0]]))
    np.testing.assert_allclose(exact.sum(), 2.0, rtol=1e-9)


def test_epsilon_matches_per_neuron_formula(dense_setting):
    layer, a, r_out = dense_setting
    expected = _per_neuron_relevance(
        a, layer.kernel, layer.bias, r_out, lambda x, w: x * w, lambda b: b, eps=0.3
    )
    np.testing.assert_allclose(ref.propagate_linear(layer, ref.Epsilon(0.3), a, r_out), expected)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 2.0])
def test_generalized_gamma_matches_per_neuron_formula(dense_setting, gamma):
    layer, a, r_out = dense_setting
    z = layer.linear(a, layer.kernel, layer.bias)
    positive = _per_neuron_relevance(
        a,
        layer.kernel,
        layer.bias,
        r_out,
        lambda x, w: _p(x) * (w + gamma * _p(w)) + _m(x) * (w + gamma * _m(w)),
        lambda b: b + gamma * _p(b),
        mask=lambda n, k: z[n, k] > 0,
    )
    negative = _per_neuron_relevance(
        a,
        layer.kernel,
        layer.bias,
        r_out,
        lambda x, w: _p(x) * (w + gamma * _m(w)) + _m(x) * (w + gamma * _p(w)),
        lambda b: b + gamma * _m(b),
        mask=lambda n, k: z[n, k] < 0,
    )
    np.testing.assert_allclose(
        ref.propagate_linear(layer, ref.Gamma(gamma), a, r_out), positive + negative
    )


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (2.0, 1.0)])
def test_alpha_beta_matches_per_neuron_formula(dense_setting, alpha, beta):
    layer, a, r_out = dense_setting
    positive = _per_neuron_relevance(
        a, layer.kernel, layer.bias, r_out, lambda x, w: _p(x) * _p(w) + _m(x) * _m(w), _p
    )
    negative = _per_neuron_relevance(
        a, layer.kernel, layer.bias, r_out, lambda x, w: _p(x) * _m(w) + _m(x) * _p(w), _m
    )
    np.testing.assert_allclose(
        ref.propagate_linear(layer, ref.AlphaBeta(alpha, beta), a, r_out),
        alpha * positive - beta * negative,
    )
    if beta == 0.0:
        np.testing.assert_allclose(ref.propagate_linear(layer, ref.ZPlus(), a, r_out), positive)


def test_zbox_matches_per_neuron_formula(dense_setting):
    layer, a, r_out = dense_setting
    low, high = -1.0, 1.5
    expected = _per_neuron_relevance(
        a,
        layer.kernel,
        layer.bias,
        r_out,
        lambda x, w: x * w - low * _p(w) - high * _m(w),
        lambda b: b - _p(b) - _m(b),  # = 0: the bias cancels
    )
    np.testing.assert_allclose(ref.propagate_linear(layer, ref.ZBox(low, high), a, r_out), expected)


def test_wsquare_and_flat_match_per_neuron_formulas(dense_setting):
    layer, a, r_out = dense_setting
    wsquare = _per_neuron_relevance(
        a, layer.kernel, layer.bias, r_out, lambda x, w: w * w, lambda b: b * b
    )
    flat = _per_neuron_relevance(
        a, layer.kernel, layer.bias, r_out, lambda x, w: 1.0, lambda b: 0.0
    )
    np.testing.assert_allclose(ref.propagate_linear(layer, ref.WSquare(), a, r_out), wsquare)
    np.testing.assert_allclose(ref.propagate_linear(layer, ref.Flat(), a, r_out), flat)


# ------------------------------------------------------------------------------------------
# Conv rules equal the same rule on the convolution unrolled into a dense matrix
# ------------------------------------------------------------------------------------------


def _unrolled(conv: ref.Conv, kernel, in_shape):
    """The matrix M with conv(x)[flat] = x[flat] @ M, for a single example."""
    size = int(np.prod(in_shape[1:]))
    basis = np.eye(size).reshape(size, *in_shape[1:])
    return ref.conv2d(basis, kernel, conv.strides, conv.padding).reshape(size, -1)


@pytest.mark.parametrize(
    "rule_name", ["Zero", "Gamma(0.25)", "ZPlus", "AlphaBeta(2,1)", "ZBox(-1,1)", "WSquare", "Flat"]
)
@pytest.mark.parametrize(
    "strides, padding", [((1, 1), ((1, 1), (1, 1))), ((2, 2), ((0, 1), (1, 0)))]
)
def test_conv_rule_equals_dense_rule_on_the_unrolled_convolution(rule_name, strides, padding):
    rng = np.random.default_rng(8)
    conv = ref.Conv(rng.normal(size=(3, 3, 2, 3)), rng.normal(size=3), strides, padding)
    a = rng.uniform(-1, 1, size=(1, 5, 5, 2))
    a[0, 0, 0, 0] = a[0, 4, 2, 1] = 0.0
    z = conv.linear(a, conv.kernel, conv.bias)
    r_out = rng.normal(size=z.shape)
    rule = replace(CONSERVING_RULES[rule_name], stabilizer=1e-6)
    out_positions = z.shape[1] * z.shape[2]
    tiled_bias = np.tile(conv.bias, out_positions)
    if rule_name == "Flat":
        # ones over each output's receptive field, not over the whole unrolled matrix
        m = _unrolled(conv, np.ones_like(conv.kernel), a.shape)
        s = r_out.reshape(1, -1) / ref.stabilize(np.ones((1, m.shape[0])) @ m, 1e-6)
        expected = s @ m.T
    else:
        dense = ref.Dense(_unrolled(conv, conv.kernel, a.shape), tiled_bias)
        expected = ref.propagate_linear(dense, rule, a.reshape(1, -1), r_out.reshape(1, -1))
    actual = ref.propagate_linear(conv, rule, a, r_out)
    np.testing.assert_allclose(actual.reshape(1, -1), expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------
# The test cases jaxlrp is compared on are well conditioned
# ------------------------------------------------------------------------------------------


def _perturbed(case_network, rng, relative):
    layers = []
    for layer in case_network:
        if isinstance(layer, ref.Dense | ref.Conv):
            noise = 1 + relative * rng.standard_normal(layer.kernel.shape)
            bias = layer.bias
            if bias is not None:
                bias = bias * (1 + relative * rng.standard_normal(bias.shape))
            layer = replace(layer, kernel=layer.kernel * noise, bias=bias)
        layers.append(layer)
    return layers


@pytest.mark.parametrize("configuration_name, case_name", PAIRS)
def test_reference_case_is_well_conditioned_at_float32_rounding(
    cases, configuration_name, case_name
):
    """Perturbing x and every weight by ~float32 rounding (relative 1e-7) moves the reference
    relevance by far less than the 1e-5 tolerance: no denominator near zero, no ReLU, Gamma mask
    or max-pool decision on a knife edge. A jaxlrp mismatch on these cases is then a real one."""
    case, configuration = cases[case_name], BY_NAME[configuration_name]
    target = targets_for(case)
    relevance = reference_relevance(configuration, case, target)
    assert np.abs(relevance).max() > 0
    rng = np.random.default_rng(9)
    network = _perturbed(case.network, rng, 1e-7)
    x = case.x.astype(np.float64) * (1 + 1e-7 * rng.standard_normal(case.x.shape))
    moved = ref.explain(network, x, target, configuration.reference(case)).relevance
    assert ref.relative_error(moved, relevance) < 2e-6
