"""The relevance ledger and the full rule plan: where relevance goes, node by node.

Expectations are hand computations in NumPy float64 on a two-layer ReLU net
``f(x) = W2 relu(W1 x + b1) + b2``: with LRP-0 a dense layer ``z = W a + b`` passes on
``Σ_j R_j (z_j - b_j) / z_j`` and absorbs ``Σ_j R_j b_j / z_j``; ε absorbs
``Σ_j R_j (1 - z_j / (z_j + ε sign z_j))`` more.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import Composite, rules

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(6, 5))
B1 = RNG.normal(size=6) * 0.5
W2 = RNG.normal(size=(3, 6))
B2 = RNG.normal(size=3) * 0.5
X = RNG.normal(size=(1, 5))
TARGET = 1


def net(x: jax.Array) -> jax.Array:
    h = jax.nn.relu(x @ jnp.asarray(W1.T, x.dtype) + jnp.asarray(B1, x.dtype))
    return h @ jnp.asarray(W2.T, x.dtype) + jnp.asarray(B2, x.dtype)


def hand_lrp(epsilon: float) -> tuple[float, float, float]:
    """(logit, Σ R into layer 2's input, Σ R into the input) for the ε rule (0: LRP-0)."""
    a1 = X[0]
    z1 = W1 @ a1 + B1
    h = np.maximum(z1, 0)
    z2 = W2 @ h + B2
    r2 = np.zeros(3)
    r2[TARGET] = z2[TARGET]

    def stab(z: np.ndarray) -> np.ndarray:
        if epsilon == 0:
            return z
        return z + epsilon * np.where(z >= 0, 1.0, -1.0)

    r_h = h * (W2.T @ (r2 / stab(z2)))
    r_x = a1 * (W1.T @ (r_h / stab(z1)))
    return float(z2[TARGET]), float(r_h.sum()), float(r_x.sum())


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
def test_ledger_accounts_bias_and_epsilon_absorption_like_a_hand_computation(epsilon):
    with jax.enable_x64(True):
        rule = rules.Zero() if epsilon == 0 else rules.Epsilon(epsilon)
        book = jaxlrp.ledger(net, jnp.asarray(X), target=TARGET, composite=Composite(default=rule))
    logit, r_h, r_x = hand_lrp(epsilon)
    layers = [e for e in book.entries if e.kind.startswith("layer/")]
    assert len(layers) == 2
    first, last = layers
    assert book.output_relevance == pytest.approx(logit, rel=1e-9)
    assert last.relevance_out == pytest.approx(logit, rel=1e-9)
    assert last.relevance_in == pytest.approx(r_h, rel=1e-9)
    assert first.relevance_in == pytest.approx(r_x, rel=1e-9)
    assert book.input_relevance == pytest.approx(r_x, rel=1e-9)
    assert last.absorbed == pytest.approx(logit - r_h, rel=1e-9)
    (relu,) = [e for e in book.entries if e.kind == "activation"]
    assert relu.absorbed == pytest.approx(0.0, abs=1e-9)  # Pass is conservative


def test_ledger_names_the_layer_whose_bias_absorbs_the_relevance():
    big_bias = np.zeros(6)
    big_bias[:] = 50.0

    def biased(x):
        h = jax.nn.relu(x @ jnp.asarray(W1.T, x.dtype) + jnp.asarray(big_bias, x.dtype))
        return h @ jnp.asarray(W2.T, x.dtype)

    with jax.enable_x64(True):
        book = jaxlrp.ledger(biased, jnp.asarray(X), target=TARGET,
                             composite=Composite(default=rules.Zero()))  # fmt: skip
    worst = book.absorbing(0.01)
    assert worst and worst[0].kind == "layer/dense"
    assert worst[0].index == min(e.index for e in book.entries if e.kind == "layer/dense")
    assert "absorbed" in str(book) and "dot_general" not in str(book).split("\n")[0]


def test_ledger_is_conservative_on_a_bias_free_relu_net_with_lrp0():
    def no_bias(x):
        return jax.nn.relu(x @ jnp.asarray(W1.T, x.dtype)) @ jnp.asarray(W2.T, x.dtype)

    with jax.enable_x64(True):
        book = jaxlrp.ledger(no_bias, jnp.asarray(X), target=TARGET,
                             composite=Composite(default=rules.Zero()))  # fmt: skip
        logit = float(no_bias(jnp.asarray(X))[0, TARGET])
    assert book.absorbing(1e-9) == []
    assert book.input_relevance == pytest.approx(logit, rel=1e-9)


def test_full_rule_plan_lists_every_equation_on_the_relevance_path_with_its_rule():
    table = jaxlrp.rule_table(net, jnp.asarray(X, jnp.float32), nodes=True,
                              composite=Composite(default=rules.Zero()))  # fmt: skip
    lines = table.splitlines()
    body = lines[1:]
    assert [line.split()[2] for line in body if "layer/" in line] == ["layer/dense", "layer/dense"]
    assert sum("folded into layer" in line for line in body) == 2  # the two bias adds
    assert any("activation" in line and "Pass()" in line for line in body)
    primitives = [line.split()[1] for line in body]
    assert primitives == ["dot_general", "add", "max", "dot_general", "add"]
