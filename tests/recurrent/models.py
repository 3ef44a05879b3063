"""Small recurrent models for the recurrent tests: a hand-written LSTM (``lax.scan`` or unrolled
in Python), the same weights in Flax ``nn.RNN(nn.LSTMCell)``, and helpers.

Inputs are ``(batch, time, features)``; outputs are logits ``(batch, classes)`` read from the last
hidden state.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from .numpy_lstm import LSTMWeights

Array = jax.Array


def random_weights(seed: int, features: int = 3, hidden: int = 5, classes: int = 2,
                   bias: bool = True) -> LSTMWeights:  # fmt: skip
    """Float64 weights with scale 1/√fan-in; biases drawn (or zero with ``bias=False``)."""
    rng = np.random.default_rng(seed)
    b_scale = 0.5 if bias else 0.0
    return LSTMWeights(
        w_x=rng.normal(size=(features, 4 * hidden)) / np.sqrt(features),
        w_h=rng.normal(size=(hidden, 4 * hidden)) / np.sqrt(hidden),
        b=b_scale * rng.normal(size=4 * hidden),
        w_out=rng.normal(size=(hidden, classes)) / np.sqrt(hidden),
        b_out=b_scale * rng.normal(size=classes),
    )


def _step(p: LSTMWeights, dtype) -> Callable:
    w_x, w_h, b = (jnp.asarray(a, dtype) for a in (p.w_x, p.w_h, p.b))

    def step(carry: tuple[Array, Array], x_t: Array) -> tuple[tuple[Array, Array], None]:
        c, h = carry
        z = x_t @ w_x + b + h @ w_h  # the bias goes with the input projection (one dense layer)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), None

    return step


def hand_lstm(p: LSTMWeights, scanned: bool = True) -> Callable[[Array], Array]:
    """The LSTM of ``numpy_lstm.forward`` in JAX: ``lax.scan`` over time, or a Python loop."""

    def f(x: Array) -> Array:
        step = _step(p, x.dtype)
        zeros = jnp.zeros((x.shape[0], p.hidden), x.dtype)
        carry = (zeros, zeros)
        if scanned:
            carry, _ = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
        else:
            for t in range(x.shape[1]):
                carry, _ = step(carry, x[:, t])
        return carry[1] @ jnp.asarray(p.w_out, x.dtype) + jnp.asarray(p.b_out, x.dtype)

    return f


class FlaxLSTM(nn.Module):
    """``nn.RNN(cell)`` over the sequence, then a dense head on the last hidden state (or the
    same cell called in a Python loop, ``scanned=False``)."""

    cell: Callable[..., nn.Module]
    hidden: int = 5
    classes: int = 2
    scanned: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cell = self.cell(self.hidden, param_dtype=x.dtype, name="cell")
        if self.scanned:
            h = nn.RNN(cell)(x)[:, -1]
        else:
            carry = cell.initialize_carry(jax.random.PRNGKey(0), x[:, 0].shape)
            for t in range(x.shape[1]):
                carry, h = cell(carry, x[:, t])
        return nn.Dense(self.classes, param_dtype=x.dtype, name="head")(h)


def flax_lstm_variables(p: LSTMWeights) -> dict:
    """``p`` as the variables of ``FlaxLSTM(nn.LSTMCell)``: per gate ``k`` the input kernel
    ``i{k}`` (no bias) and the recurrent kernel ``h{k}`` with the bias."""
    cell = {}
    for k in "ifgo":
        cell[f"i{k}"] = {"kernel": jnp.asarray(p.w_x[:, p.gate(k)])}
        cell[f"h{k}"] = {"kernel": jnp.asarray(p.w_h[:, p.gate(k)]),
                         "bias": jnp.asarray(p.b[p.gate(k)])}  # fmt: skip
    head = {"kernel": jnp.asarray(p.w_out), "bias": jnp.asarray(p.b_out)}
    return {"params": {"cell": cell, "head": head}}


def zero_biases(tree):
    """A copy of a variables/state pytree with every leaf named ``bias`` set to zero."""

    def zero(path, leaf):
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        return jnp.zeros_like(leaf) if "bias" in names else leaf

    return jax.tree_util.tree_map_with_path(zero, tree)


def nnx_model(cell: Callable, dtype=jnp.float32, features: int = 3, hidden: int = 5,
              classes: int = 2, seed: int = 0):  # fmt: skip
    """``nnx.RNN(cell)`` and an ``nnx.Linear`` head on the last hidden state, an nnx module (Flax's
    default initialization: zero biases)."""
    from flax import nnx

    class NnxRNN(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.rnn = nnx.RNN(cell(features, hidden, param_dtype=dtype, rngs=rngs))
            self.head = nnx.Linear(hidden, classes, param_dtype=dtype, rngs=rngs)

        def __call__(self, x: Array) -> Array:
            return self.head(self.rnn(x)[:, -1])

    return NnxRNN(nnx.Rngs(seed))
