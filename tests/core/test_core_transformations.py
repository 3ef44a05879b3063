"""explain composes with jit and vmap; linen and nnx versions of one network agree."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nets import SmallCNN, images, init

import jaxlrp
from jaxlrp import composites

EGB = composites.EpsilonGammaBox(low=-1.0, high=1.0)


def test_jit_eager_vmap_and_batch_agree():
    model = SmallCNN()
    x = images((4, 12, 12, 3))
    variables = init(model, x)
    targets = jnp.array([0, 3, 1, 4])

    def explain(variables, x, t):
        return jaxlrp.explain(model.apply, variables, x, target=t, composite=EGB)

    batched = explain(variables, x, targets)
    jitted = jax.jit(explain)(variables, x, targets)
    single = jnp.stack([explain(variables, x[i : i + 1], targets[i])[0] for i in range(4)])
    vmapped = jax.vmap(lambda xi, ti: explain(variables, xi[None], ti)[0])(x, targets)

    np.testing.assert_allclose(jitted, batched, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(single, batched, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(vmapped, batched, rtol=1e-5, atol=1e-7)


def test_vmap_over_target_classes_explains_every_class_at_once():
    model = SmallCNN()
    x = images((1, 12, 12, 3))
    variables = init(model, x)
    every = jax.vmap(lambda t: jaxlrp.explain(model.apply, variables, x, target=t))(jnp.arange(5))
    for t in range(5):
        np.testing.assert_allclose(
            every[t], jaxlrp.explain(model.apply, variables, x, target=t), rtol=1e-5, atol=1e-7
        )


def test_lrp_transformation_starts_from_any_output_relevance():
    model = SmallCNN()
    x = images((2, 12, 12, 3))
    variables = init(model, x)
    out, relevance_fn = jaxlrp.lrp(model.apply, EGB)(variables, x)
    r_out = out * jax.nn.one_hot(jnp.array([2, 2]), 5)
    np.testing.assert_allclose(
        relevance_fn(r_out), jaxlrp.explain(model.apply, variables, x, target=2, composite=EGB),
        rtol=1e-5, atol=1e-7,
    )
    # a float target is the output relevance itself
    np.testing.assert_allclose(
        jaxlrp.explain(model.apply, variables, x, target=r_out, composite=EGB),
        relevance_fn(r_out), rtol=1e-5, atol=1e-7,
    )
    # relevance is linear in the output relevance
    np.testing.assert_allclose(relevance_fn(3 * r_out), 3 * relevance_fn(r_out), rtol=1e-5,
                               atol=1e-6)


def test_relevance_of_several_arguments():
    w = jax.random.normal(jax.random.PRNGKey(0), (6, 3))

    def f(x, y):
        return jax.nn.relu(x @ w) + jax.nn.relu(y @ w)

    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6))
    y = jax.random.normal(jax.random.PRNGKey(2), (2, 6))
    rx, ry = jaxlrp.explain(f, x, y, target=1, argnums=(0, 1),
                            composite=composites.Composite(jaxlrp.rules.Zero()))
    total = rx.sum(axis=1) + ry.sum(axis=1)
    np.testing.assert_allclose(total, f(x, y)[:, 1], rtol=1e-5)


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3), padding="SAME", name="conv")(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(4, name="head")(x)


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 6, (3, 3), padding="SAME", rngs=rngs)
        self.head = nnx.Linear(8 * 8 * 6, 4, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv(x))
        return self.head(x.reshape(x.shape[0], -1))


def test_linen_and_nnx_versions_of_one_network_agree():
    x = images((2, 8, 8, 3))
    linen = LinenNet()
    variables = init(linen, x)
    net = NnxNet(nnx.Rngs(0))
    net.conv.kernel.value = variables["params"]["conv"]["kernel"]
    net.conv.bias.value = variables["params"]["conv"]["bias"]
    net.head.kernel.value = variables["params"]["head"]["kernel"]
    net.head.bias.value = variables["params"]["head"]["bias"]
    np.testing.assert_allclose(net(x), linen.apply(variables, x), rtol=1e-5, atol=1e-6)

    r_linen = jaxlrp.explain(linen.apply, variables, x, target=1, composite=EGB)
    r_nnx = jaxlrp.explain(net, x, target=1, composite=EGB)
    np.testing.assert_allclose(r_nnx, r_linen, rtol=1e-5, atol=1e-7)

    # layers are named by parameter path for both
    assert [layer.path for layer in jaxlrp.layers(linen.apply, variables, x)] == ["conv", "head"]
    assert [layer.path for layer in jaxlrp.layers(net, x)] == ["conv", "head"]


def test_eager_calls_compiled_with_jit_agree_with_op_by_op(monkeypatch):
    import sys

    module = sys.modules["jaxlrp.explain"]
    model = SmallCNN()
    x = images((2, 12, 12, 3))
    variables = init(model, x)
    monkeypatch.setattr(module, "COMPILE_EAGER_CALLS", False)
    op_by_op = jaxlrp.explain(model.apply, variables, x, target=1, composite=EGB)
    monkeypatch.setattr(module, "COMPILE_EAGER_CALLS", True)
    monkeypatch.setattr(module, "_COMPILED", type(module._COMPILED)())
    compiled = jaxlrp.explain(model.apply, variables, x, target=1, composite=EGB)
    again = jaxlrp.explain(model.apply, variables, x, target=2, composite=EGB)
    again = jaxlrp.explain(model.apply, variables, x, target=1, composite=EGB)
    # `model.apply` is a new bound method at each access: still one compiled function
    (entry,) = module._COMPILED.values()
    assert entry.run._cache_size() == 1
    np.testing.assert_allclose(compiled, op_by_op, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(again, compiled)
    with pytest.raises(ValueError, match="out of range"):  # still validated eagerly
        jaxlrp.explain(model.apply, variables, x, target=9, composite=EGB)


def test_equal_composites_built_anew_in_each_call_compile_once(monkeypatch):
    """The docstrings build the composite inline; equal values must not recompile (issue 13)."""
    import sys

    import jax.numpy as jnp

    module = sys.modules["jaxlrp.explain"]
    model = SmallCNN()
    x = images((2, 12, 12, 3))
    variables = init(model, x)
    monkeypatch.setattr(module, "COMPILE_EAGER_CALLS", True)
    monkeypatch.setattr(module, "_COMPILED", type(module._COMPILED)())
    for _ in range(3):
        jaxlrp.explain(model.apply, variables, x, target=1,
                       composite=composites.EpsilonGammaBox(low=-1.0, high=1.0))
    # per-channel bounds as arrays: equal by content
    for _ in range(2):
        box = composites.EpsilonGammaBox(low=jnp.full((3,), -1.0), high=jnp.full((3,), 1.0))
        jaxlrp.explain(model.apply, variables, x, target=1, composite=box)
    entries = list(module._COMPILED.values())
    assert len(entries) == 2
    assert all(entry.run._cache_size() == 1 for entry in entries)
    # a different value is a different explanation
    jaxlrp.explain(model.apply, variables, x, target=1,
                   composite=composites.EpsilonGammaBox(low=-2.0, high=1.0))
    assert len(module._COMPILED) == 3


def test_compiled_eager_calls_on_an_nnx_module_see_its_current_state(monkeypatch):
    import sys

    module = sys.modules["jaxlrp.explain"]
    monkeypatch.setattr(module, "COMPILE_EAGER_CALLS", True)
    x = images((2, 8, 8, 3))
    net = NnxNet(nnx.Rngs(1))
    first = jaxlrp.explain(net, x, target=1, composite=EGB)
    net.head.kernel[...] = 2 * net.head.kernel[...]  # same graph, new state: no stale cache
    net.head.bias[...] = 2 * net.head.bias[...]
    second = jaxlrp.explain(net, x, target=1, composite=EGB)
    np.testing.assert_allclose(second, 2 * first, rtol=1e-5, atol=1e-7)
    monkeypatch.setattr(module, "COMPILE_EAGER_CALLS", False)
    np.testing.assert_allclose(jaxlrp.explain(net, x, target=1, composite=EGB), second,
                               rtol=1e-5, atol=1e-7)
