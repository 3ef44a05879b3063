"""Batch norm is folded automatically; residual blocks conserve relevance with Norm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from nets import images

import jaxlrp
from jaxlrp import composites, rules


class ConvBN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(6, (3, 3), padding="SAME")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3)(x)
        x = nn.relu(x)
        x = nn.Conv(5, (3, 3), strides=2, padding="SAME", use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(4)(x)
        return x


class ConvFolded(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3), padding="SAME")(x))
        x = nn.relu(nn.Conv(5, (3, 3), strides=2, padding="SAME")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(4)(x)


def _random_bn_variables(model, x, seed=0):
    variables = model.init(jax.random.PRNGKey(seed), x)
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), 64))

    def randomize(path, leaf):
        name = path[-1].key
        k = next(keys)
        if name == "var":
            return jax.random.uniform(k, leaf.shape, minval=0.5, maxval=2.0)
        if name == "scale":  # include negative scales: folding must handle sign flips
            return jax.random.uniform(k, leaf.shape, minval=-1.5, maxval=1.5)
        if name in ("mean", "bias"):
            return 0.3 * jax.random.normal(k, leaf.shape)
        return leaf

    return jax.tree_util.tree_map_with_path(randomize, variables)


def _fold(variables):
    p, s = variables["params"], variables["batch_stats"]

    def fold(conv, bn, stats, eps):
        factor = bn["scale"] / jnp.sqrt(stats["var"] + eps)
        bias = conv.get("bias", 0.0)
        return {"kernel": conv["kernel"] * factor,
                "bias": (bias - stats["mean"]) * factor + bn["bias"]}

    return {"params": {
        "Conv_0": fold(p["Conv_0"], p["BatchNorm_0"], s["BatchNorm_0"], 1e-3),
        "Conv_1": fold(p["Conv_1"], p["BatchNorm_1"], s["BatchNorm_1"], 1e-5),
        "Dense_0": p["Dense_0"],
    }}


def test_batch_norm_network_explains_like_the_same_network_folded_by_hand():
    x = images((3, 10, 10, 3))
    bn_model, folded_model = ConvBN(), ConvFolded()
    variables = _random_bn_variables(bn_model, x)
    folded = _fold(variables)
    np.testing.assert_allclose(
        bn_model.apply(variables, x), folded_model.apply(folded, x), rtol=1e-4, atol=1e-5
    )
    for composite in (
        composites.EpsilonGammaBox(low=-1.0, high=1.0),
        composites.EpsilonAlpha2Beta1Flat(),
        composites.EpsilonPlus(),
    ):
        r_bn = jaxlrp.explain(bn_model.apply, variables, x, target=2, composite=composite)
        r_folded = jaxlrp.explain(folded_model.apply, folded, x, target=2, composite=composite)
        np.testing.assert_allclose(r_bn, r_folded, rtol=2e-4, atol=1e-6, err_msg=composite.name)
    table = jaxlrp.rule_table(bn_model.apply, variables, x)
    assert "conv +add+sub+mul+add" in table  # conv, bias, BN folded into one layer


class Residual(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(4, (3, 3), padding="SAME", use_bias=False)(x))
        y = nn.Conv(4, (3, 3), padding="SAME", use_bias=False)(h)
        y = nn.relu(x + y)  # residual sum of two activations
        y = jnp.sum(y, axis=(1, 2))
        return nn.Dense(3, use_bias=False)(y)


def test_residual_block_conserves_relevance_with_norm_splitting():
    model = Residual()
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 6, 6, 4))
    variables = model.init(jax.random.PRNGKey(1), x)
    for sum_rule in (rules.Norm(), rules.Norm(0.0)):
        composite = composites.Composite(rules.Zero(), sum=sum_rule)
        relevance = jaxlrp.explain(model.apply, variables, x, target=1, composite=composite)
        np.testing.assert_allclose(
            relevance.sum(axis=(1, 2, 3)), model.apply(variables, x)[:, 1], rtol=1e-4
        )


class PreActivation(nn.Module):
    """Batch norms that no layer absorbs: on the input, after a ReLU, after a residual sum."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.BatchNorm(use_running_average=True)(x))
        h = nn.Conv(6, (3, 3), padding="SAME")(h)
        y = nn.Conv(6, (3, 3), padding="SAME")(nn.relu(h))
        h = nn.relu(nn.BatchNorm(use_running_average=True)(nn.relu(h) + y))
        return nn.Dense(4)(jnp.mean(h, axis=(1, 2)))


def test_unfoldable_batch_norm_is_an_affine_layer_and_lrp0_is_gradient_times_input():
    with jax.enable_x64(True):
        x = jnp.asarray(images((2, 6, 6, 3)), jnp.float64)
        model = PreActivation()
        variables = _random_bn_variables(model, x)
        variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), variables)
        found = jaxlrp.layers(model.apply, variables, x)
        assert [(info.kind, info.path) for info in found] == [
            ("affine", "BatchNorm_0"), ("conv", "Conv_0"), ("conv", "Conv_1"),
            ("affine", "BatchNorm_1"), ("dense", "Dense_0"),
        ]
        composite = composites.Composite(default=rules.Zero(), sum=rules.Norm(0.0))
        relevance = jaxlrp.explain(model.apply, variables, x, target=1, composite=composite)
        grad = jax.grad(lambda x_: model.apply(variables, x_)[:, 1].sum())(x)
        np.testing.assert_allclose(relevance, x * grad, rtol=1e-7, atol=1e-10)
        # the presets give the batch norms the dense rule; nothing breaks numerically
        for composite in (composites.EpsilonGammaBox(low=-1.0, high=1.0),
                          composites.EpsilonAlpha2Beta1Flat()):
            relevance = jaxlrp.explain(model.apply, variables, x, target=1, composite=composite)
            assert bool(jnp.all(jnp.isfinite(relevance))), composite.name
