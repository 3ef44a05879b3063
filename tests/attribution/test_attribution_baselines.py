"""The attribution baselines agree with independent NumPy / jax.grad computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp import attribution


def linear(params, x):
    """A linear classifier on NHWC images: logits = flatten(x) @ W + b."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def relu_net(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    h = jax.nn.relu(h @ params["w2"] + params["b2"])
    return h @ params["w3"] + params["b3"]


@pytest.fixture
def linear_setup():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(4 * 6 * 2, 3)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=3), jnp.float32)}  # fmt: skip
    x = jnp.asarray(rng.uniform(size=(2, 4, 6, 2)), jnp.float32)
    return params, x


@pytest.fixture
def relu_setup():
    rng = np.random.default_rng(1)
    params = {
        "w1": rng.normal(size=(8, 16)), "b1": rng.normal(size=16) * 0.1,
        "w2": rng.normal(size=(16, 12)), "b2": rng.normal(size=12) * 0.1,
        "w3": rng.normal(size=(12, 5)), "b3": rng.normal(size=5) * 0.1,
    }  # fmt: skip
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    x = jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)
    return params, x


def test_gradient_matches_jax_grad(relu_setup):
    params, x = relu_setup
    target = jnp.array([0, 3, 4])
    expected = jnp.stack([jax.grad(lambda xi, t=t: relu_net(params, xi[None])[0, t])(x[i])
                          for i, t in enumerate(target.tolist())])  # fmt: skip
    got = attribution.gradient(relu_net, params, x, target=target)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attribution.saliency(relu_net, params, x, target=target),
                               jnp.abs(expected), rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(attribution.gradient_x_input(relu_net, params, x, target=target),
                               x * expected, rtol=1e-5, atol=1e-6)  # fmt: skip


def test_float_target_weights_the_outputs(relu_setup):
    params, x = relu_setup
    w = jnp.zeros((3, 5)).at[:, 1].set(2.0)
    np.testing.assert_allclose(attribution.gradient(relu_net, params, x, target=w),
                               2 * attribution.gradient(relu_net, params, x, target=1),
                               rtol=1e-5)  # fmt: skip


