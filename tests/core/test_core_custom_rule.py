"""A research user defines a new rule in a few lines (examples/custom_rule.py)."""

import dataclasses
import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import composites, rules

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom_rule.py"


def test_custom_rule_example_runs():
    result = runpy.run_path(str(EXAMPLE), run_name="example")["main"]()
    assert np.all(np.isfinite(result["relevance"]))


def test_custom_term_rule_matches_its_formula_on_a_dense_layer():
    @dataclasses.dataclass(frozen=True)
    class AbsWeightPlus(rules.ModifiedRule):
        stabilizer: float = 1e-6

        def groups(self):
            return (rules.Group((rules.Term(rules.positive_input, jnp.abs, None),)),)

    w = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6))

    def f(x):
        return x @ w

    r = jaxlrp.explain(f, x, target=1, composite=composites.Composite(AbsWeightPlus()))
    out = np.asarray(f(x))[:, 1]
    xp = np.maximum(np.asarray(x), 0)
    contrib = xp * np.abs(np.asarray(w))[:, 1]  # (2, 6)
    expected = contrib / (contrib.sum(axis=1, keepdims=True) + 1e-6) * out[:, None]
    np.testing.assert_allclose(r, expected, rtol=1e-5, atol=1e-7)
