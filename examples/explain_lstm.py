"""Which time steps does an LSTM read? The adding problem, explained with LRP.

The task is Hochreiter and Schmidhuber's adding problem: each sequence has ``--length`` steps of
two channels, a random number in [0, 1] and a marker that is 1 at exactly two steps; the answer
is the sum of the two marked numbers. A small Flax LSTM (``nn.RNN(nn.LSTMCell)``, a dense head on
the last hidden state) is trained with optax (Adam) on fresh random batches, in seconds on a
CPU. ``composites.LSTM()`` (ε on the linear maps, signal-take-all on the gates, identity on
tanh; Arras et al., WASSA 2017) then explains its answer: one ``jaxlrp.explain`` call gives the
relevance of every time step and channel, shape ``(batch, time, 2)``.

Only the marked steps decide the answer, so a faithful explanation puts its relevance there:
the script prints the share of ``|R|`` on the two marked steps (chance: 2 / length) and draws,
for a few sequences, the inputs (marked steps in orange) above the relevance of each step's
number and marker.

Run::

    python examples/explain_lstm.py                      # writes out/explain_lstm.png
    python examples/explain_lstm.py --samples 6 --out figures/
    python examples/explain_lstm.py --length 20 --steps 1500    # longer sequences
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlrp
from jaxlrp import composites

SEED = 0


class AddingLSTM(nn.Module):
    """An LSTM over the sequence and a dense read-out of its last hidden state."""

    hidden: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # x: (batch, time, 2)
        h = nn.RNN(nn.LSTMCell(self.hidden), name="lstm")(x)
        return nn.Dense(1, name="head")(h[:, -1])  # (batch, 1)


def adding_problem(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences ``(n, length, 2)`` (number, marker) and their answers ``(n, 1)``."""
    values = rng.uniform(size=(n, length)).astype(np.float32)
    marked = np.argsort(rng.uniform(size=(n, length)), axis=1)[:, :2]  # two random steps
    marks = np.zeros((n, length), np.float32)
    np.put_along_axis(marks, marked, 1.0, axis=1)
    return np.stack([values, marks], axis=-1), np.sum(values * marks, axis=1, keepdims=True)


def train(steps: int, length: int, hidden: int = 16, batch: int = 128,
          learning_rate: float = 1e-2, seed: int = SEED) -> tuple[AddingLSTM, dict]:  # fmt: skip
    """Train on fresh batches (mean squared error, Adam); return the model and its variables."""
    rng = np.random.default_rng(seed)
    model = AddingLSTM(hidden)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, length, 2)))
    optimizer = optax.adam(learning_rate)
    state = optimizer.init(variables)

    def loss(v: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((model.apply(v, x) - y) ** 2)

    @jax.jit
    def update(v: dict, state: optax.OptState, x: jax.Array, y: jax.Array) -> tuple:
        grads = jax.grad(loss)(v, x, y)
        updates, state = optimizer.update(grads, state, v)
        return optax.apply_updates(v, updates), state

    for _ in range(steps):
        variables, state = update(variables, state, *adding_problem(rng, batch, length))
    return model, variables


def marked_share(relevance: jax.Array, x: jax.Array) -> np.ndarray:
    """Per sequence: the share of ``Σ |R|`` on the marked steps (both channels)."""
    per_step = np.abs(np.asarray(relevance)).sum(-1)  # (batch, time)
    marked = np.asarray(x)[..., 1] > 0
    return (per_step * marked).sum(-1) / per_step.sum(-1)


@dataclasses.dataclass
class Result:
    """What :func:`main` measured, and where the figure is."""

    path: pathlib.Path
    test_mse: float
    share: np.ndarray  # per test sequence, share of |R| on the marked steps
    length: int


def draw(path: pathlib.Path, x: np.ndarray, relevance: np.ndarray, y: np.ndarray,
         pred: np.ndarray) -> None:  # fmt: skip
    """Per sequence: the numbers (marked steps in orange) above the relevance of each step's two
    channels (number, marker)."""
    from matplotlib.figure import Figure

    n, length = x.shape[:2]
    fig = Figure(figsize=(2.8 * n, 4.4), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False, sharex=True)
    steps = np.arange(length)
    for k in range(n):
        marked = x[k, :, 1] > 0
        top, bottom = axes[0, k], axes[1, k]
        top.bar(steps, x[k, :, 0], color=np.where(marked, "tab:orange", "0.7"))
        top.set_ylim(0, 1)
        top.set_title(f"y = {y[k]:.2f}, prediction {pred[k]:.2f}", fontsize=9)
        bottom.bar(steps - 0.2, relevance[k, :, 0], width=0.4, color="tab:red", label="number")
        bottom.bar(steps + 0.2, relevance[k, :, 1], width=0.4, color="tab:purple",
                   label="marker")  # fmt: skip
        bottom.axhline(0, color="k", lw=0.5)
        share = marked_share(relevance[k : k + 1], x[k : k + 1])[0]
        bottom.set_title(f"{share:.0%} of |R| on the marked steps", fontsize=9)
        bottom.set_xlabel("time step")
    axes[0, 0].set_ylabel("number (orange: marked)")
    axes[1, 0].set_ylabel("relevance")
    axes[1, 0].legend(fontsize=8, frameon=False)
    fig.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> Result:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output directory (default: out/)")
    parser.add_argument("--length", type=int, default=12, help="time steps per sequence")
    parser.add_argument("--steps", type=int, default=600, help="training steps (batches of 128)")
    parser.add_argument("--samples", type=int, default=4, help="sequences drawn in the figure")
    parser.add_argument("--test", type=int, default=256, help="test sequences explained")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    model, variables = train(args.steps, args.length)
    x, y = adding_problem(np.random.default_rng(SEED + 1), args.test, args.length)
    pred = model.apply(variables, x)
    mse = float(jnp.mean((pred - y) ** 2))
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.1f} s: test MSE "
          f"{mse:.4f} (predicting the mean: {2 / 12:.4f})")  # fmt: skip

    # one call: relevance of every time step and channel, (test, length, 2)
    relevance = jaxlrp.explain(model.apply, variables, x, target=0, composite=composites.LSTM())
    share = marked_share(relevance, x)
    print(f"share of |R| on the two marked steps: mean {share.mean():.1%}, lowest "
          f"{share.min():.1%} (chance: {2 / args.length:.1%})")  # fmt: skip
    total = np.asarray(relevance).sum(axis=(1, 2))
    print(f"Σ R / prediction: median {np.median(total / np.asarray(pred[:, 0])):.3f} (biases "
          "and ε absorb the rest)")  # fmt: skip

    n = min(args.samples, args.test)
    path = out / "explain_lstm.png"
    draw(path, np.asarray(x[:n]), np.asarray(relevance[:n]), np.asarray(y[:n, 0]),
         np.asarray(pred[:n, 0]))  # fmt: skip
    print(f"wrote {path}")
    return Result(path, mse, share, args.length)


if __name__ == "__main__":
    main()
