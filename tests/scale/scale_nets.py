"""The small model and data shared by the scale tests and their subprocess workers."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

CLASSES = 4
INPUT_SHAPE = (6, 6, 2)


class TinyCNN(nn.Module):
    """conv-relu-maxpool-flatten-dense-relu-dense on NHWC 6x6x2, four classes."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(8)(x))
        return nn.Dense(CLASSES)(x)


def model_and_variables(seed: int = 0) -> tuple[TinyCNN, dict]:
    """The model and random variables (NumPy-drawn: no compilation, the same in every process)."""
    model = TinyCNN()
    x = jax.ShapeDtypeStruct((1, *INPUT_SHAPE), np.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(seed)

    def draw(leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        fan_in = int(np.prod(leaf.shape[:-1])) or 1
        return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

    return model, jax.tree_util.tree_map(draw, shapes)


def data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs and class labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *INPUT_SHAPE)).astype(np.float32)
    return x, rng.integers(0, CLASSES, size=n).astype(np.int32)


def batches(x: np.ndarray, y: np.ndarray | None, size: int):
    """Consecutive batches of ``size`` (the last one smaller), as pairs when ``y`` is given."""
    for start in range(0, len(x), size):
        stop = start + size
        yield x[start:stop] if y is None else (x[start:stop], y[start:stop])
