"""jaxlrp's relevances equal the independent float64 NumPy reference, rule by rule.

Every configuration of ``configurations.CONFIGURATIONS`` (each rule on every layer; ZBox, WSquare
and Flat on the first layer with another rule elsewhere; EpsilonGammaBox; both max-pool options)
is explained by ``jaxlrp.explain`` on the Flax model (float32) and by ``numpy_lrp`` on the same
weights (float64). They must agree to ||R - R_ref|| / ||R_ref|| <= 1e-5. The cases are checked
to be well conditioned at float32 rounding (test_numpy_reference.py), so a failure here is a real
difference in the propagation, not rounding.
"""

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
