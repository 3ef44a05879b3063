"""jaxlrp's relevances equal the independent float64 NumPy reference, rule by rule.

Every configuration of ``configurations.CONFIGURATIONS`` (each rule on every layer; ZBox, WSquare
and Flat on the first layer with another rule elsewhere; EpsilonGammaBox; both max-pool options)
is explained by ``jaxlrp.explain`` on the Flax model (float32) and by ``numpy_lrp`` on the same
weights (float64). They must agree to ||R - R_ref|| / ||R_ref|| <= 1e-5. The cases are checked
to be well conditioned at float32 rounding (test_numpy_reference.py), so a failure here is a real
difference in the propagation, not rounding.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules

from . import numpy_lrp as ref
from .configurations import BY_NAME, PAIRS, reference_relevance, targets_for
from .models import CASES, make_case

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def cases():
    return {name: make_case(name) for name in CASES}


def _explain(configuration, case, target):
    composite = configuration.jaxlrp(rules, composites, case)
    return jaxlrp.explain(
        case.model.apply, case.variables, jnp.asarray(case.x), target=target, composite=composite
    )


@pytest.mark.parametrize("configuration_name, case_name", PAIRS)
def test_composite_matches_numpy_reference(cases, configuration_name, case_name):
    case, configuration = cases[case_name], BY_NAME[configuration_name]
    target = targets_for(case)
    relevance = _explain(configuration, case, jnp.asarray(target))
    assert relevance.shape == case.x.shape
    expected = reference_relevance(configuration, case, target)
    error = ref.relative_error(np.asarray(relevance), expected)
    assert error <= TOLERANCE, f"{configuration_name} on {case_name}: relative error {error:.3e}"


@pytest.mark.parametrize("case_name", CASES)
def test_integer_target_matches_reference(cases, case_name):
    """A single int target explains that class for every example of the batch."""
    case, configuration = cases[case_name], BY_NAME["gamma_everywhere"]
    relevance = _explain(configuration, case, 2)
    expected = reference_relevance(configuration, case, 2)
    error = ref.relative_error(np.asarray(relevance), expected)
    assert error <= TOLERANCE, f"int target on {case_name}: relative error {error:.3e}"


@pytest.mark.parametrize("case_name", CASES)
def test_lrp0_matches_reference_on_bias_free_network(case_name):
    """LRP-0 on the bias-free network, where the reference equals gradient x input."""
    case, configuration = make_case(case_name, use_bias=False), BY_NAME["zero_everywhere"]
    target = targets_for(case)
    relevance = _explain(configuration, case, jnp.asarray(target))
    expected = reference_relevance(configuration, case, target)
    error = ref.relative_error(np.asarray(relevance), expected)
    assert error <= TOLERANCE, f"bias-free LRP-0 on {case_name}: relative error {error:.3e}"


# ------------------------------------------------------------------------------------------
# Stabilizer conventions, isolated on tiny models where they change the result by far more
# than float32 rounding (the configurations above only see them through a few small z's)
# ------------------------------------------------------------------------------------------


class _PoolThenDense(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(3, name="Dense_0")(x.reshape((x.shape[0], -1)))


def test_average_pool_norm_stabilizes_the_pooled_mean():
    """Norm on average pooling: R_in = a * VJP(R_out / stab(z)) with z the pooled *output*
    (sum / n), as zennit's Norm on AvgPool2d: the denominator is mean + eps, not sum + eps."""
    rng = np.random.default_rng(10)
    x = rng.uniform(0.5e-3, 1.5e-3, size=(2, 4, 4, 2)).astype(np.float32)  # means ~1e-3
    kernel = rng.normal(size=(8, 3)).astype(np.float32)
    bias = (0.1 * rng.normal(size=3)).astype(np.float32)
    variables = {"params": {"Dense_0": {"kernel": kernel, "bias": bias}}}
    network = [ref.AvgPool(), ref.Flatten(), ref.Dense(kernel.astype(np.float64), bias)]
    target = np.array([0, 2])
    relevance = jaxlrp.explain(
        _PoolThenDense().apply,
        variables,
        jnp.asarray(x),
        target=jnp.asarray(target),
        composite=composites.Composite(default=rules.Epsilon(epsilon=0.0)),
    )
    expected = ref.explain(network, x, target, ref.Composite(default=ref.Epsilon(0.0)))
    error = ref.relative_error(np.asarray(relevance), expected.relevance)
    assert error <= TOLERANCE, f"avg-pool Norm: relative error {error:.3e}"


def test_zero_rule_clips_its_denominator_instead_of_adding_the_stabilizer():
    """Zero() is not Epsilon(1e-6): its denominator is sign(z)·max(|z|, 1e-6), so an output with
    z = 1e-4 keeps all of its relevance on the input side, R_j = a_j w_j0 (by hand: [0.5, 0.5,
    -1]); Epsilon(1e-6) would keep only 1e-4 / (1e-4 + 1e-6) = 99% of it."""
    kernel = np.array([[0.5, 1.0], [0.25, -1.0], [1.0, 0.5]], dtype=np.float32)
    bias = np.array([1e-4, 0.0], dtype=np.float32)
    x = np.array([[1.0, 2.0, -1.0]], dtype=np.float32)  # z_0 = 0.5 + 0.5 - 1 + 1e-4
    variables = {"params": {"kernel": kernel, "bias": bias}}
    relevance = jaxlrp.explain(
        nn.Dense(2).apply,
        variables,
        jnp.asarray(x),
        target=0,
        composite=composites.Composite(default=rules.Zero()),
    )
    np.testing.assert_allclose(relevance, [[0.5, 0.5, -1.0]], rtol=1e-3)
    network = [ref.Dense(kernel.astype(np.float64), bias.astype(np.float64))]
    expected = ref.explain(network, x, 0, ref.Composite(default=ref.Zero()))
    error = ref.relative_error(np.asarray(relevance), expected.relevance)
    assert error <= TOLERANCE, f"Zero stabilizer: relative error {error:.3e}"
    epsilon = ref.explain(network, x, 0, ref.Composite(default=ref.Epsilon(1e-6)))
    assert ref.relative_error(epsilon.relevance, expected.relevance) > 5e-3
