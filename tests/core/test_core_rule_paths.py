"""The fast path for non-negative inputs computes exactly what the generic term loop computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp import rules
from jaxlrp.rules.base import LayerContext


def _conv(a, w):
    return jax.lax.conv_general_dilated(
        a, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.mark.parametrize(
    "rule",
    [rules.Gamma(0.25), rules.Gamma(1.0), rules.AlphaBeta(2.0, 1.0), rules.AlphaBeta(1.0, 0.0),
     rules.ZPlus(), rules.Epsilon(0.1)],
    ids=repr,
)
def test_nonnegative_fast_path_equals_generic_terms(rule):
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    a = jnp.maximum(jax.random.normal(k1, (2, 6, 6, 4)), 0)  # post-ReLU: many exact zeros
    w = jax.random.normal(k2, (3, 3, 4, 5))
    b = 0.3 * jax.random.normal(k3, (5,))
    z = _conv(a, w) + b
    r = jax.random.normal(k4, z.shape) * z

    def context(nonneg):
        return LayerContext(apply=_conv, a=a, w=w, b=b, z=z, cotangent=r / z,
                            input_nonneg=nonneg, batched=True)

    fast = rules.Relevance(**vars(rule(context(True), r)))
    generic = rule(context(False), r)
    np.testing.assert_allclose(a * fast.times_input, a * generic.times_input, rtol=2e-5,
                               atol=1e-6)
    assert fast.free is None and generic.free is None
