"""Small Flax models, random weights and inputs, and their translation to the NumPy reference.

The same weights drive the Flax model (float32, what jaxlrp explains) and the NumPy reference
network (float64 copies of the very same float32 values), so any difference between the two
relevances comes from the LRP computation, not from the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from . import numpy_lrp as ref


class MLP(nn.Module):
    """Dense 20 -> relu -> Dense 16 -> relu -> Dense 5."""

    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(20, use_bias=self.use_bias, name="Dense_0")(x))
        x = nn.relu(nn.Dense(16, use_bias=self.use_bias, name="Dense_1")(x))
        return nn.Dense(5, use_bias=self.use_bias, name="Dense_2")(x)


class CNN(nn.Module):
    """Conv 3x3 SAME -> relu -> max pool 2 -> Conv 3x3 (second_*) -> relu -> avg pool 2 ->
    flatten -> Dense 10 -> relu -> Dense 5, on NHWC 12x12x3 inputs."""

    second_strides: tuple[int, int] = (1, 1)
    second_padding: str = "VALID"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3), padding="SAME", use_bias=self.use_bias, name="Conv_0")(x)
        x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = nn.Conv(
            8,
            (3, 3),
            strides=self.second_strides,
            padding=self.second_padding,
            use_bias=self.use_bias,
            name="Conv_1",
        )(x)
        x = nn.avg_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(10, use_bias=self.use_bias, name="Dense_0")(x))
        return nn.Dense(5, use_bias=self.use_bias, name="Dense_1")(x)


@dataclass(frozen=True)
class Case:
    """A model with concrete float32 weights and inputs, plus the equivalent NumPy network."""

    name: str
    model: nn.Module
    variables: dict
    x: np.ndarray  # float32
    network: list  # the numpy_lrp layers, float64 weights
    low: float = -1.0  # the box the inputs lie in (for ZBox)
    high: float = 1.0


def random_inputs(rng: np.random.Generator, shape, zero_fraction: float = 0.15) -> np.ndarray:
    """Uniform in [-1, 1], with some entries exactly zero: mixed signs for generalized rules and
    zero inputs for the rules that do not multiply by the input (ZBox, Flat, WSquare)."""
    x = rng.uniform(-1.0, 1.0, size=shape)
    x[rng.random(shape) < zero_fraction] = 0.0
    return x.astype(np.float32)


def randomize(variables, rng: np.random.Generator, bias_scale: float = 0.1):
    """Normal kernels with std 1/sqrt(fan_in) (a kernel's last axis is its outputs) and non-zero
    normal biases, as float32 NumPy arrays in the structure of ``variables``."""

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        shape = tuple(leaf.shape)
        if "kernel" in name:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(size=shape) / np.sqrt(fan_in)
        else:
            value = bias_scale * rng.normal(size=shape)
        return value.astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, variables)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def mlp_network(params) -> list:
    layers = []
    for i in range(3):
        layers.append(_dense(params[f"Dense_{i}"]))
        if i < 2:
            layers.append(ref.ReLU())
    return layers


def _dense(p) -> ref.Dense:
    return ref.Dense(_f64(p["kernel"]), _f64(p["bias"]) if "bias" in p else None)


def _conv(p, strides, padding: str, hw) -> ref.Conv:
    kernel = _f64(p["kernel"])
    if padding == "SAME":
        pads = tuple(ref.same_padding(hw[i], kernel.shape[i], strides[i]) for i in range(2))
    else:
        pads = ((0, 0), (0, 0))
    return ref.Conv(kernel, _f64(p["bias"]) if "bias" in p else None, tuple(strides), pads)


def cnn_network(params, model: CNN, in_hw=(12, 12)) -> list:
    pooled_hw = (in_hw[0] // 2, in_hw[1] // 2)
    return [
        _conv(params["Conv_0"], (1, 1), "SAME", in_hw),
        ref.ReLU(),
        ref.MaxPool((2, 2), (2, 2)),
        _conv(params["Conv_1"], model.second_strides, model.second_padding, pooled_hw),
        ref.ReLU(),
        ref.AvgPool((2, 2), (2, 2)),
        ref.Flatten(),
        _dense(params["Dense_0"]),
        ref.ReLU(),
        _dense(params["Dense_1"]),
    ]


def make_case(name: str, seed: int = 0, use_bias: bool = True) -> Case:
    """The named test case: "mlp", "cnn_valid" (second conv VALID, stride 1) or "cnn_stride2"
    (second conv stride 2 with SAME padding, i.e. asymmetric (0, 1) padding on a 6x6 map)."""
    rng = np.random.default_rng(seed)
    if name == "mlp":
        model, x = MLP(use_bias=use_bias), random_inputs(rng, (4, 12))
    elif name == "cnn_valid":
        model, x = CNN(use_bias=use_bias), random_inputs(rng, (3, 12, 12, 3))
    elif name == "cnn_stride2":
        model = CNN(second_strides=(2, 2), second_padding="SAME", use_bias=use_bias)
        x = random_inputs(rng, (3, 12, 12, 3))
    else:
        raise ValueError(name)
    # eval_shape: only the parameter shapes are needed, so nothing is compiled or run here.
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.asarray(x))
    variables = randomize(shapes, rng)
    params = variables["params"]
    network = mlp_network(params) if name == "mlp" else cnn_network(params, model)
    return Case(name, model, variables, x, network)


CASES = ("mlp", "cnn_valid", "cnn_stride2")
