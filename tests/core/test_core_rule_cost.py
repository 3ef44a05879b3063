"""What a rule costs, counted in the optimized XLA program: convolutions beside ``jax.grad``'s.

``jax.grad`` of a two-layer conv net w.r.t. its input runs each layer's forward and one
transposed convolution (no weight gradients). On a non-negative input (after a ReLU) the
generalized γ needs the forward ``Wa``, ``W⁺a`` and two transposed passes (``Wᵀs``, ``W⁺ᵀs``);
the overview's original γ (``Gamma(generalized=False)``) one modified forward with
``W + γW⁺`` and one transposed pass with the same weight, the floor behind its ≤ 1.5× target.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules


class TwoConvs(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        return x.mean(axis=(1, 2))


def convolutions(fn, *args) -> int:
    text = jax.jit(fn).lower(*args).compile().as_text()
    return len(re.findall(r"\sconvolution\(", text))


@pytest.fixture(scope="module")
def net():
    model = TwoConvs()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 12, 12, 3)), jnp.float32)
    return model, model.init(jax.random.key(0), x), x


def count_for(net, gamma: rules.Gamma) -> int:
    model, variables, x = net
    composite = composites.Composite(first=rules.Epsilon(), conv=gamma)
    return convolutions(
        lambda v, x: jaxlrp.explain(model.apply, v, x, target=1, composite=composite),
        variables, x,
    )


def test_gradient_runs_a_forward_and_a_transposed_convolution_per_layer(net):
    model, variables, x = net
    grad = jax.grad(lambda x: model.apply(variables, x)[:, 1].sum())
    assert convolutions(grad, x) == 4


def test_original_gamma_costs_one_modified_forward_and_one_transposed_pass(net):
    # layer 1 (epsilon): forward + transposed; layer 2: forward + (W + γW⁺)a + transposed
    assert count_for(net, rules.Gamma(0.25, generalized=False)) == 5


def test_generalized_gamma_on_a_nonnegative_input_costs_one_more_transposed_pass(net):
    # layer 2: forward + W⁺a + Wᵀs + W⁺ᵀs
    assert count_for(net, rules.Gamma(0.25)) == 6
