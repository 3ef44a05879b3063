"""LRP-0 on bias-free ReLU networks is gradient × input and conserves the target logit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nets import ReluMLP, SmallCNN, images, init

import jaxlrp
from jaxlrp import composites, rules

LRP0 = composites.Composite(default=rules.Zero(), sum=rules.Norm(0.0))


@pytest.mark.parametrize(
    "model, x",
    [
        (ReluMLP(use_bias=False), jax.random.normal(jax.random.PRNGKey(0), (4, 10))),
        (SmallCNN(use_bias=False), images()),
    ],
    ids=["mlp", "cnn"],
)
def test_lrp0_conserves_target_logit_and_equals_gradient_times_input(model, x):
    variables = init(model, x)
    target = jnp.array([0, 1, 2, 3])
    relevance = jaxlrp.explain(model.apply, variables, x, target=target, composite=LRP0)

    logits = model.apply(variables, x)
    picked = logits[jnp.arange(4), target]
    sums = relevance.reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(sums, picked, rtol=1e-5, atol=1e-6)

    def target_logit(xi, t):
        return model.apply(variables, xi[None])[0, t]

    grads = jax.vmap(jax.grad(target_logit))(x, target)
    np.testing.assert_allclose(relevance, x * grads, rtol=1e-4, atol=1e-6)


def test_epsilon_absorbs_more_relevance_as_epsilon_grows():
    model = ReluMLP(use_bias=False)
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 10))
    variables = init(model, x)
    logit = model.apply(variables, x)[:, 1]
    totals = []
    for eps in (1e-6, 0.1, 1.0, 10.0):
        r = jaxlrp.explain(
            model.apply, variables, x, target=1, composite=composites.Composite(rules.Epsilon(eps))
        )
        totals.append(np.abs(np.asarray(r.sum(axis=1))))
    assert np.all(totals[0] <= np.abs(np.asarray(logit)) * (1 + 1e-5))
    for smaller, larger in zip(totals, totals[1:], strict=False):
        assert np.all(larger <= smaller + 1e-6)
    assert np.all(totals[-1] < totals[0])


@pytest.mark.parametrize(
    "rule",
    [rules.ZPlus(), rules.AlphaBeta(2.0, 1.0), rules.Flat(), rules.WSquare(),
     rules.ZBox(low=-1.0, high=1.0), rules.Gamma(0.5)],
    ids=lambda r: type(r).__name__,
)
def test_rules_conserve_relevance_per_layer_without_bias(rule):
    model = ReluMLP(features=(7,), use_bias=False)  # a single dense layer
    x = jax.random.uniform(jax.random.PRNGKey(4), (3, 6), minval=-1, maxval=1)
    variables = init(model, x)
    out = model.apply(variables, x)
    relevance = jaxlrp.explain(
        model.apply, variables, x, target=2, composite=composites.Composite(rule)
    )
    np.testing.assert_allclose(relevance.sum(axis=1), out[:, 2], rtol=1e-4)


def test_zero_inputs_and_zero_weights_give_finite_zero_relevance():
    model = SmallCNN()
    x = jnp.zeros((2, 12, 12, 3))
    variables = jax.tree_util.tree_map(jnp.zeros_like, init(model, x))
    for composite in (
        composites.EpsilonGammaBox(low=-1.0, high=1.0),
        composites.EpsilonPlusFlat(),
        composites.EpsilonAlpha2Beta1(),
        composites.Composite(rules.Zero()),
    ):
        relevance = jaxlrp.explain(model.apply, variables, x, target=0, composite=composite)
        assert np.all(np.isfinite(relevance)), composite.name
        assert np.all(relevance == 0), composite.name


def test_all_zero_layer_output_gives_finite_relevance():
    model = SmallCNN()
    x = images((2, 12, 12, 3))
    variables = init(model, x)
    # kill the second conv: all of its outputs are exactly 0 after ReLU
    params = variables["params"]
    params = {**params, "Conv_1": {"kernel": jnp.zeros_like(params["Conv_1"]["kernel"]),
                                   "bias": -jnp.ones_like(params["Conv_1"]["bias"])}}
    variables = {"params": params}
    for composite in (composites.EpsilonGammaBox(low=-1.0, high=1.0), None):
        relevance = jaxlrp.explain(model.apply, variables, x, target=0, composite=composite)
        assert np.all(np.isfinite(relevance))


def test_relative_epsilon_uses_a_quarter_std_of_each_examples_preactivations():
    w = jax.random.normal(jax.random.PRNGKey(7), (6, 4))
    b = 0.2 * jax.random.normal(jax.random.PRNGKey(8), (4,))
    x = jax.random.normal(jax.random.PRNGKey(9), (3, 6))

    def f(x):
        return x @ w + b

    composite = composites.Composite(rules.RelativeEpsilon(factor=0.25))
    relevance = jaxlrp.explain(f, x, target=2, composite=composite)

    xn, wn, bn = (np.asarray(v, np.float64) for v in (x, w, b))
    z = xn @ wn + bn
    eps = 0.25 * z.std(axis=1, keepdims=True) + 1e-6  # per example
    denominator = z + eps * np.where(z >= 0, 1.0, -1.0)
    r_out = np.zeros_like(z)
    r_out[:, 2] = z[:, 2]
    expected = xn * ((r_out / denominator) @ wn.T)
    np.testing.assert_allclose(relevance, expected, rtol=1e-5, atol=1e-7)
    # per example: explaining one example alone gives its row of the batch
    single = jaxlrp.explain(f, x[1:2], target=2, composite=composite)
    np.testing.assert_allclose(single[0], relevance[1], rtol=1e-5, atol=1e-7)
