"""Small Flax networks shared by the core tests."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ReluMLP(nn.Module):
    """Dense-ReLU-Dense-ReLU-Dense; ``use_bias=False`` gives a bias-free network."""

    features: tuple[int, ...] = (16, 12, 5)
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        for i, f in enumerate(self.features):
            x = nn.Dense(f, use_bias=self.use_bias)(x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x


class SmallCNN(nn.Module):
    """conv-relu-maxpool-conv-relu-avgpool-flatten-dense-relu-dense on NHWC 12x12x3."""

    use_bias: bool = True
    classes: int = 5

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), padding="SAME", use_bias=self.use_bias)(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(8, (3, 3), padding="VALID", use_bias=self.use_bias)(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(10, use_bias=self.use_bias)(x))
        return nn.Dense(self.classes, use_bias=self.use_bias)(x)


def init(model: nn.Module, x: jax.Array, seed: int = 0, bias_scale: float = 0.1):
    """Initialize and give every bias a non-zero random value (Flax initializes them to 0)."""
    variables = model.init(jax.random.PRNGKey(seed), x)
    key = jax.random.PRNGKey(seed + 100)

    def randomize(path, leaf):
        nonlocal key
        if path[-1].key == "bias":
            key, sub = jax.random.split(key)
            return bias_scale * jax.random.normal(sub, leaf.shape, leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(randomize, variables)


def images(shape=(4, 12, 12, 3), seed: int = 1) -> jax.Array:
    return jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=-1.0, maxval=1.0)


def relative_error(a, b) -> float:
    a = jnp.asarray(a, jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray(a)
    return float(jnp.linalg.norm((a - b).ravel()) / jnp.maximum(jnp.linalg.norm(b.ravel()), 1e-30))
