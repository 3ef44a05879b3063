"""Conservation reports: input completeness and per-stage sums of a Sequential model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
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
    assert report.input.shape == report.absorbed.shape == (2,)


def test_completeness_of_lrp0_on_a_bias_free_relu_net_is_the_logit():
    """Conservation: LRP-0 without biases gives Σ R_in = f_t(x) exactly, nothing absorbed."""
    model = nn.Sequential([nn.Dense(7, use_bias=False), nn.relu, nn.Dense(6, use_bias=False),
                           nn.relu, nn.Dense(3, use_bias=False)])  # fmt: skip
    x = jax.random.normal(jax.random.key(4), (5, 4))
    variables = model.init(jax.random.key(5), x)
    logits = np.asarray(model.apply(variables, x))
    lrp0 = composites.Composite(default=jaxlrp.rules.Zero())
    report = evaluate.completeness(model.apply, variables, x, target=1, composite=lrp0)
    assert np.all(np.abs(logits[:, 1]) > 1e-2)  # well away from the clipped denominators
    np.testing.assert_allclose(report.output, logits[:, 1], rtol=1e-6)
    np.testing.assert_allclose(report.input, logits[:, 1], rtol=1e-5)
    np.testing.assert_allclose(report.absorbed, 0.0, atol=1e-5)


def test_completeness_of_a_dense_layer_absorbs_exactly_the_bias_share():
    """One dense layer ``z = x W + b`` with LRP-0: ``R_j = x_j w_jt / z_t · z_t``, so
    ``Σ R_in = z_t − b_t`` and ``absorbed = b_t / z_t`` (hand computation in NumPy)."""
    rng = np.random.default_rng(6)
    kernel = rng.normal(size=(4, 3)).astype(np.float32)
    bias = np.array([0.5, -0.7, 0.3], np.float32)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    variables = {"params": {"kernel": kernel, "bias": bias}}
    target = np.array([0, 1, 2])
    report = evaluate.completeness(
        nn.Dense(3).apply,
        variables,
        jnp.asarray(x),
        target=jnp.asarray(target),
        composite=composites.Composite(default=jaxlrp.rules.Zero()),
    )
    z = x.astype(np.float64) @ kernel + bias
    z_t = z[np.arange(3), target]
    np.testing.assert_allclose(report.output, z_t, rtol=1e-6)
    np.testing.assert_allclose(report.input, z_t - bias[target], rtol=1e-5)
    np.testing.assert_allclose(report.absorbed, bias[target] / z_t, rtol=1e-4)


def test_sequential_stages_rejects_other_modules():
    with pytest.raises(TypeError, match="Sequential"):
        evaluate.sequential_stages(nn.Dense(3), {})
