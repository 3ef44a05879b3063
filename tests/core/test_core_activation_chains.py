"""Element-wise chains of one input are one activation node.

``jax.nn.softmax`` computes ``exp(x − stop_gradient(max x))``: two element-wise equations of the
one input ``x``. Evaluated separately, ``Pass`` on ``exp`` cannot carry relevance through its
argument where that is exactly 0 (the arg-max, ``c = R / 0``). Evaluated as one node (the chain's
function of ``x``), ``Pass`` gives ``R_x = R_out`` directly. The expected values are written by
hand from the rules' formulas (``docs/lrp-notes.md``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxlrp
from jaxlrp import rules

EPS = 1e-6  # Norm's default stabilizer


def lrp(f, x, r_out, composite=None):
    """Relevance of ``x`` for output relevance ``r_out`` (compiled)."""

    def relevance(x, r_out):
        out, relevance_fn = jaxlrp.lrp(f, composite, argnums=0)(x)
        assert out.shape == r_out.shape
        return relevance_fn(r_out.astype(out.dtype))

    return np.asarray(jax.jit(relevance)(x, jnp.asarray(r_out)), np.float64)


def handwritten_softmax(x):
    e = jnp.exp(x - lax.stop_gradient(jnp.max(x, -1, keepdims=True)))
    return e / jnp.sum(e, -1, keepdims=True)


X = jnp.array([[0.3, -1.2, 0.8, 0.1], [-0.5, 0.4, 1.1, -0.9]])
R = np.array([[0.0, 0.0, 1.0, 0.0], [0.2, -0.1, 0.7, 0.3]])


@pytest.mark.parametrize("softmax", [jax.nn.softmax, handwritten_softmax], ids=["jax", "hand"])
def test_softmax_conserves_relevance_under_pass(softmax):
    got = lrp(softmax, X, R, jaxlrp.Composite(activation=rules.Pass()))
    np.testing.assert_allclose(got.sum(), R.sum(), rtol=1e-4)
    # the arg-max of each row (where x − max = 0) keeps its relevance
    assert np.all(got[np.arange(2), np.argmax(np.asarray(X), -1)] != 0)


def test_jax_softmax_matches_handwritten_softmax():
    composite = jaxlrp.Composite(activation=rules.Pass())
    np.testing.assert_allclose(
        lrp(jax.nn.softmax, X, R, composite), lrp(handwritten_softmax, X, R, composite),
        rtol=1e-5, atol=1e-7,
    )


@pytest.mark.parametrize(
    "f",
    [lambda x: jnp.tanh(2 * x - 0.5), lambda x: jnp.exp(2 * x - 1.0)],
    ids=["tanh", "exp_zero_argument"],
)
def test_chain_passes_relevance_unchanged(f):
    # 2·x − c is exactly 0 at x = c / 2 for exp; Pass on the chain still gives R_x = R_out
    x = jnp.array([[-1.0, 0.1, 0.5, 2.0]])
    r = np.array([[0.4, -0.3, 1.0, 0.2]])
    np.testing.assert_allclose(lrp(f, x, r), r, rtol=1e-5, atol=1e-7)


def test_chain_is_one_activation_node_in_the_rule_table():
    x = jnp.ones((2, 3))
    f = lambda x: jnp.tanh(2 * x - 0.5)  # noqa: E731
    assert jaxlrp.layers(f, x, argnums=0) == []
    table = jaxlrp.rule_table(f, x, argnums=0, nodes=True)
    rows = [line.split() for line in table.splitlines()[1:]]
    kinds = {row[1]: row[2] for row in rows}
    assert kinds == {"mul": "activation", "sub": "fold", "tanh": "fold"}
    first = next(row[0] for row in rows if row[1] == "mul")
    assert table.count(f"part of the activation node at eqn {first}") == 2
    summary = jaxlrp.rule_table(f, x, argnums=0)
    assert "1 activation node(s)" in summary


def test_gelu_is_one_activation_node_with_the_same_relevance():
    # GELU x·Φ(x): the final mul has both operands from x; the chain is one node and Pass gives
    # R_x = R_out as the per-equation evaluation did
    x = jnp.array([[-1.3, -0.2, 0.4, 1.7]])
    r = np.array([[0.5, -0.2, 0.3, 1.0]])
    for approximate in (False, True):
        f = lambda x, a=approximate: jax.nn.gelu(x, approximate=a)  # noqa: E731
        np.testing.assert_allclose(lrp(f, x, r), r, rtol=1e-5, atol=1e-7)
        summary = jaxlrp.rule_table(f, x, argnums=0)
        assert "1 activation node(s)" in summary


def test_relu_routing_is_unchanged():
    x = jnp.array([[-1.0, 0.5, 2.0, -0.1]])
    r = np.array([[0.5, -0.2, 0.3, 1.0]])
    leaky = lambda x: jnp.where(x > 0, x, 0.1 * x)  # noqa: E731
    np.testing.assert_allclose(lrp(jax.nn.relu, x, r), r * (np.asarray(x) > 0), atol=1e-7)
    np.testing.assert_allclose(lrp(leaky, x, r), r, rtol=1e-5, atol=1e-7)


def test_product_rule_pass_is_not_the_gradient():
    # z = mean_0(x) · mean_1(x) (a (1, 3) times a (2, 1) factor): Pass gives each factor half
    # of R, summed over its broadcast axes; the means split theirs as x_ij / n / stab(mean).
    x = np.array([[0.5, 1.0, 2.0], [1.5, 0.7, 0.9]])
    r = np.ones((2, 3))

    def f(x):
        return jnp.mean(x, 0, keepdims=True) * jnp.mean(x, 1, keepdims=True)

    got = lrp(f, jnp.asarray(x, jnp.float32), r, jaxlrp.Composite(product=rules.Pass()))
    a, b = x.mean(0, keepdims=True), x.mean(1, keepdims=True)
    r_a = (r / 2).sum(0, keepdims=True)
    r_b = (r / 2).sum(1, keepdims=True)
    stab = lambda z: z + EPS * np.where(z >= 0, 1.0, -1.0)  # noqa: E731
    expected = x / 2 / stab(a) * r_a + x / 3 / stab(b) * r_b
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(), 6.0, rtol=1e-5)
