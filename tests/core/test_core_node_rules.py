"""Node rules (products, gradient, routing activations) and blocked paths, each against LRP
computed by hand in NumPy (float64) on small bias-free networks whose layers use LRP-0.

Notation: ``u = x A`` and ``g = x G`` are layers, ``h`` is the node's output, the last layer
``out = h V``; with LRP-0 the last layer gives ``R_h = h ⊙ V[:, t]`` for the target ``t``, and a
first layer gives ``R_x = x ⊙ (A (R_u / u))``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules

RNG = np.random.default_rng(1)
K = 6
A = RNG.normal(size=(5, K))
G = RNG.normal(size=(5, K))
V = RNG.normal(size=(K, 3))
X = RNG.normal(size=(4, 5))
TARGET = np.array([0, 1, 2, 1])
ROWS = np.arange(4)

POSITIVE_X = RNG.uniform(0.5, 1.0, size=(4, 5))
POSITIVE_G = RNG.uniform(0.5, 1.0, size=(5, K))


def _f32(*arrays):
    return [jnp.asarray(a, jnp.float32) for a in arrays]


def _first_layer(x, w, r_u):
    """LRP-0 of ``u = x w`` for relevance ``r_u``: ``R_x = x ⊙ w (R_u / u)``."""
    return x * ((r_u / (x @ w)) @ w.T)


def _last_layer(h):
    """LRP-0 of ``out = h V`` for ``R_out = out_t``: ``R_h = h ⊙ V[:, t]``."""
    return h * V[:, TARGET].T


def _explain(fn, params, x, **composite):
    composite = composites.Composite(default=rules.Zero(), **composite)
    relevance = jaxlrp.explain(
        fn, _f32(*params), *_f32(x), target=jnp.asarray(TARGET), composite=composite
    )
    return np.asarray(relevance)


def _gating(p, x):
    return ((x @ p[0]) * (x @ p[1])) @ p[2]


def _quotient(p, x):
    return ((x @ p[0]) / (x @ p[1])) @ p[2]


def test_uniform_product_gives_each_factor_half():
    """AttnLRP's uniform rule on ``h = u ⊙ g``: ``R_u = R_g = R_h / 2``."""
    assert "1 product node(s): UniformProduct()" in jaxlrp.rule_table(
        _gating, _f32(A, G, V), *_f32(X), composite=composites.Composite()
    )
    relevance = _explain(_gating, (A, G, V), X)
    u, g = X @ A, X @ G
    r_h = _last_layer(u * g)
    expected = _first_layer(X, A, r_h / 2) + _first_layer(X, G, r_h / 2)
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)
    # conservation: the product node loses nothing, the bias-free layers neither
    np.testing.assert_allclose(relevance.sum(1), _gating((A, G, V), X)[ROWS, TARGET], rtol=1e-4)


def test_uniform_product_of_a_quotient_gives_the_divisor_half_too():
    """``h = u / g``: both operands get ``+R_h / 2`` (the gradient would give the divisor
    ``−R_h / 2``)."""
    relevance = _explain(_quotient, (A, POSITIVE_G, V), POSITIVE_X)
    u, g = POSITIVE_X @ A, POSITIVE_X @ POSITIVE_G
    r_h = _last_layer(u / g)
    expected = _first_layer(POSITIVE_X, A, r_h / 2) + _first_layer(POSITIVE_X, POSITIVE_G,
                                                                   r_h / 2)  # fmt: skip
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)


def test_uniform_product_on_a_contraction_splits_each_term_between_its_two_factors():
    """A bilinear ``out_c = Σ_k u_k g_ck`` (both operands depend on x): every term
    ``u_k g_ck / out_c · R_c`` goes half to ``u_k`` and half to ``g_ck``."""

    def bilinear(p, x):
        u = x @ p[0]
        g = (x @ p[1]).reshape(x.shape[0], 3, 2)
        return jnp.einsum("bk,bck->bc", u, g)

    a, g_kernel = A[:, :2], RNG.normal(size=(5, 6))
    relevance = _explain(bilinear, (a, g_kernel), X)
    u, g = X @ a, (X @ g_kernel).reshape(4, 3, 2)
    out = np.einsum("bk,bck->bc", u, g)
    r_out = out * np.eye(3)[TARGET]
    terms = u[:, None, :] * g / out[:, :, None] * r_out[:, :, None]  # (b, c, k)
    expected = _first_layer(X, a, terms.sum(1) / 2) + _first_layer(
        X, g_kernel, (terms / 2).reshape(4, 6)
    )
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)


def test_gradient_as_product_rule_gives_each_factor_all_of_it():
    """``rules.Gradient`` on ``h = u ⊙ g``: ``R_u = u ⊙ ∂h/∂u ⊙ R_h / h = R_h``, ``R_g = R_h``
    (relevance is counted twice, unlike the uniform rule)."""
    relevance = _explain(_gating, (A, G, V), X, product=rules.Gradient())
    r_h = _last_layer((X @ A) * (X @ G))
    expected = _first_layer(X, A, r_h) + _first_layer(X, G, r_h)
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)


