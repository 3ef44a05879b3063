"""The public API beyond ``explain``'s defaults: ``output_relevance``, ``print_rules``, the
``batched=`` argument, and the gradient-type composites (Gradient, GuidedBackprop, DeconvNet),
each against a value computed by hand in NumPy or by ``jax.grad``."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules

RNG = np.random.default_rng(2)
SIZES = (6, 8, 7, 4)
PARAMS = {
    name: {"kernel": RNG.normal(size=(m, n)).astype(np.float32),
           "bias": (0.3 * RNG.normal(size=n)).astype(np.float32)}
    for name, m, n in zip(("first", "hidden", "out"), SIZES[:-1], SIZES[1:], strict=True)
}  # fmt: skip
X = RNG.normal(size=(5, 6)).astype(np.float32)
TARGET = np.array([0, 3, 1, 2, 3])
ROWS = np.arange(5)


def mlp(params, x):
    """Dense-ReLU-Dense-ReLU-Dense."""
    h = jax.nn.relu(x @ params["first"]["kernel"] + params["first"]["bias"])
    h = jax.nn.relu(h @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    return h @ params["out"]["kernel"] + params["out"]["bias"]


def _mlp_backward(x, activation_backward):
    """Reverse pass through ``mlp`` in NumPy (float64) from ``onehot(TARGET)``;
    ``activation_backward(g, pre)`` maps the cotangent through a ReLU with pre-activation
    ``pre``."""
    p = {k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in PARAMS.items()}
    pre1 = x @ p["first"]["kernel"] + p["first"]["bias"]
    pre2 = np.maximum(pre1, 0) @ p["hidden"]["kernel"] + p["hidden"]["bias"]
    g = np.eye(4)[TARGET]
    g = g @ p["out"]["kernel"].T
    g = activation_backward(g, pre2) @ p["hidden"]["kernel"].T
    g = activation_backward(g, pre1) @ p["first"]["kernel"].T
    return g


# --- output_relevance ----------------------------------------------------------------------


def test_output_relevance_of_class_indices_is_the_logit_times_onehot():
    out = jnp.array([[1.5, -2.0, 3.0], [0.5, 4.0, -1.0]])
    relevance, cotangent = jaxlrp.output_relevance(out, jnp.array([2, 0]))
    np.testing.assert_array_equal(relevance, [[0.0, 0.0, 3.0], [0.5, 0.0, 0.0]])
    np.testing.assert_array_equal(cotangent, [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    relevance, cotangent = jaxlrp.output_relevance(out, 1)  # one class for every example
    np.testing.assert_array_equal(relevance, [[0.0, -2.0, 0.0], [0.0, 4.0, 0.0]])
    np.testing.assert_array_equal(cotangent, [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    relevance, _ = jaxlrp.output_relevance(jnp.array([1.0, 2.0, 3.0]), 1)  # no batch axis
    np.testing.assert_array_equal(relevance, [0.0, 2.0, 0.0])


def test_output_relevance_of_a_float_target_is_the_target_itself():
    out = jnp.array([[2.0, -4.0, 0.0]])
    target = jnp.array([[1.0, 1.0, 5.0]])
    relevance, cotangent = jaxlrp.output_relevance(out, target)
    np.testing.assert_array_equal(relevance, target)
    np.testing.assert_array_equal(cotangent, [[0.5, -0.25, 0.0]])  # R / out, 0 where out = 0


@pytest.mark.parametrize(
    "out, target, message",
    [
        (jnp.zeros((2, 3)), 3, "target index 3 is out of range for 3 classes"),
        (jnp.zeros((2, 3)), jnp.array([0, -1]), "target index -1 is out of range"),
        (jnp.zeros((2, 3)), jnp.array([0, 1, 2]), r"target of shape \(3,\) does not fit"),
        (jnp.zeros((2, 3)), jnp.zeros((2,)), "a float target is the output relevance"),
        (jnp.zeros(()), 0, "an int target needs an output with a class axis"),
    ],
)
def test_output_relevance_rejects_targets_that_do_not_fit(out, target, message):
    with pytest.raises(ValueError, match=message):
        jaxlrp.output_relevance(out, target)


# --- print_rules ---------------------------------------------------------------------------


def test_print_rules_names_every_layer_its_rule_and_why(capsys):
    composite = composites.Composite(
        first=rules.Flat(), paths=[("hidden", rules.Gamma(0.5))], dense=rules.Epsilon(0.1),
        product=rules.Gradient(),
    )  # fmt: skip
    jaxlrp.print_rules(mlp, PARAMS, jnp.asarray(X), composite=composite)
    printed = capsys.readouterr().out
    assert printed == jaxlrp.rule_table(mlp, PARAMS, jnp.asarray(X), composite=composite) + "\n"
    lines = printed.rstrip("\n").split("\n")
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines]
    assert rows[0] == ["#", "layer", "kind", "input -> output", "rule", "because"]
    assert rows[1] == ["0", "first (first)", "dense +add", "[5, 6] -> [5, 8]",
                       repr(rules.Flat()), "first"]  # fmt: skip
    assert rows[2] == ["1", "hidden", "dense +add", "[5, 8] -> [5, 7]", repr(rules.Gamma(0.5)),
                       "path 'hidden'"]  # fmt: skip
    assert rows[3] == ["2", "out (last)", "dense +add", "[5, 7] -> [5, 4]",
                       repr(rules.Epsilon(0.1)), "dense"]  # fmt: skip
    assert lines[4:] == ["2 activation node(s): Pass()"]  # no product in this network


# --- batched= --------------------------------------------------------------------------------


def _relative_epsilon_by_hand(x, kernel, bias, target, std_axes):
    """LRP-ε on ``z = x W + b`` with ``ε = 0.25 · std(z) + 1e-6``, ``std`` over ``std_axes``."""
    x = x.astype(np.float64)
    z = x @ kernel + bias
    eps = 0.25 * z.std(axis=std_axes, keepdims=True) + 1e-6
    r_out = z * np.eye(z.shape[1])[target]
    s = r_out / (z + eps * np.where(z >= 0, 1.0, -1.0))
    return x * (s @ kernel.T)


def test_batched_decides_whether_relative_epsilon_takes_std_per_example():
    kernel, bias = PARAMS["first"]["kernel"], PARAMS["first"]["bias"]
    composite = composites.Composite(default=rules.RelativeEpsilon(0.25))

    def layer(p, x):
        return x @ p[0] + p[1]

    def run(**kwargs):
        return np.asarray(jaxlrp.explain(layer, (kernel, bias), jnp.asarray(X),
                                         target=jnp.asarray(TARGET % 3), composite=composite,
                                         **kwargs))  # fmt: skip

    per_example = _relative_epsilon_by_hand(X, kernel, bias, TARGET % 3, std_axes=1)
    whole_batch = _relative_epsilon_by_hand(X, kernel, bias, TARGET % 3, std_axes=None)
    assert np.abs(per_example - whole_batch).max() > 1e-2  # the two conventions differ here
    np.testing.assert_allclose(run(batched=True), per_example, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(batched=False), whole_batch, rtol=1e-5, atol=1e-6)
    # default: batched when the output has two or more axes
    np.testing.assert_allclose(run(), per_example, rtol=1e-5, atol=1e-6)
    # a batched explanation of one example is that example's row
    single = jaxlrp.explain(layer, (kernel, bias), jnp.asarray(X[2:3]), target=int(TARGET[2] % 3),
                            composite=composite, batched=True)  # fmt: skip
    np.testing.assert_allclose(single[0], per_example[2], rtol=1e-5, atol=1e-6)


# --- gradient-type composites ----------------------------------------------------------------


def _grad_of_target(fn, params, x, target):
    return jax.vmap(jax.grad(lambda xi, ti: fn(params, xi[None])[0, ti]))(x, target)


def test_gradient_composite_is_gradient_times_input_and_its_modified_gradient_the_gradient():
    """``composites.Gradient()``: ``explain`` returns ``x ⊙ ∇f_t`` (``lrp(times_input=False)``
    the gradient itself), also through sums, products, sigmoid gates and non-ReLU activations."""

    def fn(p, x):
        a = jax.nn.relu(x @ p["first"]["kernel"] + p["first"]["bias"])
        b = jnp.tanh(x @ p["first"]["kernel"][:, ::-1])
        scale = jnp.tanh(x @ p["first"]["kernel"] * 0.3) + 1.0
        gate = jax.nn.sigmoid(x @ p["first"]["kernel"] * 0.5)
        return ((a + b) * scale * gate) @ p["hidden"]["kernel"]

    x, target = jnp.asarray(X), jnp.asarray(TARGET)
    composite = composites.Gradient()
    kinds = jaxlrp.rule_table(fn, PARAMS, x, composite=composite)
    assert "sum node(s)" in kinds and "product node(s)" in kinds and "gate node(s)" in kinds
    grad = _grad_of_target(fn, PARAMS, x, target)
    relevance = jaxlrp.explain(fn, PARAMS, x, target=target, composite=composite)
    np.testing.assert_allclose(relevance, x * grad, rtol=1e-5, atol=1e-6)
    out, relevance_fn = jaxlrp.lrp(fn, composite, times_input=False)(PARAMS, x)
    modified = relevance_fn(out * jax.nn.one_hot(target, out.shape[-1]))
    np.testing.assert_allclose(modified, grad, rtol=1e-5, atol=1e-6)


def assert_composite_matches_hand_backward(composite, expected: np.ndarray) -> None:
    """``lrp(times_input=False)`` gives the hand-computed backward pass ``expected`` and
    ``explain`` gives ``x ⊙ expected``."""
    x = jnp.asarray(X)
    out, relevance_fn = jaxlrp.lrp(mlp, composite, times_input=False)(PARAMS, x)
    modified = relevance_fn(out * jax.nn.one_hot(jnp.asarray(TARGET), 4))
    np.testing.assert_allclose(modified, expected, rtol=1e-5, atol=1e-6)
    relevance = jaxlrp.explain(mlp, PARAMS, x, target=jnp.asarray(TARGET), composite=composite)
    np.testing.assert_allclose(relevance, X * expected, rtol=1e-5, atol=1e-6)


def test_guided_backprop_matches_hand_computation_on_a_relu_mlp():
    """Guided backprop (Springenberg et al. 2015): at each ReLU the cotangent is masked by the
    forward pass *and* by its own sign, ``g_in = [pre > 0] · max(g_out, 0)``."""
    expected = _mlp_backward(X.astype(np.float64), lambda g, pre: (pre > 0) * np.maximum(g, 0))
    assert_composite_matches_hand_backward(composites.GuidedBackprop(), expected)
    gradient = _mlp_backward(X.astype(np.float64), lambda g, pre: (pre > 0) * g)
    assert np.abs(expected - gradient).max() > 1e-2  # guided backprop is not the gradient here


def test_deconvnet_matches_hand_computation_on_a_relu_mlp():
    """DeconvNet (Zeiler & Fergus 2014): at each ReLU only the cotangent's sign counts,
    ``g_in = max(g_out, 0)``, whatever the forward pass did."""
    expected = _mlp_backward(X.astype(np.float64), lambda g, pre: np.maximum(g, 0))
    assert_composite_matches_hand_backward(composites.DeconvNet(), expected)
    guided = _mlp_backward(X.astype(np.float64), lambda g, pre: (pre > 0) * np.maximum(g, 0))
    assert np.abs(expected - guided).max() > 1e-2  # the forward mask matters here
