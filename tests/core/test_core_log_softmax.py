"""``jax.nn.log_softmax`` is one node with the softmax rule (issue 10), like ``jax.nn.softmax``.

The inlined ``a − log Σ exp(a)`` (``a = x − stop_gradient(max x)``) used to be explained as a
sum ``a − logsumexp``, sending part of the relevance into the log-sum-exp. As one node, AttnLRP's
Taylor rule gives ``R_a = a ⊙ Jᵀ(R_y / y)`` with ``J = I − 1 sᵀ``, i.e.
``R_a = a ⊙ (c − s Σ_j c_j)`` for ``c = R_y / y``, and the default ``Pass`` gives ``R_a = R_y``.
"""

import io
from contextlib import redirect_stdout

import jax
import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import composites

X = np.random.default_rng(0).normal(size=(3, 6))
T = np.array([1, 4, 0])


def log_softmax(x):
    return jax.nn.log_softmax(x, -1)


def output_relevance(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shifted input ``a`` and ``R_y = y ⊙ onehot(t)`` in NumPy."""
    a = x - x.max(-1, keepdims=True)
    y = a - np.log(np.exp(a).sum(-1, keepdims=True))
    relevance = np.zeros_like(y)
    relevance[np.arange(len(t)), t] = y[np.arange(len(t)), t]
    return a, relevance


def test_log_softmax_is_one_softmax_node():
    out = io.StringIO()
    with redirect_stdout(out):
        jaxlrp.print_rules(log_softmax, jnp.asarray(X, jnp.float32),
                           composite=composites.AttnLRP(), nodes=True)  # fmt: skip
    table = out.getvalue()
    assert "softmax" in table and "TaylorAtInput()" in table
    assert table.count("part of the softmax node") == 4  # sum, broadcast, log, subtraction


def test_attnlrp_on_log_softmax_matches_the_numpy_taylor_rule():
    with jax.enable_x64(True):
        r = jaxlrp.explain(log_softmax, jnp.asarray(X), target=jnp.asarray(T),
                           composite=composites.AttnLRP())  # fmt: skip
        r = np.asarray(r)
    a, r_y = output_relevance(X, T)
    s = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    c = r_y / (a - np.log(np.exp(a).sum(-1, keepdims=True)))
    expected = a * (c - s * c.sum(-1, keepdims=True))
    np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-12)


def test_the_default_pass_rule_hands_the_output_relevance_to_the_input():
    with jax.enable_x64(True):
        r = np.asarray(jaxlrp.explain(log_softmax, jnp.asarray(X), target=jnp.asarray(T)))
    np.testing.assert_allclose(r, output_relevance(X, T)[1], rtol=1e-12, atol=1e-12)


def test_a_classifier_ending_in_log_softmax_is_explained_under_jit():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)), jnp.float32)

    def model(w, x):
        return jax.nn.log_softmax(jax.nn.relu(x) @ w, -1)

    x = jnp.asarray(X, jnp.float32)
    eager = jaxlrp.explain(model, w, x, target=2, composite=composites.AttnLRP())
    jitted = jax.jit(lambda w, x: jaxlrp.explain(model, w, x, target=2,
                                                 composite=composites.AttnLRP()))(w, x)  # fmt: skip
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(eager))
