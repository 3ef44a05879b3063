"""A ``lax.scan`` LSTM is explained like the same LSTM unrolled in a Python loop.

Every time step but the first is explained identically (same rules, positions and taps in the
scan body as in the unrolled loop). The first step can differ, because a scan runs one body for
all steps: there the zero initial state is still an operand of the gate pre-activations' sums,
``z = (x_0 W_x + b) + 0 · W_h``, while in the unrolled loop ``0 · W_h`` is a constant folded into
the input layer's bias. A stabilized sum (``Norm(s)``) then absorbs ``s/|z|`` of the relevance
of x_0 in the scan but not in the loop (and where the recurrent layer holds the bias, as in
Flax's cells, rules that treat the bias differently from a summand, e.g. Flat, differ as well).
With an exact sum the first step agrees too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import jaxlrp
from jaxlrp import composites

from .models import FlaxLSTM, flax_lstm_variables, hand_lstm, random_weights

X = np.random.default_rng(1).normal(size=(3, 6, 3))
TARGET = 1
WEIGHTS = random_weights(0)


def both(scanned, unrolled, *args, composite) -> tuple[np.ndarray, np.ndarray, float]:
    a = np.asarray(jaxlrp.explain(scanned, *args, target=TARGET, composite=composite))
    b = np.asarray(jaxlrp.explain(unrolled, *args, target=TARGET, composite=composite))
    scale = float(np.abs(b).max())
    assert scale > 1e-3
    return a, b, scale


@pytest.mark.parametrize("composite", [composites.LSTM(), composites.EpsilonPlusFlat()],
                         ids=["LSTM", "EpsilonPlusFlat"])  # fmt: skip
def test_scanned_lstm_is_explained_like_the_unrolled_loop_at_every_step_after_the_first(
    composite,
):
    with jax.enable_x64(True):
        a, b, scale = both(hand_lstm(WEIGHTS), hand_lstm(WEIGHTS, scanned=False), jnp.asarray(X),
                           composite=composite)  # fmt: skip
    np.testing.assert_allclose(a[:, 1:], b[:, 1:], rtol=0, atol=1e-12 * scale)  # measured: 0
    # the first step: within the sum stabilizer's effect (measured: 7e-3 of max |R| for
    # LSTM(), stabilizer 1e-3; 6e-7 for EpsilonPlusFlat, stabilizer 1e-6)
    np.testing.assert_allclose(a[:, 0], b[:, 0], rtol=0, atol=10 * composite.sum.stabilizer * scale)


def test_flax_rnn_is_explained_like_the_cell_called_in_a_loop_at_every_step_after_the_first():
    """``nn.RNN(nn.LSTMCell)`` (``nn.scan`` inside) against the same cell called step by step."""
    with jax.enable_x64(True):
        variables, x = flax_lstm_variables(WEIGHTS), jnp.asarray(X)
        a, b, scale = both(FlaxLSTM(nn.LSTMCell).apply, FlaxLSTM(nn.LSTMCell, scanned=False).apply,
                           variables, x, composite=composites.LSTM())  # fmt: skip
    np.testing.assert_allclose(a[:, 1:], b[:, 1:], rtol=0, atol=1e-12 * scale)  # measured: 0
    assert np.abs(a[:, 0] - b[:, 0]).max() < 1e-2 * scale  # measured 1e-3 (see the docstring)


def test_with_exact_sums_the_first_step_is_explained_like_the_unrolled_loop_too():
    composite = composites.LSTM(epsilon=1e-3, stabilizer=1e-12)  # ε on the layers, exact sums
    with jax.enable_x64(True):
        a, b, scale = both(hand_lstm(WEIGHTS), hand_lstm(WEIGHTS, scanned=False), jnp.asarray(X),
                           composite=composite)  # fmt: skip
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * scale)  # measured 3e-12 of max |R|
