"""Gating products ``x ⊙ σ(·)`` (squeeze-excite blocks, LSTM gates) are *gate* nodes: with the
default :class:`~jaxlrp.rules.SignalTakesAll` the signal receives all relevance and the gate none
(Arras et al. 2017). Expectations are hand computations in NumPy float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import Composite, rules

RNG = np.random.default_rng(3)
X = RNG.normal(size=(2, 4, 4, 5))
W_SE = RNG.normal(size=(5, 5))
B_SE = RNG.normal(size=5)
W_OUT = RNG.normal(size=(5, 3))
LRP0 = Composite(default=rules.Zero(), sum=rules.Norm(0.0))


def squeeze_excite(x: jax.Array) -> jax.Array:
    """Squeeze (spatial mean) → dense → σ → excite (x ⊙ g, broadcast over H, W) → pool → dense."""
    s = jnp.mean(x, axis=(1, 2), keepdims=True)  # (B, 1, 1, C)
    g = jax.nn.sigmoid(s @ jnp.asarray(W_SE, x.dtype) + jnp.asarray(B_SE, x.dtype))
    y = x * g
    return jnp.sum(y, axis=(1, 2)) @ jnp.asarray(W_OUT, x.dtype)


def hand_signal_takes_all(target: int) -> np.ndarray:
    s = X.mean(axis=(1, 2), keepdims=True)
    g = 1 / (1 + np.exp(-(s @ W_SE + B_SE)))
    return X * g * W_OUT[:, target]  # R_y = y W_out / z · z, then all of R_y to the signal x


def test_squeeze_excite_gate_gives_all_relevance_to_the_signal():
    with jax.enable_x64(True):
        relevance = jaxlrp.explain(squeeze_excite, jnp.asarray(X), target=1, composite=LRP0)
        logit = np.asarray(squeeze_excite(jnp.asarray(X)))[:, 1]
    np.testing.assert_allclose(np.asarray(relevance), hand_signal_takes_all(1), rtol=1e-10,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(np.asarray(relevance).sum(axis=(1, 2, 3)), logit, rtol=1e-10)


def test_gate_node_is_listed_with_its_rule():
    table = jaxlrp.rule_table(squeeze_excite, jnp.asarray(X, jnp.float32), composite=LRP0)
    assert "1 gate node(s): SignalTakesAll()" in table
    plan = jaxlrp.rule_table(squeeze_excite, jnp.asarray(X, jnp.float32), nodes=True)
    assert any(" gate " in line and "SignalTakesAll()" in line for line in plan.splitlines())


def test_the_composite_gate_field_chooses_the_rule():
    composite = Composite(default=rules.Zero(), sum=rules.Norm(0.0), gate=rules.UniformProduct())
    with jax.enable_x64(True):
        relevance = jaxlrp.explain(squeeze_excite, jnp.asarray(X), target=1, composite=composite)
    # the uniform rule sends half of R_y into the gate (and through the squeeze back to x)
    assert not np.allclose(np.asarray(relevance), hand_signal_takes_all(1), rtol=1e-3)


@pytest.mark.parametrize("activation", [jnp.tanh, jax.nn.relu])
def test_products_with_other_activations_stay_products(activation):
    def gated(x):
        return (x * activation(x.sum(-1, keepdims=True))) @ jnp.asarray(W_SE, x.dtype)

    x = jnp.asarray(X[:, 0, 0], jnp.float32)
    table = jaxlrp.rule_table(gated, x)
    assert "product node(s): UniformProduct()" in table and "gate" not in table
