"""Gates in recurrent cells are recognized by the analysis: every product of a signal with σ(·),
and with an affine image of σ(·) that stays in [0, 1] such as the GRU update's ``1 − σ(·)``, is a
gate node (signal-take-all: the gate gets no relevance; Arras et al. 2017). Other affine images
(``σ(·) + 1``) leave the product a plain product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxlrp
from jaxlrp import Composite, rules

from .models import FlaxLSTM, nnx_model

RNG = np.random.default_rng(5)
X = RNG.normal(size=(2, 4))
W_Z, W_N, W_O = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
LRP0 = Composite(default=rules.Zero(), sum=rules.Norm(0.0))


def gated(gate_of):
    """``(gate_of(σ(x W_z)) ⊙ tanh(x W_n)) W_o``: one GRU-like update without the recurrence."""

    def f(x):
        gate = gate_of(jax.nn.sigmoid(x @ jnp.asarray(W_Z, x.dtype)))
        return (gate * jnp.tanh(x @ jnp.asarray(W_N, x.dtype))) @ jnp.asarray(W_O, x.dtype)

    return f


def test_one_minus_sigmoid_gate_gives_all_relevance_to_the_signal():
    target = 1
    with jax.enable_x64(True):
        f = gated(lambda s: 1.0 - s)
        relevance = np.asarray(jaxlrp.explain(f, jnp.asarray(X), target=target, composite=LRP0))
    # by hand: LRP-0 on W_o, all of R_p to the signal n = tanh(a), Pass to a, LRP-0 on W_n
    a = X @ W_N
    p = (1 - 1 / (1 + np.exp(-(X @ W_Z)))) * np.tanh(a)
    r_a = p * W_O[:, target]
    expected = X * ((r_a / a) @ W_N.T)
    np.testing.assert_allclose(relevance, expected, rtol=1e-12)
    np.testing.assert_allclose(relevance.sum(-1), (p @ W_O)[:, target], rtol=1e-12)


@pytest.mark.parametrize(
    "form, is_gate",
    [(lambda s: 1.0 - s, True), (lambda s: 0.5 * s, True), (lambda s: 1.0 + (-s), True),
     (lambda s: s + 1.0, False), (lambda s: 2.0 - s, False), (lambda s: 2.0 * s, False)],
    ids=["1-s", "0.5*s", "1+(-s)", "s+1", "2-s", "2*s"],
)  # fmt: skip
def test_affine_images_of_a_sigmoid_are_gates_when_they_stay_in_the_unit_interval(form, is_gate):
    table = jaxlrp.rule_table(gated(form), jnp.asarray(X, jnp.float32))
    assert ("1 gate node(s): SignalTakesAll()" in table) == is_gate, table
    assert ("1 product node(s): UniformProduct()" in table) != is_gate, table


def test_one_minus_sigmoid_gate_is_recognized_under_jit():
    f = gated(lambda s: 1.0 - s)
    x = jnp.asarray(X, jnp.float32)
    explain = jax.jit(lambda x: jaxlrp.explain(f, x, target=0, composite=LRP0))
    np.testing.assert_allclose(explain(x), jaxlrp.explain(f, x, target=0, composite=LRP0),
                               rtol=1e-6, atol=1e-7)  # fmt: skip


@pytest.mark.parametrize(
    "cell, nodes",
    [(nn.LSTMCell, {"gate": 3, "sum": 5, "activation": 5}),
     (nn.OptimizedLSTMCell, {"gate": 3, "sum": 5, "activation": 5}),
     (nn.GRUCell, {"gate": 3, "sum": 4, "activation": 4})],
    ids=["LSTMCell", "OptimizedLSTMCell", "GRUCell"],
)  # fmt: skip
def test_flax_cells_have_gate_nodes_and_no_plain_products(cell, nodes):
    """LSTM: ``f ⊙ c``, ``i ⊙ g``, ``o ⊙ tanh(c)``; GRU: ``r ⊙ (U h + b)``, ``(1 − u) ⊙ n``,
    ``u ⊙ h``. Sums: the gate pre-activations (x and h projections) and the state update."""
    x = jnp.ones((2, 4, 3))
    model = FlaxLSTM(cell)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)  # the plan needs no values
    variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    table = jaxlrp.rule_table(model.apply, variables, x)
    assert "product node(s)" not in table, table
    rule = {"gate": "SignalTakesAll()", "sum": "Norm(stabilizer=1e-06)", "activation": "Pass()"}
    for kind, count in nodes.items():
        assert f"{count} {kind} node(s): {rule[kind]}" in table, table
    assert "[in scan(length=4)]" in table


@pytest.mark.parametrize("cell", [nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell])
def test_nnx_cells_have_three_gate_nodes_and_no_plain_products(cell):
    table = jaxlrp.rule_table(nnx_model(cell), jnp.ones((2, 4, 3)))
    assert "3 gate node(s): SignalTakesAll()" in table and "product node(s)" not in table, table
