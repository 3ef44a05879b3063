"""Region perturbation: a perfect attribution beats random, monotone curves, jit == eager."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp import attribution, evaluate


def positive_linear(params, x):
    """A linear model with non-negative weights on (N, 8, 8, 1) inputs, two classes."""
    return x.reshape(x.shape[0], -1) @ params["w"]


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    w = np.abs(rng.normal(size=(64, 2))) * (rng.uniform(size=(64, 2)) < 0.3)
    params = {"w": jnp.asarray(w, jnp.float32)}
    x = jnp.asarray(rng.uniform(0.5, 1.0, size=(6, 8, 8, 1)), jnp.float32)
    perfect = attribution.gradient_x_input(positive_linear, params, x, target=0)
    return params, x, perfect


def test_perfect_attribution_beats_random(toy):
    params, x, perfect = toy
    options = {"patch": 2, "perturbation": evaluate.Constant(0.0), "key": jax.random.key(0)}
    good = evaluate.region_perturbation(positive_linear, params, x, relevance=perfect, target=0,
                                        **options)  # fmt: skip
    rand = attribution.random(positive_linear, params, x, key=jax.random.key(1))
    bad = evaluate.region_perturbation(positive_linear, params, x, relevance=rand, target=0,
                                       **options)  # fmt: skip
    assert float(good.aopc_morf.mean()) > float(bad.aopc_morf.mean()) + 0.1
    assert float(good.area.mean()) > float(bad.area.mean()) + 0.1
    assert float(good.area.min()) > 0


def test_curves_are_monotone_for_an_additive_model(toy):
    params, x, perfect = toy
    curves = evaluate.region_perturbation(positive_linear, params, x, relevance=perfect, target=0,
                                          patch=2, perturbation=evaluate.Constant(0.0))  # fmt: skip
    # every region's contribution is ≥ 0, so removing regions only lowers the score; MoRF drops
    # fastest, LeRF slowest, and both end at the fully perturbed score (0).
    assert curves.morf.shape == (6, 17)
    assert np.all(np.diff(np.asarray(curves.morf), axis=-1) <= 1e-5)
    assert np.all(np.diff(np.asarray(curves.lerf), axis=-1) <= 1e-5)
    # the MoRF decrements are sorted (largest first): the curve is convex
    assert np.all(np.diff(np.asarray(curves.morf), n=2, axis=-1) >= -1e-5)
    assert np.all(np.asarray(curves.morf) <= np.asarray(curves.lerf) + 1e-5)
    np.testing.assert_allclose(curves.morf[:, -1], 0.0, atol=1e-5)
    np.testing.assert_allclose(curves.morf[:, 0], positive_linear(params, x)[:, 0], rtol=1e-6)


def test_aopc_and_area_definitions():
    morf = jnp.array([[4.0, 2.0, 1.0, 1.0]])
    lerf = jnp.array([[4.0, 4.0, 3.0, 1.0]])
    np.testing.assert_allclose(evaluate.aopc(morf), [(0 + 2 + 3 + 3) / 4])
    np.testing.assert_allclose(evaluate.area_between(morf, lerf), [(0 + 2 + 2 + 0) / 4])
    np.testing.assert_allclose(evaluate.area_between(morf, lerf),
                               evaluate.aopc(morf) - evaluate.aopc(lerf))  # fmt: skip


def test_steps_subsample_the_regions(toy):
    params, x, perfect = toy
    full = evaluate.perturbation_curve(positive_linear, params, x, relevance=perfect, target=0,
                                       patch=2, perturbation=evaluate.Constant(0.0))  # fmt: skip
    four = evaluate.perturbation_curve(positive_linear, params, x, relevance=perfect, target=0,
                                       patch=2, steps=4,
                                       perturbation=evaluate.Constant(0.0))  # fmt: skip
    np.testing.assert_allclose(four, full[:, ::4], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="steps"):
        evaluate.perturbation_curve(positive_linear, params, x, relevance=perfect, target=0,
                                    patch=2, steps=17)  # fmt: skip


@pytest.mark.parametrize("perturbation", [evaluate.UniformNoise(0.0, 1.0), evaluate.Constant(0.5),
                                          evaluate.Blur(1.0)])  # fmt: skip
def test_jitted_and_eager_agree(toy, perturbation):
    params, x, perfect = toy
    key = jax.random.key(2)

    def run(params, x, r, k):
        return evaluate.region_perturbation(positive_linear, params, x, relevance=r, target=1,
                                            patch=(2, 4), steps=5, key=k,
                                            perturbation=perturbation, chunk_size=2)  # fmt: skip

    eager = run(params, x, perfect, key)
    jitted = jax.jit(run)(params, x, perfect, key)
    np.testing.assert_allclose(eager.morf, jitted.morf, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eager.lerf, jitted.lerf, rtol=1e-5, atol=1e-5)
    assert eager.morf.shape == (6, 6)


def test_blur_of_a_constant_image_is_the_image():
    x = jnp.full((2, 9, 7, 3), 0.25)
    np.testing.assert_allclose(evaluate.Blur(2.0)(x, None, (1, 2)), x, rtol=1e-6)


def test_region_scores_sum_patches_and_channels():
    r = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    s = evaluate.region_scores(r, (2, 2), (1, 2), batch_ndim=1)
    expected = np.asarray(r).reshape(2, 2, 2, 2, 2, 3).sum(axis=(2, 4, 5))
    np.testing.assert_allclose(s, expected)


def test_ties_are_broken_at_random_with_a_key(toy):
    params, x, _ = toy
    flat = jnp.zeros_like(x)
    a = evaluate.perturbation_curve(positive_linear, params, x, relevance=flat, target=0,
                                    patch=2, perturbation=evaluate.Constant(0.0))  # fmt: skip
    b = evaluate.perturbation_curve(positive_linear, params, x, relevance=flat, target=0, patch=2,
                                    perturbation=evaluate.Constant(0.0), key=jax.random.key(5))
    assert not np.allclose(a, b)


def test_aopc_of_lerf_and_morf_curves_match_hand_computation():
    """A linear model ``f(x) = Σ w ⊙ x`` on 2x2 inputs, one pixel per region, regions set to 0.
    Example 0 (x = 1, w = [[1, 2], [3, 4]], relevance [[.4, .1], [.3, .2]]): LeRF removes the
    weights 2, 4, 3, 1 → curve [10, 8, 4, 1, 0], AOPC = (0 + 2 + 6 + 9 + 10) / 5 = 5.4; MoRF
    removes 1, 3, 4, 2 → [10, 9, 6, 2, 0], AOPC = (0 + 1 + 4 + 8 + 10) / 5 = 4.6. Example 1
    (x = 2, relevance [[.1, .2], [.3, .4]]): LeRF [20, 18, 14, 8, 0] → 40 / 5 = 8; MoRF
    [20, 12, 6, 2, 0] → 60 / 5 = 12."""

    def linear(w, x):
        return (x * w).reshape(x.shape[0], -1).sum(-1, keepdims=True)

    w = jnp.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
    x = jnp.concatenate([jnp.ones((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 2.0)])
    relevance = jnp.array([[[0.4, 0.1], [0.3, 0.2]], [[0.1, 0.2], [0.3, 0.4]]])[..., None]
    curves = evaluate.region_perturbation(linear, w, x, relevance=relevance, target=0, patch=1,
                                          perturbation=evaluate.Constant(0.0))  # fmt: skip
    np.testing.assert_allclose(curves.lerf, [[10, 8, 4, 1, 0], [20, 18, 14, 8, 0]])
    np.testing.assert_allclose(curves.morf, [[10, 9, 6, 2, 0], [20, 12, 6, 2, 0]])
    np.testing.assert_allclose(curves.aopc_lerf, [5.4, 8.0], rtol=1e-6)
    np.testing.assert_allclose(curves.aopc_morf, [4.6, 12.0], rtol=1e-6)
    np.testing.assert_allclose(curves.area, [4.6 - 5.4, 12.0 - 8.0], rtol=1e-5)