def test_integrated_gradients_of_linear_model_is_exact(linear_setup):
    params, x = linear_setup
    baseline = 0.3
    w = np.asarray(params["w"])[:, 2].reshape(4, 6, 2)
    for rule in ("riemann_left", "riemann_middle", "riemann_right", "trapezoid"):
        ig = attribution.integrated_gradients(linear, params, x, target=2, baseline=baseline,
                                              steps=5, rule=rule)  # fmt: skip
        np.testing.assert_allclose(ig, (np.asarray(x) - baseline) * w, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_completeness_on_relu_net(relu_setup):
    params, x = relu_setup
    ig = attribution.integrated_gradients(relu_net, params, x, target=2, steps=512,
                                          rule="trapezoid", chunk_size=128)  # fmt: skip
    gap = relu_net(params, x)[:, 2] - relu_net(params, jnp.zeros_like(x))[:, 2]
    np.testing.assert_allclose(ig.sum(-1), gap, rtol=2e-2, atol=2e-2)


def test_smoothgrad_with_zero_noise_is_the_gradient(relu_setup):
    params, x = relu_setup
    sg = attribution.smoothgrad(relu_net, params, x, target=1, noise_level=0.0, samples=4)
    np.testing.assert_allclose(sg, attribution.gradient(relu_net, params, x, target=1),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_smoothgrad_matches_a_loop_over_the_same_noise(relu_setup):
    params, x = relu_setup
    key = jax.random.key(3)
    sg = attribution.smoothgrad(relu_net, params, x, target=1, key=key, noise_level=0.2,
                                samples=6, chunk_size=4)  # fmt: skip
    sigma = 0.2 * (x.max() - x.min())
    noise = sigma * jax.random.normal(key, (6, *x.shape))
    loop = sum(attribution.gradient(relu_net, params, x + e, target=1) for e in noise) / 6
    np.testing.assert_allclose(sg, loop, rtol=1e-4, atol=1e-5)


def test_occlusion_of_linear_model_is_the_patch_contribution(linear_setup):
    params, x = linear_setup
    baseline = 0.1
    occ = attribution.occlusion(linear, params, x, target=1, patch=2, baseline=baseline)
    w = np.asarray(params["w"])[:, 1].reshape(4, 6, 2)
    contribution = (np.asarray(x) - baseline) * w  # (2, 4, 6, 2)
    per_patch = contribution.reshape(2, 2, 2, 3, 2, 2).sum(axis=(2, 4, 5))  # (2, 2, 3)
    expected = np.repeat(np.repeat(per_patch, 2, 1), 2, 2)[..., None].repeat(2, -1)
    np.testing.assert_allclose(occ, expected, rtol=1e-4, atol=1e-5)


def test_overlapping_occlusion_averages_the_windows(linear_setup):
    params, x = linear_setup
    occ = attribution.occlusion(linear, params, x, target=0, patch=(2, 3), stride=1,
                                chunk_size=5)  # fmt: skip
    f0 = np.asarray(linear(params, x))[:, 0]
    total = np.zeros((2, 4, 6))
    count = np.zeros((4, 6))
    for r in range(3):
        for c in range(4):
            xo = np.asarray(x).copy()
            xo[:, r:r + 2, c:c + 3] = 0
            drop = f0 - np.asarray(linear(params, xo))[:, 0]
            total[:, r:r + 2, c:c + 3] += drop[:, None, None]
            count[r:r + 2, c:c + 3] += 1
    np.testing.assert_allclose(occ[..., 0], total / count, rtol=1e-4, atol=1e-5)


def _numpy_guided_backprop(params, x, target, deconv=False):
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    z1 = x @ p["w1"] + p["b1"]
    a1 = np.maximum(z1, 0)
    z2 = a1 @ p["w2"] + p["b2"]
    g = np.zeros((x.shape[0], 5))
    g[:, target] = 1.0
    g = g @ p["w3"].T
    g = np.maximum(g, 0) if deconv else (z2 > 0) * np.maximum(g, 0)
    g = g @ p["w2"].T
    g = np.maximum(g, 0) if deconv else (z1 > 0) * np.maximum(g, 0)
    return g @ p["w1"].T


def test_guided_backprop_matches_numpy(relu_setup):
    params, x = relu_setup
    got = attribution.guided_backprop(relu_net, params, x, target=3)
    np.testing.assert_allclose(got, _numpy_guided_backprop(params, x, 3), rtol=1e-4, atol=1e-5)


def test_deconvnet_matches_numpy(relu_setup):
    params, x = relu_setup
    got = attribution.deconvnet(relu_net, params, x, target=3)
    np.testing.assert_allclose(got, _numpy_guided_backprop(params, x, 3, deconv=True),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_lrp_entry_is_explain(relu_setup):
    import jaxlrp

    params, x = relu_setup
    expected = jaxlrp.explain(relu_net, params, x, target=2)
    np.testing.assert_allclose(attribution.lrp(relu_net, params, x, target=2), expected, rtol=1e-6)


def test_registry_binds_options(relu_setup):
    params, x = relu_setup
    assert set(attribution.available()) >= {"gradient", "smoothgrad", "occlusion", "lrp"}
    sg = attribution.method("smoothgrad", noise_level=0.0, samples=2)
    np.testing.assert_allclose(sg(relu_net, params, x, target=0),
                               attribution.gradient(relu_net, params, x, target=0), rtol=1e-5)
    with pytest.raises(KeyError, match="known"):
        attribution.method("nope")


def test_argnums_must_be_an_int(relu_setup):
    params, x = relu_setup
    with pytest.raises(TypeError, match="argnums"):
        attribution.gradient(relu_net, params, x, target=0, argnums=(0, 1))
