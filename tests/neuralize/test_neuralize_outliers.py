"""Kernel outlier scores neuralized: soft-min over squared distances, relevance per feature.

Kauffmann, Müller, Montavon, "Towards explaining anomalies: a deep Taylor decomposition of
one-class models", Pattern Recognition 2020. Float64 checks run inside
``jax.enable_x64(True)``; tolerances are small multiples of the measured float error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.neuralize import OutlierModel, explain_outlier

N_FEATURES = 10
DISPLACED = [7, 8]  # the outliers are inliers moved along these features only
RNG = np.random.default_rng(0)
SUPPORT = RNG.normal(size=(300, N_FEATURES))  # the "training" inliers, N(0, I)
INLIERS = RNG.normal(size=(100, N_FEATURES))  # fresh inliers
OUTLIERS = INLIERS.copy()
OUTLIERS[:, DISPLACED] += 8.0
WEIGHTS = RNG.uniform(0.1, 1.0, size=len(SUPPORT))


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def numpy_outlier_relevance(support, x, beta, weights):
    """Reference in float64 NumPy, one point and one support point at a time."""
    alpha = np.asarray(weights, np.float64) / np.sum(weights)
    out = np.zeros_like(x, dtype=np.float64)
    scores = np.zeros(len(x))
    for n, point in enumerate(x):
        d = np.array([np.sum((point - u) ** 2) for u in support])
        shift = d.min()  # Σ α exp(-β d) = exp(-β shift) Σ α exp(-β (d - shift))
        e = alpha * np.exp(-beta * (d - shift))
        scores[n] = shift - np.log(e.sum()) / beta
        for j, u in enumerate(support):
            out[n] += (point - u) ** 2 / d[j] * (e[j] / e.sum() * scores[n])
    return out, scores


def test_score_is_a_soft_min_of_the_squared_distances(x64):
    model = OutlierModel(SUPPORT, beta=0.5, weights=WEIGHTS)
    d = ((OUTLIERS[:, None] - SUPPORT[None]) ** 2).sum(-1)
    alpha = WEIGHTS / WEIGHTS.sum()
    score = np.asarray(model.score(OUTLIERS))
    d_min = d.min(-1)
    expected = d_min - np.log((alpha * np.exp(-0.5 * (d - d_min[:, None]))).sum(-1)) / 0.5
    np.testing.assert_allclose(score, expected, rtol=1e-12)
    np.testing.assert_allclose(model.sq_distances(OUTLIERS), d, rtol=1e-12)
    # between the hard min and the α-weighted mean of the distances
    assert np.all(score >= d_min - 1e-9) and np.all(score <= d @ alpha + 1e-9)
    assert np.all(model.score(OUTLIERS) > model.score(INLIERS))


def test_from_kde_is_the_negative_log_density_of_sklearns_kernel_density(x64):
    neighbors = pytest.importorskip("sklearn.neighbors")
    bandwidth = 1.3
    log_p = neighbors.KernelDensity(bandwidth=bandwidth).fit(SUPPORT).score_samples(OUTLIERS)
    model = OutlierModel.from_kde(SUPPORT, bandwidth)
    beta = 0.5 / bandwidth**2
    expected = -(log_p + N_FEATURES / 2 * np.log(2 * np.pi * bandwidth**2)) / beta
    # sklearn sums the kernels over a tree; measured relative difference 5e-10
    np.testing.assert_allclose(model.score(OUTLIERS), expected, rtol=1e-8)


def test_from_one_class_svm_is_the_negative_log_of_its_kernel_sum(x64):
    svm_module = pytest.importorskip("sklearn.svm")
    svm = svm_module.OneClassSVM(gamma=0.05, nu=0.2).fit(SUPPORT)
    model = OutlierModel.from_one_class_svm(svm)
    assert model.n_support == len(svm.support_vectors_)
    x = np.concatenate([INLIERS, OUTLIERS])
    expected = -np.log(svm.score_samples(x) / svm.dual_coef_.sum()) / 0.05
    np.testing.assert_allclose(model.score(x), expected, rtol=1e-8)
    # larger outlier score <=> smaller SVM decision value
    order = np.argsort(np.asarray(model.score(x)))
    assert np.all(np.diff(svm.decision_function(x)[order]) <= 1e-12)


def test_relevance_sums_to_the_outlier_score_and_is_non_negative(x64):
    model = OutlierModel(SUPPORT, beta=0.5, weights=WEIGHTS)
    for x in (INLIERS, OUTLIERS):
        relevance = np.asarray(explain_outlier(model, x))
        score = np.asarray(model.score(x))
        # measured max |Σ R - o| / o: 1.0e-15 = 4.7 ε (inliers), 6.9e-15 = 31 ε (outliers)
        np.testing.assert_allclose(relevance.sum(-1), score, rtol=256 * np.finfo(float).eps)
        assert np.all(relevance >= 0)


def test_relevance_matches_the_numpy_reference(x64):
    model = OutlierModel(SUPPORT, beta=0.5, weights=WEIGHTS)
    x = np.concatenate([INLIERS[:20], OUTLIERS[:20]])
    expected, scores = numpy_outlier_relevance(SUPPORT, x, 0.5, WEIGHTS)
    np.testing.assert_allclose(model.score(x), scores, rtol=1e-12)
    # required <= 1e-6; measured max |difference| / max R = 7e-15
    np.testing.assert_allclose(
        explain_outlier(model, x), expected, rtol=0, atol=1e-6 * np.abs(expected).max()
    )


def test_relevance_falls_on_the_features_an_outlier_is_displaced_in():
    model = OutlierModel.from_kde(SUPPORT, bandwidth=1.0)
    relevance = np.asarray(explain_outlier(model, OUTLIERS))
    share = relevance[:, DISPLACED].sum() / relevance.sum()
    # measured 0.878: the other 8 features keep the relevance an inlier has (its own
    # distance to the data), the displacement adds 2 x 8² on features 7, 8
    assert share >= 0.85, share
    top_two = np.sort(np.argsort(-relevance, axis=-1)[:, :2], axis=-1)
    assert np.mean(np.all(top_two == DISPLACED, axis=-1)) >= 0.95  # measured 1.0
    inlier = np.asarray(explain_outlier(model, INLIERS))
    assert inlier[:, DISPLACED].sum() / inlier.sum() < 0.3  # measured 0.185, about 2/10


def test_jit_and_vmap_give_the_same_relevance_as_eager():
    model = OutlierModel.from_kde(SUPPORT, bandwidth=1.0)
    x = jnp.asarray(OUTLIERS[:10], jnp.float32)
    eager = explain_outlier(model, x)
    np.testing.assert_allclose(jax.jit(explain_outlier)(model, x), eager, rtol=1e-5)
    mapped = jax.vmap(explain_outlier, in_axes=(None, 0))(model, x)
    np.testing.assert_allclose(mapped, eager, rtol=1e-5)
    np.testing.assert_allclose(eager.sum(-1), model.score(x), rtol=1e-5)  # measured 2.4e-6
    batch = jax.ShapeDtypeStruct((2, 5, N_FEATURES), jnp.float32)  # leading axes are kept
    assert jax.eval_shape(explain_outlier, model, batch).shape == (2, 5, N_FEATURES)
    assert jax.eval_shape(model.score, batch).shape == (2, 5)


def test_a_point_on_a_support_point_gets_finite_relevance():
    model = OutlierModel(SUPPORT[:5], beta=0.5)
    relevance = np.asarray(explain_outlier(model, SUPPORT[0]))
    assert np.all(np.isfinite(relevance)) and np.all(relevance >= 0)
    # u_0 itself passes nothing on (d_0 = 0); the other support points conserve their share
    assert relevance.sum() <= float(model.score(SUPPORT[0])) + 1e-6


def test_bad_inputs_raise_value_errors_naming_the_problem_and_the_fix():
    model = OutlierModel(SUPPORT)
    with pytest.raises(ValueError, match=r"x has 3 features.*has 10 features.*\(\.\.\., 10\)"):
        explain_outlier(model, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x has a scalar"):
        model.score(np.float32(1.0))
    with pytest.raises(ValueError, match=r"shape \(n, features\), got shape \(10,\)"):
        OutlierModel(np.zeros(N_FEATURES))
    with pytest.raises(ValueError, match=r"at least one support point"):
        OutlierModel(np.zeros((0, N_FEATURES)))
    with pytest.raises(ValueError, match=r"beta must be a positive finite number"):
        OutlierModel(SUPPORT, beta=-1.0)
    with pytest.raises(ValueError, match=r"bandwidth must be a positive"):
        OutlierModel.from_kde(SUPPORT, bandwidth=0.0)
    with pytest.raises(ValueError, match=r"weights must have shape \(300,\)"):
        OutlierModel(SUPPORT, weights=np.ones(3))
    with pytest.raises(ValueError, match=r"non-negative and not all zero"):
        OutlierModel(SUPPORT, weights=-WEIGHTS)

    class LinearSVM:
        kernel = "linear"

    with pytest.raises(ValueError, match=r"kernel='linear'.*refit it with kernel='rbf'"):
        OutlierModel.from_one_class_svm(LinearSVM())

    class UnfittedSVM:
        kernel, gamma = "rbf", "scale"

    with pytest.raises(ValueError, match=r"no support_vectors_, dual_coef_: fit it"):
        OutlierModel.from_one_class_svm(UnfittedSVM())
