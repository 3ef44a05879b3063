"""Conservation reports: input completeness and per-stage sums of a Sequential model."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, evaluate


@pytest.fixture(scope="module")
def sequential():
    model = nn.Sequential([
        nn.Conv(4, (3, 3)), nn.relu,
        lambda h: nn.avg_pool(h, (2, 2), (2, 2)),
        lambda h: h.reshape(h.shape[0], -1),
        nn.Dense(8), nn.relu, nn.Dense(3),
    ])  # fmt: skip
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 1))
    variables = model.init(jax.random.key(1), x)
    return model, variables, x


@pytest.mark.parametrize("composite", [
    composites.Composite(), composites.EpsilonGammaBox(low=0.0, high=1.0),
    composites.EpsilonPlusFlat(),
])  # fmt: skip
def test_chained_stages_reproduce_explain(sequential, composite):
    model, variables, x = sequential
    stages, names = evaluate.sequential_stages(model, variables)
    report = evaluate.layerwise_conservation(stages, x, target=1, composite=composite,
                                             names=names)  # fmt: skip
    full = jaxlrp.explain(model.apply, variables, x, target=1, composite=composite)
    np.testing.assert_allclose(report.relevance[0], full, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(report.sums[-1], model.apply(variables, x)[:, 1], rtol=1e-6)
    assert report.sums.shape == (len(stages) + 1, 2)
    assert report.absorbed.shape == (len(stages), 2)
    assert "input" in report.table()


def test_lrp0_without_biases_conserves_at_every_stage():
    model = nn.Sequential([nn.Dense(6, use_bias=False), nn.relu, nn.Dense(3, use_bias=False)])
    x = jax.random.normal(jax.random.key(2), (4, 5))
    variables = model.init(jax.random.key(3), x)
    stages, _ = evaluate.sequential_stages(model, variables)
    report = evaluate.layerwise_conservation(
        stages, x, target=0, composite=composites.Composite(default=jaxlrp.rules.Epsilon(0.0)))
    np.testing.assert_allclose(report.sums, np.broadcast_to(report.sums[-1], report.sums.shape),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_completeness_reports_the_target_logit(sequential):
    model, variables, x = sequential
    report = evaluate.completeness(model.apply, variables, x, target=2)
    np.testing.assert_allclose(report.output, model.apply(variables, x)[:, 2], rtol=1e-6)
    r = jaxlrp.explain(model.apply, variables, x, target=2)
    np.testing.assert_allclose(report.input, r.sum(axis=(1, 2, 3)), rtol=1e-5)
    assert report.absorbed.shape == (2,)


def test_sequential_stages_rejects_other_modules():
    with pytest.raises(TypeError, match="Sequential"):
        evaluate.sequential_stages(nn.Dense(3), {})
