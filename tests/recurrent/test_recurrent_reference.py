"""An LSTM through ``lax.scan`` is explained with Arras et al.'s formulas: jaxlrp agrees with the
independent float64 NumPy implementation in ``numpy_lstm.py`` (random weights and biases).

How ε enters. Arras et al. stabilize the joint linear map ``z = x_t W_x + h_{t-1} W_h + b`` once:
``R_x = x_t ⊙ W_x (R_z / stab(z))``. The traced program computes it as two dense layers and a sum
node, so jaxlrp stabilizes each part: ``R_x = x_t ⊙ W_x (q/stab_dense(q) · R_z/stab_sum(z))``,
``q = x_t W_x`` (its bias folded in). With the sum stabilized by ε (``Norm(ε)``) and the dense
layers *in the loop* exact (LRP-0, ``Zero`` with a 1e-12 clip that never binds here), the two
are the same formula, at ε = 1e-3 where ε matters (it changes relevance by ~1%); the head, which
no sum follows, gets ``Epsilon(ε)`` as ``last``. The same holds for ``c_t = f c_{t-1} + i g``
(a sum node, ``Norm(ε)``, in both). The preset ``composites.LSTM(ε)`` also puts ε on every dense
layer, which differs from the joint formula by the factor ``q/stab(q)``, i.e. by O(ε/|q|): it
agrees with the reference as ε → 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import jaxlrp
from jaxlrp import composites, rules

from .models import FlaxLSTM, flax_lstm_variables, hand_lstm, random_weights
from .numpy_lstm import forward, lstm_lrp

EPS = 1e-3
ARRAS = dataclasses.replace(
    composites.LSTM(EPS), default=rules.Zero(1e-12), last=rules.Epsilon(EPS)
)
X = np.random.default_rng(10).normal(size=(3, 7, 3))  # (batch, time, features)
TARGETS = np.array([0, 1, 1])


def reference(weights, eps: float) -> np.ndarray:
    return np.stack([lstm_lrp(weights, x, t, eps) for x, t in zip(X, TARGETS, strict=True)])


def test_hand_written_scan_lstm_matches_the_numpy_reference():
    weights = random_weights(0)
    with jax.enable_x64(True):
        f = hand_lstm(weights)
        logits = np.asarray(f(jnp.asarray(X)))
        relevance = np.asarray(jaxlrp.explain(f, jnp.asarray(X), target=TARGETS, composite=ARRAS))
    np.testing.assert_allclose(logits, [forward(weights, x)["y"] for x in X], rtol=1e-13)
    expected = reference(weights, EPS)
    assert relevance.shape == X.shape  # relevance per example, time step and feature
    # measured: max error 7e-16 of max |R| (seeds 0-3: up to 6e-15)
    np.testing.assert_allclose(relevance, expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    # ε matters at this size: the reference with ε = 1e-9 differs by more than 1e-3 of max |R|
    assert np.abs(reference(weights, 1e-9) - expected).max() > 1e-3 * np.abs(expected).max()


def test_flax_rnn_lstm_cell_with_the_same_weights_matches_the_numpy_reference():
    """``nn.RNN(nn.LSTMCell)``: per gate an input kernel (no bias) and a recurrent kernel with the
    bias, i.e. the bias on the other dense layer of the sum; the joint formula is the same."""
    weights = random_weights(1)
    model = FlaxLSTM(nn.LSTMCell)
    with jax.enable_x64(True):
        variables, x = flax_lstm_variables(weights), jnp.asarray(X)
        relevance = np.asarray(jaxlrp.explain(model.apply, variables, x, target=TARGETS,
                                              composite=ARRAS))  # fmt: skip
        preset = np.asarray(jaxlrp.explain(model.apply, variables, x, target=TARGETS,
                                           composite=composites.LSTM(1e-9)))  # fmt: skip
    expected = reference(weights, EPS)
    # measured: 7e-16 of max |R|
    np.testing.assert_allclose(relevance, expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    # the preset, ε on every layer as well: O(ε/|q|) from the joint formula (measured 3e-8)
    tiny = reference(weights, 1e-9)
    np.testing.assert_allclose(preset, tiny, rtol=0, atol=1e-6 * np.abs(tiny).max())
