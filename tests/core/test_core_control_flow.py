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


# --- one plan for the whole program: bodies are analysed in the context around them ---------


def _rnn(scanned: bool):
    """``h_t = relu(h_{t-1} U + x_t W)`` from ``h_0 = 0``, then ``y = h_T V``: with ``lax.scan``
    or unrolled in Python (the same function)."""
    w, u, v = _weights(11, (3, 5), (5, 5), (5, 2))

    def f(x):  # x: (batch, time, 3)
        h = jnp.zeros((x.shape[0], 5))
        if scanned:
            def step(h, x_t):
                return jax.nn.relu(h @ u + x_t @ w), None

            h, _ = jax.lax.scan(step, h, jnp.swapaxes(x, 0, 1))
        else:
            for t in range(x.shape[1]):
                h = jax.nn.relu(h @ u + x[:, t] @ w)
        return h @ v

    return f


def test_layers_inside_a_scan_are_listed_numbered_and_placed_among_all_layers():
    """The input projection sees the raw input in every step (first); the recurrent one is fed
    by a layer from the second step on (not first); neither is last (the head follows); the
    head after the loop is last and, with layers upstream in the loop, not first."""
    x = jnp.ones((2, 4, 3))
    found = jaxlrp.layers(_rnn(True), x)
    assert [(i.index, i.num_layers) for i in found] == [(0, 3), (1, 3), (2, 3)]
    recurrent, projection, head = found  # program order inside the body: h @ U, then x_t @ W
    assert recurrent.input_shape == (2, 5) and projection.input_shape == (2, 3)
    assert (projection.is_first, projection.is_last) == (True, False)
    assert (recurrent.is_first, recurrent.is_last) == (False, False)
    assert (head.is_first, head.is_last) == (False, True)
    assert projection.loop == recurrent.loop == "scan(length=4)" and head.loop == ""
    table = jaxlrp.rule_table(_rnn(True), x)
    assert table.count("[in scan(length=4)]") == 2
    nodes = jaxlrp.rule_table(_rnn(True), x, nodes=True)
    assert "layer/dense #0" in nodes and "layer/dense #1" in nodes  # body equations are listed


def test_a_scanned_rnn_is_explained_like_the_same_rnn_unrolled():
    """Positions, taps (the Flat rule's input-independent relevance on the first layer) and the
    per-kind rules reach the body, so the scan is explained exactly like the unrolled loop."""
    x = jax.random.normal(jax.random.PRNGKey(12), (2, 4, 3))
    target = 1
    for composite in (composites.EpsilonPlusFlat(), composites.EpsilonGammaBox(-3.0, 3.0),
                      composites.Composite(rules.Epsilon(0.1), first=rules.WSquare())):
        scanned = jaxlrp.explain(_rnn(True), x, target=target, composite=composite)
        unrolled = jaxlrp.explain(_rnn(False), x, target=target, composite=composite)
        assert float(jnp.abs(unrolled).sum()) > 1e-3
        np.testing.assert_allclose(scanned, unrolled, rtol=1e-5, atol=1e-6)


def test_non_negativity_reaches_the_body():
    """A ReLU before the loop makes the body layer's input non-negative (rules skip a⁻ terms)."""
    (w,) = _weights(13, (4, 4))
    seen = []

    class Recording(rules.Epsilon):
        def __call__(self, ctx, relevance):
            seen.append(ctx.input_nonneg)
            return super().__call__(ctx, relevance)

    def f(x):
        def step(h, _):
            return h @ w, None

        h, _ = jax.lax.scan(step, jax.nn.relu(x), None, length=2)
        return h

    jaxlrp.explain(f, jnp.ones((1, 4)), target=0, composite=composites.Composite(Recording()))
    assert seen == [False]  # the carry h @ w can be negative from the second step on

    def g(x):
        def step(h, _):
            return jax.nn.relu(h @ w), None

        h, _ = jax.lax.scan(step, jax.nn.relu(x), None, length=2)
        return h

    seen.clear()
    jaxlrp.explain(g, jnp.ones((1, 4)), target=0, composite=composites.Composite(Recording()))
    assert seen == [True]


def test_flax_scan_over_blocks_names_each_body_layer_by_its_parameter_path():
    from flax import linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, h, _):
            return nn.relu(nn.Dense(6, name="mlp")(h)), None

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            blocks = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                             length=3)  # fmt: skip
            h, _ = blocks(name="blocks")(nn.Dense(6, name="embed")(x), None)
            return nn.Dense(2, name="head")(h)

    x = jnp.ones((2, 4))
    net = Net()
    variables = net.init(jax.random.PRNGKey(0), x)
    found = jaxlrp.layers(net.apply, variables, x, argnums=1)
    assert [i.path for i in found] == ["embed", "blocks/mlp", "head"]
    assert [i.loop for i in found] == ["", "scan(length=3)", ""]
    assert [i.is_first for i in found] == [True, False, False]
    # a per-path rule reaches the body: a large epsilon on the blocks absorbs relevance
    plain = composites.Composite(rules.Epsilon(1e-9))
    absorbing = composites.Composite(rules.Epsilon(1e-9), paths={"blocks/*": rules.Epsilon(10.0)})
    r_plain = jaxlrp.explain(net.apply, variables, x, target=0, composite=plain)
    r_abs = jaxlrp.explain(net.apply, variables, x, target=0, composite=absorbing)
    assert float(jnp.abs(r_abs).sum()) < 0.5 * float(jnp.abs(r_plain).sum())
