"""Similarity measures and the cascading model-randomization check."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
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


@pytest.fixture(scope="module")
def small():
    model = Small()
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 1))
    return model, model.init(jax.random.key(1), x), x


def test_randomize_group_redraws_only_that_group(small):
    model, variables, x = small
    assert evaluate.parameter_groups(variables) == [("params", "out"), ("params", "hidden"),
                                                    ("params", "conv")]  # fmt: skip
    randomized = evaluate.randomize_group(variables, ("params", "out"), jax.random.key(2))
    assert not np.allclose(randomized["params"]["out"]["kernel"],
                           variables["params"]["out"]["kernel"])  # fmt: skip
    for name in ("hidden", "conv"):
        np.testing.assert_array_equal(randomized["params"][name]["kernel"],
                                      variables["params"][name]["kernel"])  # fmt: skip


def test_an_explanation_that_ignores_the_model_stays_identical(small):
    """The similarity of a map with itself is 1 for every measure, at every step."""
    model, variables, x = small
    fixed = attribution.gradient(model.apply, variables, x, target=0)
    result = evaluate.cascading_randomization(lambda v, x: fixed, variables, x,
                                              key=jax.random.key(3))  # fmt: skip
    for measure in (result.spearman, result.spearman_abs, result.ssim):
        np.testing.assert_allclose(measure, np.ones((3, 2)), rtol=1e-6)


def test_cascade_randomizes_top_down_and_keeps_earlier_groups_randomized(small):
    """An explanation that reads only the bottom layer (``conv``) does not change while ``out``
    and ``hidden`` are randomized (steps 0, 1: ρ = 1), and does once ``conv`` is (step 2)."""
    model, variables, x = small

    def conv_only(v, x):
        def score(x):
            h = jax.nn.relu(nn.Conv(4, (3, 3)).apply({"params": v["params"]["conv"]}, x))
            return jnp.sum(h * jnp.linspace(-1.0, 1.0, h.size).reshape(h.shape))

        return jax.grad(score)(x)

    result = evaluate.cascading_randomization(conv_only, variables, x, key=jax.random.key(3))
    assert result.groups == (("params", "out"), ("params", "hidden"), ("params", "conv"))
    np.testing.assert_allclose(result.spearman[:2], 1.0, rtol=1e-6)
    np.testing.assert_allclose(result.ssim[:2], 1.0, rtol=1e-6)
    assert np.all(np.asarray(result.spearman[2]) < 0.9)


def test_randomizing_the_gradient_model_destroys_the_map(small):
    """Thresholds from a run with this key: after all three groups the mean ρ is 0.03 and the
    mean SSIM −0.05 (trained model: 1)."""
    model, variables, x = small

    @jax.jit
    def explain(v, x):
        return attribution.gradient(model.apply, v, x, target=0)

    result = evaluate.cascading_randomization(explain, variables, x, key=jax.random.key(3))
    assert result.spearman.shape == result.spearman_abs.shape == result.ssim.shape == (3, 2)
    assert float(result.spearman[-1].mean()) < 0.3
    assert float(result.ssim[-1].mean()) < 0.3
    # the check itself: independent of any randomization, the trained model's map equals itself
    again = evaluate.spearman(explain(variables, x).sum(-1), explain(variables, x).sum(-1))
    np.testing.assert_allclose(again, 1.0, rtol=1e-6)


def test_plot_curves_and_randomization(tmp_path):
    import matplotlib
    from PIL import Image

    matplotlib.use("Agg")
    ax = evaluate.plot_curves({"a": jnp.ones((2, 5)), "b": jnp.arange(5.0)}, title="t")
    # relative=True: each curve minus its first value, mean over the batch
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.zeros(5))
    np.testing.assert_allclose(ax.lines[1].get_ydata(), np.arange(5.0))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_title() == "t"
    ax.figure.savefig(tmp_path / "curves.png", dpi=100)
    similarities = {"g": jnp.array([[1.0, 0.5], [0.5, 0.0], [0.0, -0.5]])}
    ax = evaluate.plot_randomization(similarities, [("params", "out"), ("params", "hidden"),
                                                    ("params", "conv")])  # fmt: skip
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.75, 0.25, -0.25])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["out", "hidden", "conv"]
    ax.figure.savefig(tmp_path / "rand.png", dpi=100)
    for name in ("curves.png", "rand.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            assert image.size == (600, 400)  # figsize (6, 4) inches at 100 dpi
            colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colors is None or len(colors) > 10  # something was drawn
