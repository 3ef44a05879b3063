"""Call-like primitives are inlined; scan and cond bodies are re-interpreted with the rules."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import composites, rules

LRP0 = composites.Composite(rules.Zero(), sum=rules.Norm(0.0))


def _weights(seed, *shapes):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return [jax.random.normal(k, s) / np.sqrt(s[0]) for k, s in zip(keys, shapes, strict=True)]


def test_jit_remat_and_custom_jvp_inside_the_model_are_inlined():
    w1, w2 = _weights(0, (6, 8), (8, 3))

    @jax.jit
    def block(x):
        return jax.nn.relu(x @ w1)

    def f(x):
        h = jax.checkpoint(block)(x)
        return h @ w2

    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6))
    r = jaxlrp.explain(f, x, target=1, composite=LRP0)
    grad = jax.vmap(jax.grad(lambda xi: f(xi[None])[0, 1]))(x)
    np.testing.assert_allclose(r, x * grad, rtol=1e-5, atol=1e-7)
    assert [layer.kind for layer in jaxlrp.layers(f, x)] == ["dense", "dense"]


def test_scan_body_layers_get_rules_and_relevance_is_conserved():
    (w,) = _weights(2, (5, 5))

    def f(x):
        def step(h, _):
            return jax.nn.relu(h @ w), None

        h, _ = jax.lax.scan(step, x, None, length=3)
        return h

    x = jax.random.uniform(jax.random.PRNGKey(3), (2, 5))
    t = jnp.argmax(f(x), axis=1)
    assert np.all(f(x)[jnp.arange(2), t] > 0)
    r = jaxlrp.explain(f, x, target=t, composite=LRP0)
    np.testing.assert_allclose(r.sum(axis=1), f(x)[jnp.arange(2), t], rtol=1e-5)
    grad = jax.vmap(jax.grad(lambda xi, ti: f(xi[None])[0, ti]))(x, t)
    np.testing.assert_allclose(r, x * grad, rtol=1e-5, atol=1e-7)
    # a rule inside the body changes the result: epsilon absorbs relevance
    r_eps = jaxlrp.explain(f, x, target=t, composite=composites.Composite(rules.Epsilon(1.0)))
    assert np.all(np.abs(r_eps.sum(axis=1)) < np.abs(r.sum(axis=1)))


def test_cond_branches_are_interpreted():
    w1, w2 = _weights(4, (4, 3), (4, 3))

    def f(x, flag):
        return jax.lax.cond(flag, lambda x: jax.nn.relu(x) @ w1, lambda x: x @ w2, x)

    x = jax.random.normal(jax.random.PRNGKey(5), (2, 4))
    for flag in (True, False):
        r = jaxlrp.explain(f, x, jnp.asarray(flag), target=0, argnums=0, composite=LRP0)
        np.testing.assert_allclose(r.sum(axis=1), f(x, flag)[:, 0], rtol=1e-5)


def test_scan_carry_that_becomes_active_after_the_first_step_carries_relevance():
    """An RNN ``h_t = relu(h_{t-1} U + x_t W)`` from ``h_0 = 0``: the carry depends on the input
    only from the second iteration on, so the body must be re-analysed with the carry active
    (the fixpoint in the interpreter). Bias-free LRP-0 is then gradient × input at every step,
    including the earliest inputs, which reach the output only through the carry."""
    w, u, v = _weights(6, (3, 5), (5, 5), (5, 2))

    def f(x):  # x: (batch, time, 3)
        def step(h, x_t):
            return jax.nn.relu(h @ u + x_t @ w), None

        h0 = jnp.zeros((x.shape[0], 5))
        h, _ = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
        return h @ v

    x = jax.random.normal(jax.random.PRNGKey(8), (2, 4, 3))
    t = jnp.argmax(f(x), axis=1)
    assert np.all(f(x)[jnp.arange(2), t] > 0.05)
    r = jaxlrp.explain(f, x, target=t, composite=LRP0)
    grad = jax.vmap(jax.grad(lambda xi, ti: f(xi[None])[0, ti]))(x, t)
    assert np.all(np.abs(x * grad)[:, 0].sum(-1) > 1e-2)  # the first input matters
    np.testing.assert_allclose(r, x * grad, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.sum(axis=(1, 2)), f(x)[jnp.arange(2), t], rtol=1e-4)
