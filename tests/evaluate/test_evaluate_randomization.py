"""Similarity measures and the cascading model-randomization check."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxlrp import attribution, evaluate


def test_spearman_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 5, 5))
    b = a + rng.normal(size=(3, 5, 5))
    got = evaluate.spearman(jnp.asarray(a), jnp.asarray(b))
    expected = [stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ssim_is_one_for_equal_maps_and_lower_for_noise():
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.uniform(size=(2, 16, 16)), jnp.float32)
    np.testing.assert_allclose(evaluate.ssim(a, a), 1.0, rtol=1e-5)
    noisy = a + 0.5 * jnp.asarray(rng.normal(size=a.shape), jnp.float32)
    assert np.all(np.asarray(evaluate.ssim(a, noisy)) < 0.9)


class Small(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(8, name="hidden")(x))
        return nn.Dense(3, name="out")(x)


def test_cascading_randomization_top_down():
    model = Small()
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 1))
    variables = model.init(jax.random.key(1), x)
    assert evaluate.parameter_groups(variables) == [("params", "out"), ("params", "hidden"),
                                                    ("params", "conv")]  # fmt: skip
    randomized = evaluate.randomize_group(variables, ("params", "out"), jax.random.key(2))
    assert not np.allclose(randomized["params"]["out"]["kernel"],
                           variables["params"]["out"]["kernel"])  # fmt: skip
    np.testing.assert_array_equal(randomized["params"]["conv"]["kernel"],
                                  variables["params"]["conv"]["kernel"])  # fmt: skip

    @jax.jit
    def explain(v, x):
        return attribution.gradient(model.apply, v, x, target=0)

    result = evaluate.cascading_randomization(explain, variables, x, key=jax.random.key(3))
    assert result.spearman.shape == (3, 2)
    assert result.ssim.shape == (3, 2)
    assert np.all(np.asarray(result.spearman) <= 1.0 + 1e-6)
    # with all layers randomized the gradient map is no longer the trained model's
    assert float(result.spearman[-1].mean()) < 0.99


def test_plot_curves_and_randomization(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    ax = evaluate.plot_curves({"a": jnp.ones((2, 5)), "b": jnp.arange(5.0)}, title="t")
    ax.figure.savefig(tmp_path / "curves.png")
    ax = evaluate.plot_randomization({"g": jnp.ones((3, 2))}, [("params", "x")] * 3)
    ax.figure.savefig(tmp_path / "rand.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
