"""An independent float64 NumPy LSTM and its LRP explanation, with the formulas of Arras et al.

It imports neither ``jaxlrp`` nor ``jax``. One LSTM layer (gate order i, f, g, o, as Flax) reads
the sequence and a dense head reads the last hidden state:

    z_t = x_t W_x + h_{t-1} W_h + b,   i, f, o = σ(z_i, z_f, z_o),   g = tanh(z_g)
    c_t = f ⊙ c_{t-1} + i ⊙ g,         h_t = o ⊙ tanh(c_t),          y = h_T W_out + b_out

and relevance flows back from ``R_y = y ⊙ onehot(target)`` (Arras, Montavon, Müller, Samek,
"Explaining recurrent neural network predictions in sentiment analysis", WASSA 2017; their code
``LRP_for_LSTM`` with ``bias_factor = 0``):

* linear maps (the head, the joint ``x_t W_x + h_{t-1} W_h + b`` and the accumulation
  ``f ⊙ c_{t-1} + i ⊙ g``, a linear map with identity weights) use LRP-ε,
  ``R_a = Σ_j a w_j / (z_j + ε sign0(z_j)) · R_j``; bias and ε absorb the rest;
* products gate ⊙ signal give all relevance to the signal, none to the gate;
* tanh passes relevance unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sign0(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0, -1.0)


def stab(x: np.ndarray, eps: float) -> np.ndarray:
    return x + eps * sign0(x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class LSTMWeights:
    """``w_x`` (D, 4H), ``w_h`` (H, 4H), ``b`` (4H,) with gate blocks i, f, g, o; ``w_out`` (H, C),
    ``b_out`` (C,)."""

    w_x: np.ndarray
    w_h: np.ndarray
    b: np.ndarray
    w_out: np.ndarray
    b_out: np.ndarray

    @property
    def hidden(self) -> int:
        return self.w_h.shape[0]

    def gate(self, name: str) -> slice:
        k = "ifgo".index(name)
        return slice(k * self.hidden, (k + 1) * self.hidden)


def forward(p: LSTMWeights, x: np.ndarray) -> dict[str, np.ndarray]:
    """One sequence ``x`` (T, D): gates per step (T, H), states ``c``, ``h`` (T + 1, H) from zero,
    pre-activations ``z`` (T, 4H) and the output ``y`` (C,)."""
    steps, hidden = x.shape[0], p.hidden
    c = np.zeros((steps + 1, hidden))
    h = np.zeros((steps + 1, hidden))
    z = np.zeros((steps, 4 * hidden))
    gates = {k: np.zeros((steps, hidden)) for k in "ifgo"}
    for t in range(steps):
        z[t] = x[t] @ p.w_x + h[t] @ p.w_h + p.b
        for k in "ifo":
            gates[k][t] = sigmoid(z[t, p.gate(k)])
        gates["g"][t] = np.tanh(z[t, p.gate("g")])
        c[t + 1] = gates["f"][t] * c[t] + gates["i"][t] * gates["g"][t]
        h[t + 1] = gates["o"][t] * np.tanh(c[t + 1])
    return {"c": c, "h": h, "z": z, "y": h[-1] @ p.w_out + p.b_out, **gates}


def lrp_linear(a: np.ndarray, w: np.ndarray, z: np.ndarray, relevance: np.ndarray,
               eps: float) -> np.ndarray:  # fmt: skip
    """LRP-ε through ``z = a w + b``: ``R_a = a ⊙ (w (R / stab(z)))``."""
    return a * (w @ (relevance / stab(z, eps)))


def lstm_lrp(p: LSTMWeights, x: np.ndarray, target: int, eps: float) -> np.ndarray:
    """Relevance (T, D) of one sequence ``x`` (T, D) for output ``target``."""
    f = forward(p, x)
    steps = x.shape[0]
    r_y = np.zeros_like(f["y"])
    r_y[target] = f["y"][target]
    r_x = np.zeros_like(x)
    r_h = np.zeros_like(f["h"])
    r_c = np.zeros_like(f["c"])
    r_h[steps] = lrp_linear(f["h"][steps], p.w_out, f["y"], r_y, eps)
    g = p.gate("g")
    for t in reversed(range(steps)):  # step t: (c[t], h[t], x[t]) -> (c[t+1], h[t+1])
        r_c[t + 1] += r_h[t + 1]  # h = o ⊙ tanh(c): o gets none, tanh passes
        den = stab(f["c"][t + 1], eps)
        r_c[t] = f["f"][t] * f["c"][t] / den * r_c[t + 1]  # f gets none
        r_g = f["i"][t] * f["g"][t] / den * r_c[t + 1]  # i gets none; tanh passes to z_g
        r_x[t] = lrp_linear(x[t], p.w_x[:, g], f["z"][t, g], r_g, eps)
        r_h[t] = lrp_linear(f["h"][t], p.w_h[:, g], f["z"][t, g], r_g, eps)
    return r_x
