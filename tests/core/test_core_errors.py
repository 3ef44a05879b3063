"""Bad input gets a clear error that names what is wrong."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nets import ReluMLP, init

import jaxlrp
from jaxlrp import composites, rules


@pytest.fixture(scope="module")
def mlp():
    model = ReluMLP()
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 10))
    return model, init(model, x), x


def test_unsupported_primitive_names_primitive_shapes_and_module():
    import flax.linen as nn

    class Weird(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(4, name="proj")(x)
            x = jax.lax.cumprod(x, axis=1)
            return nn.Dense(2)(x)

    model = Weird()
    x = jnp.ones((2, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    with pytest.raises(jaxlrp.UnsupportedPrimitiveError) as info:
        jaxlrp.explain(model.apply, variables, x, target=0)
    message = str(info.value)
    assert "'cumprod'" in message
    assert "float32[2, 4]" in message
    assert "Weird" in message
    # a primitive LRP has no rule for says what to write instead
    assert "jnp.exp(jnp.cumsum(jnp.log(x)))" in message and "stop_gradient" in message


def test_a_primitive_missing_from_the_table_names_where_to_add_it():
    W = jnp.ones((3, 4))

    def f(W, x):
        h = x @ W
        return h.at[:, 1].multiply(h[:, 0])  # scatter-mul: no table entry

    with pytest.raises(jaxlrp.UnsupportedPrimitiveError) as info:
        jaxlrp.explain(f, W, jnp.ones((2, 3)), target=0)
    message = str(info.value)
    assert "'scatter-mul'" in message and "float32[2, 4]" in message
    assert "jaxlrp.primitives.PRIMITIVES" in message


def test_target_index_out_of_range(mlp):
    model, variables, x = mlp
    with pytest.raises(ValueError, match="target index 5 is out of range for 5 classes"):
        jaxlrp.explain(model.apply, variables, x, target=5)
    with pytest.raises(ValueError, match="target index -1 is out of range"):
        jaxlrp.explain(model.apply, variables, x, target=jnp.array([0, -1, 2]))


def test_target_of_wrong_shape(mlp):
    model, variables, x = mlp
    with pytest.raises(ValueError, match=r"target of shape \(2,\) does not fit the output"):
        jaxlrp.explain(model.apply, variables, x, target=jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"needs the output's shape \(3, 5\)"):
        jaxlrp.explain(model.apply, variables, x, target=jnp.ones((3, 4)))
    out, relevance_fn = jaxlrp.lrp(model.apply)(variables, x)
    with pytest.raises(ValueError, match="output relevance has shape"):
        relevance_fn(jnp.ones((3,)))


def test_zbox_needs_bounds():
    with pytest.raises(ValueError, match="ZBox needs both bounds"):
        rules.ZBox()
    with pytest.raises(ValueError, match="ZBox needs both bounds"):
        composites.EpsilonGammaBox(low=None, high=1.0)
    with pytest.raises(ValueError, match="low <= high"):
        rules.ZBox(low=1.0, high=0.0)


def test_alpha_beta_must_differ_by_one():
    with pytest.raises(ValueError, match="alpha - beta == 1"):
        rules.AlphaBeta(alpha=2.0, beta=2.0)
    with pytest.raises(ValueError, match=">= 0"):
        rules.AlphaBeta(alpha=-1.0, beta=-2.0)
    rules.AlphaBeta(alpha=1.0, beta=0.0)


def test_negative_parameters_are_rejected():
    with pytest.raises(ValueError, match="epsilon >= 0"):
        rules.Epsilon(-1.0)
    with pytest.raises(ValueError, match="gamma >= 0"):
        rules.Gamma(-0.1)


def test_non_float_inputs(mlp):
    model, variables, _ = mlp
    with pytest.raises(ValueError, match="floating-point inputs only.*int32"):
        jaxlrp.explain(model.apply, variables, jnp.ones((3, 10), jnp.int32), target=0)


def test_argnums_out_of_range(mlp):
    model, variables, x = mlp
    with pytest.raises(ValueError, match="argnums=5 is out of range"):
        jaxlrp.explain(model.apply, variables, x, target=0, argnums=5)


def test_while_loop_on_the_relevance_path_is_refused():
    def f(x):
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 2, c[1] + 1), (x, 0))[0]

    with pytest.raises(jaxlrp.UnsupportedPrimitiveError, match="while loop"):
        jaxlrp.explain(f, jnp.ones((2, 3)), target=0)


def test_no_nan_for_outputs_with_zero_logit(mlp):
    model, variables, x = mlp
    zeroed = jax.tree_util.tree_map(jnp.zeros_like, variables)
    r = jaxlrp.explain(model.apply, zeroed, x, target=0,
                       composite=composites.Composite(rules.Gamma()))
    assert np.all(np.isfinite(r)) and np.all(r == 0)


def test_no_nan_from_epsilon_zero_on_an_exactly_zero_layer_output():
    """``Epsilon(0.0)`` is LRP-0: where a layer's output is exactly 0 it passes no relevance."""
    w1 = jnp.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.3]])
    w2 = jnp.array([[1.0], [2.0]])
    w3 = jnp.array([[0.2], [-0.4], [1.0]])

    def f(x):  # relu(-1) = 0: the second layer's input and output are exactly 0
        return jax.nn.relu(x) @ w1 @ w2 + x @ w3

    relevance = jaxlrp.explain(f, -jnp.ones((1, 3)), target=0,
                               composite=composites.Composite(rules.Epsilon(0.0)))  # fmt: skip
    assert np.all(np.isfinite(relevance))
    np.testing.assert_allclose(relevance.sum(), f(-jnp.ones((1, 3)))[0, 0], rtol=1e-5)