def test_gradient_as_activation_rule_weights_relevance_by_the_derivative():
    """``rules.Gradient`` on ``h = tanh(u)``: ``R_u = u ⊙ tanh'(u) ⊙ R_h / h`` (``Pass``
    would give ``R_u = R_h``)."""

    def fn(p, x):
        return jnp.tanh(x @ p[0]) @ p[1]

    u = X @ A
    h = np.tanh(u)
    r_h = _last_layer(h)
    gradient = _explain(fn, (A, V), X, activation=rules.Gradient())
    expected = _first_layer(X, A, u * (1 - h**2) * r_h / h)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
    passed = _explain(fn, (A, V), X)
    np.testing.assert_allclose(passed, _first_layer(X, A, r_h), rtol=1e-4, atol=1e-6)


def test_gradient_is_a_node_rule_not_a_layer_rule():
    with pytest.raises(TypeError, match="must be a layer rule"):
        composites.Composite(default=rules.Gradient())
    with pytest.raises(TypeError, match="must be a layer rule"):
        composites.Composite(dense=rules.Pass())


MASK = (RNG.uniform(size=K) < 0.5).astype(np.float64)


@pytest.mark.parametrize(
    "second, second_np",
    [
        (lambda u: 0.1 * u, lambda u: 0.1 * u),  # leaky ReLU
        (lambda u: u * jnp.asarray(MASK, jnp.float32), lambda u: u * MASK),  # masked copy
    ],
    ids=["leaky_relu", "max_with_masked_copy"],
)
def test_routing_activation_passes_relevance_by_the_gradient(second, second_np):
    """``h = max(u, f(u))`` with both operands functions of ``u`` is one activation whose
    operands share relevance by the gradient, so ``R_u = R_h``. With the masked copy, the
    operand ``u ⊙ 0`` is exactly zero where the mask is 0: an equal split would lose half of
    ``R_h`` there (relevance of a zero operand is dropped)."""
    assert MASK.min() == 0 and MASK.max() == 1

    def fn(p, x):
        u = x @ p[0]
        return jnp.maximum(u, second(u)) @ p[1]

    relevance = _explain(fn, (A, V), X)
    u = X @ A
    r_h = _last_layer(np.maximum(u, second_np(u)))
    np.testing.assert_allclose(relevance, _first_layer(X, A, r_h), rtol=1e-4, atol=1e-6)


def test_pass_routes_by_the_gradient_only_for_routing_ops():
    """``Pass.backward`` directly: a routing op sends all of ``R = 6`` to the arg-max operand;
    otherwise each of the two operands gets ``R / 2``."""

    def info(routes):
        return jaxlrp.NodeInfo(jaxlrp.NodeKind.ACTIVATION, "max", routes, None, "", "max")

    a, b = jnp.array([3.0]), jnp.array([1.5])
    out = jnp.maximum(a, b)
    cotangent = jnp.array([2.0])  # R = out · c = 6
    routed = rules.Pass().backward(jnp.maximum, [a, b], out, cotangent, info(True))
    shared = rules.Pass().backward(jnp.maximum, [a, b], out, cotangent, info(False))
    np.testing.assert_allclose([a * routed[0], b * routed[1]], [[6.0], [0.0]])
    np.testing.assert_allclose([a * shared[0], b * shared[1]], [[3.0], [3.0]])


def test_stop_gradient_term_is_absorbed_like_a_bias():
    """``z = u + stop_gradient(g)``: the blocked term is a constant of the layer ``u`` (folded as
    its bias), so ``R_x = x ⊙ A (R_z / z)`` and nothing reaches ``x`` through ``G``;
    ``Σ R_x = out_t − (g V)_t``."""

    def fn(p, x):
        return (x @ p[0] + jax.lax.stop_gradient(x @ p[1])) @ p[2]

    relevance = _explain(fn, (A, G, V), X)
    u, g = X @ A, X @ G
    z = u + g
    expected = X * ((_last_layer(z) / z) @ A.T)
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(relevance.sum(1), (u @ V)[ROWS, TARGET], rtol=1e-4)


def test_stop_gradient_factor_makes_a_gate_a_pass_through():
    """``h = u ⊙ stop_gradient(g)``: one active operand, so ``R_u = R_h`` (no product split)."""

    def fn(p, x):
        return ((x @ p[0]) * jax.lax.stop_gradient(x @ p[1])) @ p[2]

    relevance = _explain(fn, (A, G, V), X)
    r_h = _last_layer((X @ A) * (X @ G))
    np.testing.assert_allclose(relevance, _first_layer(X, A, r_h), rtol=1e-4, atol=1e-6)


def test_stop_gradient_on_the_input_blocks_all_relevance():
    def fn(p, x):
        return jax.lax.stop_gradient(x) @ p[0]

    relevance = _explain(fn, (A,), X)
    np.testing.assert_array_equal(relevance, np.zeros_like(X))
