"""Every baseline composes with jax.jit and jax.vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp import attribution


def net(params, x):
    return jax.nn.relu(x.reshape(x.shape[0], -1) @ params["w1"]) @ params["w2"]


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.normal(size=(4 * 4 * 1, 8)), jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}  # fmt: skip
    x = jnp.asarray(rng.uniform(size=(2, 4, 4, 1)), jnp.float32)
    return params, x


OPTIONS = {
    "random": {"key": jax.random.key(0)},
    "gradient": {},
    "saliency": {},
    "gradient_x_input": {},
    "smoothgrad": {"samples": 3, "key": jax.random.key(1)},
    "integrated_gradients": {"steps": 4},
    "guided_backprop": {},
    "deconvnet": {},
    "occlusion": {"patch": 2},
    "lrp": {},
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_jit_and_eager_agree(setup, name):
    params, x = setup
    fn = attribution.method(name, **OPTIONS[name])
    eager = fn(net, params, x, target=1)
    jitted = jax.jit(lambda p, x: fn(net, p, x, target=jnp.array([1, 1])))(params, x)
    assert eager.shape == x.shape
    np.testing.assert_allclose(eager, jitted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_vmap_over_examples_agrees_with_the_batch(setup, name):
    params, x = setup
    fn = attribution.method(name, **OPTIONS[name])
    if name in ("random", "smoothgrad"):
        pytest.skip("the noise is drawn for the whole array: batch and vmap differ by design")

    def one(xi):
        return fn(net, params, xi[None], target=2)[0]

    np.testing.assert_allclose(jax.vmap(one)(x), fn(net, params, x, target=2),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
