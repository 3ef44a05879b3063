"""With zero biases, LSTMs and GRUs conserve relevance as ε → 0: ``Σ R_x`` over all time steps and
features is the explained logit. The rules that make this so: the sums (``Norm``) and LRP-0 on the
layers conserve, signal-take-all gives a gate product's relevance wholly to the signal, ``Pass``
keeps it through tanh; only biases and ε absorb relevance.

"The ε → 0 limit" is ``LRP0`` below: ``composites.LSTM`` with ``Zero`` (LRP-0, denominators
clipped at 1e-6 only) on the layers and exact sums. It applies to LSTMs and GRUs alike: the GRU's
``(1 − u) ⊙ n`` is a gate node (``1 − σ`` is recognized as a gate), ``u ⊙ h`` and ``r ⊙ (U h + b)``
are gates too. (With ``(1 − u) ⊙ n`` as a plain product, relevance would enter the update gate
through the uniform rule and still be conserved, but be sent to the gate, against Arras et al.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxlrp
from jaxlrp import composites, rules

from .models import FlaxLSTM, hand_lstm, nnx_model, random_weights, zero_biases

LRP0 = dataclasses.replace(composites.LSTM(), default=rules.Zero(), sum=rules.Norm(0.0))
X = np.random.default_rng(1).normal(size=(3, 6, 3))
TARGET = 1


def gap(fn, *args, composite) -> float:
    """max |Σ R_x − logit| / max |logit| over the batch; also checks that R is finite."""
    out, relevance_fn = jaxlrp.lrp(fn, composite)(*args)  # the logits and the relevance at once
    relevance = np.asarray(relevance_fn(jaxlrp.output_relevance(out, TARGET)[0]))
    logit = np.asarray(out)[:, TARGET]
    assert relevance.shape == args[-1].shape and np.isfinite(relevance).all()
    return float(np.abs(relevance.sum(axis=(1, 2)) - logit).max() / np.abs(logit).max())


def test_hand_written_lstm_conserves_relevance_as_epsilon_goes_to_zero():
    weights = random_weights(0, bias=False)
    with jax.enable_x64(True):
        f, x = hand_lstm(weights), jnp.asarray(X)
        exact = gap(f, x, composite=LRP0)
        preset = gap(f, x, composite=composites.LSTM(1e-3))
    assert exact < 1e-12  # measured 4e-16
    # ε absorbs relevance in proportion to ε: measured 4.0e-2 of the logit at ε = 1e-3 (and
    # 4.3e-5 at 1e-6, 4.3e-8 at 1e-9)
    assert 1e-3 < preset < 0.1


@pytest.mark.parametrize("cell", [nn.OptimizedLSTMCell, nn.GRUCell])
def test_flax_linen_cells_with_zero_biases_conserve_relevance(cell):
    """(``nn.LSTMCell`` is held to the NumPy reference in ``test_recurrent_reference.py``.)"""
    model = FlaxLSTM(cell)
    with jax.enable_x64(True):
        x = jnp.asarray(X)
        variables = zero_biases(model.init(jax.random.PRNGKey(0), x))
        assert gap(model.apply, variables, x, composite=LRP0) < 1e-12  # measured <= 6e-16


@pytest.mark.parametrize("cell", [nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell])
def test_flax_nnx_cells_conserve_relevance_in_float32(cell):
    """nnx modules are explained directly; Flax initializes biases to zero."""
    model = nnx_model(cell)
    params = jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
    biases = [leaf for path, leaf in params if "bias" in jax.tree_util.keystr(path)]
    assert biases and not any(np.any(np.asarray(b)) for b in biases)
    assert gap(model, jnp.asarray(X, jnp.float32), composite=LRP0) < 5e-6  # measured <= 5e-7
