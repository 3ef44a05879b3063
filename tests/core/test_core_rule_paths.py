"""Both computations of a layer rule, the fast path for non-negative inputs and the generic term
loop, equal the independent float64 NumPy reference (``tests/reference/numpy_lrp.py``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import numpy_lrp as ref

from jaxlrp import rules
from jaxlrp.rules import base
from jaxlrp.rules.base import LayerContext

TOLERANCE = 2e-6
"""Relative L2 error against the float64 reference (measured: at most 5.2e-7, float32)."""

# (jaxlrp rule, the same rule in the NumPy reference); every term of these states its basis
# (p·W + q·W⁺), so on a non-negative input they take the fast path
BASIS_RULES = [
    (rules.Gamma(0.25), ref.Gamma(0.25)),
    (rules.Gamma(1.0), ref.Gamma(1.0)),
    (rules.AlphaBeta(2.0, 1.0), ref.AlphaBeta(2.0, 1.0)),
    (rules.AlphaBeta(1.0, 0.0), ref.AlphaBeta(1.0, 0.0)),
    (rules.ZPlus(), ref.ZPlus()),
]
# rules without a basis: the generic loop whatever the input
OTHER_RULES = [
    (rules.Epsilon(0.1), ref.Epsilon(0.1)),
    (rules.Epsilon(), ref.Epsilon()),
    (rules.Zero(), ref.Zero()),
]


def _conv(a, w):
    return jax.lax.conv_general_dilated(
        a, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.fixture(scope="module")
def layer():
    """A 3x3 SAME convolution on a post-ReLU input (many exact zeros), biases of both signs."""
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    a = jnp.maximum(jax.random.normal(k1, (2, 6, 6, 4)), 0)
    w = jax.random.normal(k2, (3, 3, 4, 5))
    b = 0.3 * jax.random.normal(k3, (5,))
    z = _conv(a, w) + b
    r = jax.random.normal(k4, z.shape) * z
    network_layer = ref.Conv(np.asarray(w, np.float64), np.asarray(b, np.float64),
                             padding=((1, 1), (1, 1)))  # fmt: skip
    return a, w, b, z, r, network_layer


def _relevance(rule, layer, nonneg):
    a, w, b, z, r, _ = layer
    ctx = LayerContext(apply=_conv, a=a, w=w, b=b, z=z, cotangent=r / z, input_nonneg=nonneg,
                       batched=True)  # fmt: skip
    out = rule(ctx, r)
    assert out.free is None
    return np.asarray(a * out.times_input, np.float64)


def _reference(ref_rule, layer):
    a, _, _, _, r, network_layer = layer
    return ref.propagate_linear(network_layer, ref_rule, np.asarray(a, np.float64),
                                np.asarray(r, np.float64))  # fmt: skip


@pytest.mark.parametrize("rule, ref_rule", BASIS_RULES, ids=[r.name for _, r in BASIS_RULES])
def test_nonnegative_fast_path_matches_numpy_reference(layer, rule, ref_rule, monkeypatch):
    calls = []
    fast_path = base._nonneg_fast_path

    def spy(*args):
        calls.append(1)
        return fast_path(*args)

    monkeypatch.setattr(base, "_nonneg_fast_path", spy)
    fast = _relevance(rule, layer, nonneg=True)
    assert calls, "a rule stating its basis must take the fast path on a non-negative input"
    expected = _reference(ref_rule, layer)
    assert ref.relative_error(fast, expected) <= TOLERANCE


@pytest.mark.parametrize(
    "rule, ref_rule", BASIS_RULES + OTHER_RULES, ids=[r.name for _, r in BASIS_RULES + OTHER_RULES]
)
def test_generic_terms_match_numpy_reference(layer, rule, ref_rule, monkeypatch):
    def forbidden(*args):
        raise AssertionError("the generic loop was expected")

    monkeypatch.setattr(base, "_nonneg_fast_path", forbidden)
    generic = _relevance(rule, layer, nonneg=False)
    expected = _reference(ref_rule, layer)
    assert ref.relative_error(generic, expected) <= TOLERANCE


@pytest.mark.parametrize("rule, ref_rule", OTHER_RULES, ids=[r.name for _, r in OTHER_RULES])
def test_rules_without_a_basis_ignore_non_negativity(layer, rule, ref_rule, monkeypatch):
    """Epsilon/Zero have no fast path: with ``input_nonneg`` they still run (and match) the
    generic loop."""

    def forbidden(*args):
        raise AssertionError("Epsilon and Zero have no fast path")

    monkeypatch.setattr(base, "_nonneg_fast_path", forbidden)
    expected = _reference(ref_rule, layer)
    assert ref.relative_error(_relevance(rule, layer, nonneg=True), expected) <= TOLERANCE
