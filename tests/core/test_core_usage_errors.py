"""Common mistakes of a new user get an error (or a warning) that names what is wrong and how to
fix it (see :mod:`jaxlrp.validation`)."""

import functools
import importlib
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nets import ReluMLP, init

import jaxlrp
from jaxlrp import composites, rules
from jaxlrp.errors import UsageError, UsageWarning


class TrainableNet(nn.Module):
    """Dense, batch norm and dropout, switched by ``train`` like most Flax examples."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(6)(x))
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(3)(x)


@pytest.fixture(scope="module")
def mlp():
    model = ReluMLP()
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 10))
    return model, init(model, x), x


@pytest.fixture(scope="module")
def trainable():
    model = TrainableNet()
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    return model, model.init(jax.random.PRNGKey(0), x), x


@pytest.fixture
def no_usage_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UsageWarning)
        yield


# --- composite --------------------------------------------------------------------------------


def test_composite_given_as_a_preset_name_is_that_preset(mlp, no_usage_warnings):
    model, variables, x = mlp
    expected = jaxlrp.explain(model.apply, variables, x, target=1,
                              composite=composites.EpsilonPlus())  # fmt: skip
    for name in ("epsilon-plus", "EpsilonPlus", "epsilon_plus", "EPSILON-PLUS"):
        r = jaxlrp.explain(model.apply, variables, x, target=1, composite=name)
        np.testing.assert_allclose(r, expected, rtol=1e-6, atol=1e-7)
    assert composites.get("EpsilonAlpha2Beta1Flat") == composites.EpsilonAlpha2Beta1Flat()
    assert composites.get("attn_lrp", epsilon=0.1) == composites.AttnLRP(epsilon=0.1)


def test_preset_name_that_needs_bounds_says_how_to_give_them(mlp):
    model, variables, x = mlp
    with pytest.raises(UsageError, match=r"'epsilon-gamma-box' needs low, high.*"
                       r"composites\.get\('epsilon-gamma-box', low=\.\.\., high=\.\.\.\)"):
        jaxlrp.explain(model.apply, variables, x, target=0, composite="epsilon-gamma-box")
    built = composites.get("EpsilonGammaBox", low=-1.0, high=1.0)
    assert built == composites.EpsilonGammaBox(low=-1.0, high=1.0)


def test_unknown_preset_name_lists_the_valid_names(mlp):
    model, variables, x = mlp
    with pytest.raises(UsageError, match=r"unknown composite 'epsilon-gama'; valid names: "
                       r"epsilon-gamma-box, epsilon-plus, .*gradient"):
        jaxlrp.explain(model.apply, variables, x, target=0, composite="epsilon-gama")
    with pytest.raises(UsageError, match=r"'gradient' takes no argument 'epsilon'"):
        composites.get("gradient", epsilon=0.1)


def test_uncalled_preset_says_call_it(mlp):
    model, variables, x = mlp
    with pytest.raises(UsageError, match=r"call it: composite=composites\.EpsilonPlus\(\)"):
        jaxlrp.explain(model.apply, variables, x, target=0, composite=composites.EpsilonPlus)
    with pytest.raises(UsageError, match=r"composites\.EpsilonGammaBox\(low=\.\.\., high=\.\.\.\)"):
        jaxlrp.lrp(model.apply, composites.EpsilonGammaBox)


def test_a_layer_rule_as_composite_is_the_rule_of_every_layer(mlp, no_usage_warnings):
    model, variables, x = mlp
    expected = jaxlrp.explain(model.apply, variables, x, target=2,
                              composite=composites.Composite(default=rules.Epsilon(0.1)))
    r = jaxlrp.explain(model.apply, variables, x, target=2, composite=rules.Epsilon(0.1))
    np.testing.assert_allclose(r, expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(UsageError, match=r"rules\.Epsilon is a rule class.*rules\.Epsilon\(\)"):
        jaxlrp.explain(model.apply, variables, x, target=2, composite=rules.Epsilon)
    with pytest.raises(UsageError, match=r"node rule.*Composite\(activation=Pass\(\)\)"):
        jaxlrp.explain(model.apply, variables, x, target=2, composite=rules.Pass())
    with pytest.raises(UsageError, match="composite must be a Composite"):
        jaxlrp.explain(model.apply, variables, x, target=2, composite=0.1)


# --- the function and its arguments ------------------------------------------------------------


def test_unbound_linen_module_suggests_model_apply(mlp):
    model, variables, x = mlp
    with pytest.raises(UsageError, match=r"linen module \(ReluMLP\).*jaxlrp\.explain\("
                       r"model\.apply, variables, x"):
        jaxlrp.explain(model, variables, x, target=0)
    with pytest.raises(UsageError, match="pass its apply function"):
        jaxlrp.lrp(model)(variables, x)


def test_keyword_arguments_of_fn_are_bound_with_functools_partial(trainable, no_usage_warnings):
    model, variables, x = trainable
    with pytest.raises(UsageError, match=r"got train=False.*functools\.partial\(model\.apply, "
                       r"train=False\)"):
        jaxlrp.explain(model.apply, variables, x, target=0, train=False)
    with pytest.raises(UsageError, match=r"lrp\(\) passes only positional.*functools\.partial"):
        jaxlrp.lrp(model.apply)(variables, x, train=False)
    with pytest.raises(UsageError, match=r"mutable= makes apply return \(out, updated_state\).*"
                       r"train=False"):
        jaxlrp.explain(model.apply, variables, x, target=0, mutable=["batch_stats"])
    with pytest.raises(UsageError, match=r"rngs= feeds dropout.*inference mode"):
        jaxlrp.explain(model.apply, variables, x, target=0, rngs={"dropout": jax.random.key(0)})
    with pytest.raises(UsageError, match=r"did you mean 'batch' → 'batched'"):
        jaxlrp.explain(model.apply, variables, x, target=0, batch=True)
    # the partial the messages suggest works
    jaxlrp.explain(functools.partial(model.apply, train=False), variables, x, target=0)


def test_tuple_output_asks_for_one_array_of_logits(trainable):
    model, variables, x = trainable

    def with_state(v, x):
        return model.apply(v, x, mutable=["batch_stats"])

    match = r"must return one array of logits.*a tuple of 2 \(float32\[4, 3\], .*lambda v, x"
    with pytest.raises(UsageError, match=match):
        jaxlrp.explain(with_state, variables, x, target=0)
    with pytest.raises(UsageError, match="must return one array of logits"):
        jaxlrp.lrp(with_state)(variables, x)


def test_tuple_output_is_refused_on_the_compiled_path_too(trainable, monkeypatch):
    model, variables, x = trainable
    monkeypatch.setattr(importlib.import_module("jaxlrp.explain"), "COMPILE_EAGER_CALLS", True)

    def with_state(v, x):
        return model.apply(v, x, mutable=["batch_stats"])

    with pytest.raises(UsageError, match=r"a tuple of 2 \(float32\[4, 3\], dict\)"):
        jaxlrp.explain(with_state, variables, x, target=0)


def test_target_none_says_what_a_target_is(mlp):
    model, variables, x = mlp
    with pytest.raises(UsageError, match=r"target=None: give the class to explain.*argmax"):
        jaxlrp.explain(model.apply, variables, x, target=None)


def test_swapped_variables_and_input(mlp):
    model, variables, x = mlp
    with pytest.raises(UsageError, match=r"variables and the input are swapped: ReluMLP\.apply "
                       r"takes the variables first.*shape \(3, 10\)"):
        jaxlrp.explain(model.apply, x, variables, target=0)
    # any other function: explaining a variables dict may be meant, so only a warning
    with pytest.warns(UsageWarning, match=r"are the variables and the input swapped\?"):
        try:
            jaxlrp.explain(lambda v, x: model.apply(v, x), x, variables, target=0)
        except Exception:  # noqa: BLE001 - the swapped call fails inside Flax afterwards
            pass


def test_integer_image_says_to_preprocess(no_usage_warnings):
    def model(scale, x):
        return jnp.mean(x * scale, axis=(1, 2))

    pixels = jnp.full((2, 8, 8, 3), 200, jnp.uint8)
    with pytest.raises(UsageError, match=r"dtype uint8 and shape \(2, 8, 8, 3\).*raw image pixels"
                       r".*jaxlrp\.models\.info\(name\).*info\.preprocess\(image\)"):
        jaxlrp.explain(model, 2.0, pixels, target=0)
    # integer token ids that index nothing keep the token message
    with pytest.raises(ValueError, match="reaches no lookup") as info:
        jaxlrp.explain(lambda s, ids: ids * s, jnp.ones((2, 5)), jnp.ones((2, 5), jnp.int32),
                       target=0)  # fmt: skip
    assert not isinstance(info.value, UsageError)


# --- the output and the model's mode ----------------------------------------------------------


def test_batch_shaped_output_warns_that_one_example_is_explained(mlp):
    model, variables, x = mlp

    def regression(v, x):
        return model.apply(v, x)[:, 0]

    with pytest.warns(UsageWarning, match=r"output has shape \(3,\), read as \(3 classes,\).*"
                      r"one example only.*out\[:, None\].*batched=False"):
        jaxlrp.explain(regression, variables, x, target=0)
    with pytest.raises(UsageError, match=r"batched=True but fn's output has shape \(3,\)"):
        jaxlrp.explain(regression, variables, x, target=0, batched=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UsageWarning)
        jaxlrp.explain(regression, variables, x, target=0, batched=False)
        # a float target (each example's own output) is unambiguous
        jaxlrp.explain(regression, variables, x, target=regression(variables, x))
        # the fix the message suggests
        r = jaxlrp.explain(lambda v, x: regression(v, x)[:, None], variables, x, target=0)
        assert r.shape == x.shape


def test_model_in_training_mode_warns(trainable):
    model, variables, x = trainable
    key = jax.random.key(3)

    def dropout_on(v, x):
        return model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})[0]

    with pytest.warns(UsageWarning) as record:
        jaxlrp.explain(dropout_on, variables, x, target=0)
    messages = [str(w.message) for w in record if w.category is UsageWarning]
    assert any("random numbers to its activations" in m and "Dropout_0" in m and "train=False" in m
               for m in messages), messages  # fmt: skip
    assert any("statistics of the batch" in m and "BatchNorm_0" in m
               and "use_running_average=True" in m for m in messages), messages  # fmt: skip


def test_valid_calls_do_not_warn(mlp, trainable, no_usage_warnings):
    model, variables, x = mlp
    jaxlrp.explain(model.apply, variables, x, target=jnp.array([0, 1, 2]))
    jaxlrp.explain(model.apply, variables, x[0], target=0)  # one example, (classes,) output
    out, relevance_fn = jaxlrp.lrp(model.apply, "epsilon-plus")(variables, x)
    assert relevance_fn(out).shape == x.shape
    net, net_variables, net_x = trainable
    jaxlrp.explain(net.apply, net_variables, net_x, target=0)  # inference mode by default
    bound = net.bind(net_variables)
    jaxlrp.explain(lambda x: bound(x), net_x, target=0)
