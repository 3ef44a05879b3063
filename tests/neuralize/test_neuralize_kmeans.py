"""k-means neuralized (NEON): evidence, soft-min + midpoint relevance, fitting, transformations.

Kauffmann et al., "From clustering to cluster explanations via neural networks", IEEE TNNLS
2022. Float64 checks run inside ``jax.enable_x64(True)``; tolerances are small multiples of the
float error measured on these data (noted next to each).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.neuralize import KMeansNetwork, beta_heuristic, explain_cluster, kmeans

N_FEATURES = 10
EPS64 = np.finfo(np.float64).eps
SEPARATING = [0, 1, 2]  # the only features in which the cluster means differ


def blobs(n_per_cluster: int = 200, separation: float = 4.0, seed: int = 0):
    """Three Gaussian clusters (unit variance) in 10 features whose means differ only in
    features 0, 1, 2 (cluster c is shifted by ``separation`` along feature c)."""
    rng = np.random.default_rng(seed)
    means = np.zeros((3, N_FEATURES))
    means[[0, 1, 2], SEPARATING] = separation
    labels = np.repeat(np.arange(3), n_per_cluster)
    return means[labels] + rng.normal(size=(labels.size, N_FEATURES)), labels, means


X, LABELS, MEANS = blobs(100)  # 300 points; every test uses (a slice of) these


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def sklearn_kmeans():
    cluster = pytest.importorskip("sklearn.cluster")
    return cluster.KMeans(3, n_init=4, random_state=0).fit(X)


@pytest.fixture(scope="module")
def jax_centroids():
    return kmeans(jnp.asarray(X, jnp.float32), 3, jax.random.key(0))


def numpy_neon(centroids, x, beta, cluster=None):
    """Reference NEON for k-means in float64 NumPy, one point and one competitor at a time,
    from the paper's formulas in their expanded form (``h_k = w_k·x + b_k``)."""
    mu = np.asarray(centroids, np.float64)
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for n, point in enumerate(x):
        distances = [np.sum((point - m) ** 2) for m in mu]
        c = int(np.argmin(distances)) if cluster is None else cluster
        others = [k for k in range(len(mu)) if k != c]
        w = {k: 2.0 * (mu[c] - mu[k]) for k in others}
        b = {k: mu[k] @ mu[k] - mu[c] @ mu[c] for k in others}
        h = {k: w[k] @ point + b[k] for k in others}
        evidence = min(h.values())
        shift = min(h.values())  # exp(-β(h - shift)) keeps the soft-min finite
        e = {k: np.exp(-beta * (h[k] - shift)) for k in others}
        total = sum(e.values())
        for k in others:
            midpoint = 0.5 * (mu[c] + mu[k])
            relevance_k = e[k] / total * evidence
            out[n] += (point - midpoint) * w[k] / h[k] * relevance_k
    return out


# --- the network ------------------------------------------------------------------------------


def test_evidence_is_the_margin_over_the_nearest_competitor(x64):
    x = X[:60]
    centroids = np.random.default_rng(1).normal(size=(4, N_FEATURES))
    d = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)  # (N, K)
    expected = np.stack(
        [np.min(np.delete(d, c, axis=1), axis=1) - d[:, c] for c in range(4)], axis=-1
    )
    network = KMeansNetwork(centroids)
    np.testing.assert_allclose(network.evidence(x), expected, rtol=0, atol=1e-11)
    np.testing.assert_array_equal(network.assign(x), np.argmin(d, axis=1))
    evidence = np.asarray(network.evidence(x))
    assigned = evidence[np.arange(len(x)), np.argmin(d, axis=1)]
    assert np.all(assigned >= 0) and np.all(np.sort(evidence, axis=1)[:, -2] <= 0)


def test_network_takes_a_fitted_sklearn_kmeans_and_agrees_with_its_predictions(sklearn_kmeans):
    network = KMeansNetwork(sklearn_kmeans)  # reads cluster_centers_; float32 without x64
    np.testing.assert_allclose(network.centroids, sklearn_kmeans.cluster_centers_, rtol=1e-6)
    np.testing.assert_array_equal(network.assign(X), sklearn_kmeans.predict(X))
    relevance = explain_cluster(network, X)
    assert relevance.shape == X.shape and relevance.dtype == jnp.float32


# --- conservation and the reference -------------------------------------------------------------


def test_relevance_sums_to_the_cluster_evidence(x64, sklearn_kmeans):
    x = X
    network = KMeansNetwork(sklearn_kmeans.cluster_centers_)  # float64
    network = dataclasses.replace(network, beta=beta_heuristic(network, x))
    evidence = np.asarray(network.evidence(x))
    # The assigned cluster: measured max |Σ R - f_c| = 1.4e-14 = 1.1 ε max f_c (f_c <= 56).
    total = np.asarray(explain_cluster(network, x)).sum(-1)
    np.testing.assert_allclose(total, evidence.max(-1), rtol=0, atol=16 * EPS64 * evidence.max())
    # Any other cluster (negative evidence): h_k near 0 makes R_i large with cancelling signs,
    # so the error is relative to Σ|R_i| (measured 7.4e-16 = 3.3 ε).
    for c in range(3):
        relevance = np.asarray(explain_cluster(network, x, cluster=c))
        error = np.abs(relevance.sum(-1) - evidence[:, c]) / np.abs(relevance).sum(-1)
        assert error.max() < 16 * EPS64, (c, error.max())


def test_relevance_sums_to_the_evidence_in_float32(jax_centroids):
    x = jnp.asarray(X, jnp.float32)
    network = KMeansNetwork(jax_centroids, beta=0.05)
    total = explain_cluster(network, x).sum(-1)
    evidence = network.evidence(x).max(-1)
    # measured max |Σ R - f_c| = 1.1e-5 = 2e-7 max f_c (1.7 ε₃₂ max f_c)
    np.testing.assert_allclose(total, evidence, rtol=0, atol=1e-6 * float(evidence.max()))


@pytest.mark.parametrize("beta", [1e-3, 0.05, 1.0])
def test_relevance_matches_the_numpy_reference(x64, beta):
    x = X[:60]
    centroids = np.random.default_rng(2).normal(size=(4, N_FEATURES)) * 3
    network = KMeansNetwork(centroids, beta=beta)
    scale = np.abs(numpy_neon(centroids, x, beta)).max()
    # required <= 1e-6; measured max |difference| / max |R| <= 3.2e-16 (assigned),
    # <= 2.3e-14 (cluster 2, where some h_k are near 0)
    np.testing.assert_allclose(
        explain_cluster(network, x), numpy_neon(centroids, x, beta), rtol=0, atol=1e-6 * scale
    )
    np.testing.assert_allclose(
        explain_cluster(network, x, cluster=2),
        numpy_neon(centroids, x, beta, cluster=2),
        rtol=0,
        atol=1e-6 * np.abs(numpy_neon(centroids, x, beta, cluster=2)).max(),
    )


def test_large_beta_gives_all_relevance_to_the_nearest_competitor(x64):
    x = X[:60]
    centroids = np.random.default_rng(3).normal(size=(4, N_FEATURES)) * 3
    network = KMeansNetwork(centroids, beta=1e4)
    c = np.asarray(network.assign(x))
    d = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    d[np.arange(len(x)), c] = np.inf
    nearest = np.argmin(d, axis=1)
    w = 2.0 * (centroids[c] - centroids[nearest])
    midpoint = 0.5 * (centroids[c] + centroids[nearest])
    expected = w * (x - midpoint)  # one linear unit, decomposed exactly
    np.testing.assert_allclose(explain_cluster(network, x), expected, rtol=1e-8, atol=1e-9)


# --- relevance falls on the features that separate the clusters --------------------------------


@pytest.mark.parametrize("fit", ["sklearn", "jax"])
def test_relevance_falls_on_the_features_that_separate_the_clusters(fit, request):
    x, labels, means = X, LABELS, MEANS
    if fit == "sklearn":
        centroids = request.getfixturevalue("sklearn_kmeans").cluster_centers_
    else:
        centroids = request.getfixturevalue("jax_centroids")
    network = KMeansNetwork(centroids)
    network = dataclasses.replace(network, beta=beta_heuristic(network, x))
    # the fit recovers the true means (in some order)
    order = np.argmin(((means[:, None] - np.asarray(centroids)[None]) ** 2).sum(-1), axis=1)
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(np.asarray(centroids)[order], means, atol=0.4)  # measured 0.257
    assert np.mean(np.asarray(network.assign(x)) == order[labels]) > 0.97

    magnitude = np.abs(np.asarray(explain_cluster(network, x)))
    share = magnitude[:, SEPARATING].sum() / magnitude.sum()
    assert share >= 0.95, share  # measured 0.962 (both fits); 3/10 if spread evenly
    # and for every single point the most relevant feature is a separating one
    assert np.isin(np.argmax(magnitude, axis=1), SEPARATING).all()


# --- fitting ------------------------------------------------------------------------------------


def test_jax_kmeans_reaches_the_inertia_of_sklearn(sklearn_kmeans, jax_centroids):
    centroids = np.asarray(jax_centroids, np.float64)
    inertia = ((X[:, None] - centroids[None]) ** 2).sum(-1).min(-1).sum()
    assert inertia <= sklearn_kmeans.inertia_ * (1 + 1e-5), (inertia, sklearn_kmeans.inertia_)


def test_jax_kmeans_runs_inside_jit_and_vmap_over_keys(jax_centroids):
    keys = jax.random.split(jax.random.key(0), 3)
    fit = jax.jit(jax.vmap(lambda key: kmeans(jnp.asarray(X, jnp.float32), 3, key)))
    fits = fit(keys)
    assert fits.shape == (3, 3, N_FEATURES)
    eager = kmeans(jnp.asarray(X, jnp.float32), 3, keys[1])
    np.testing.assert_allclose(fits[1], eager, rtol=1e-5, atol=1e-5)


# --- transformations -----------------------------------------------------------------------------


def test_jit_and_vmap_give_the_same_relevance_as_eager(jax_centroids):
    x = jnp.asarray(X[::15], jnp.float32)  # 20 points from all clusters
    network = KMeansNetwork(jax_centroids, beta=0.05)
    eager = explain_cluster(network, x)
    jitted = jax.jit(explain_cluster)(network, x)  # the network is a pytree argument
    mapped = jax.vmap(explain_cluster, in_axes=(None, 0))(network, x)  # one point (D,) each
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mapped, eager, rtol=1e-5, atol=1e-5)
    clusters = jnp.arange(len(x)) % 3  # one traced cluster per point
    traced = jax.jit(explain_cluster)(network, x, clusters)
    np.testing.assert_allclose(traced, explain_cluster(network, x, np.asarray(clusters)), atol=1e-5)
    # leading batch axes are kept
    batch = jax.ShapeDtypeStruct((4, 5, N_FEATURES), jnp.float32)
    assert jax.eval_shape(explain_cluster, network, batch).shape == (4, 5, N_FEATURES)
    assert jax.eval_shape(network.evidence, batch).shape == (4, 5, 3)
    assert jax.eval_shape(network.assign, batch).shape == (4, 5)


# --- errors -------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors_naming_the_problem_and_the_fix():
    network = KMeansNetwork(np.eye(3, N_FEATURES))
    with pytest.raises(ValueError, match=r"x has 4 features.*has 10 features.*\(\.\.\., 10\)"):
        explain_cluster(network, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"x has 4 features"):
        network.evidence(np.zeros(4))
    with pytest.raises(ValueError, match=r"cluster 3 is out of range.*3 clusters.*0 <= cluster"):
        explain_cluster(network, np.zeros(N_FEATURES), cluster=3)
    with pytest.raises(ValueError, match=r"cluster -1 is out of range"):
        explain_cluster(network, np.zeros((2, N_FEATURES)), cluster=np.array([0, -1]))
    with pytest.raises(ValueError, match=r"integer index"):
        explain_cluster(network, np.zeros(N_FEATURES), cluster=1.0)
    with pytest.raises(ValueError, match=r"does not broadcast"):
        explain_cluster(network, np.zeros((2, N_FEATURES)), cluster=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"at least 2 centroids, got 1.*fit k >= 2"):
        KMeansNetwork(np.zeros((1, N_FEATURES)))
    with pytest.raises(ValueError, match=r"shape \(n_clusters, n_features\)"):
        KMeansNetwork(np.zeros(N_FEATURES))
    with pytest.raises(ValueError, match=r"NaN"):
        KMeansNetwork(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"beta must be a positive finite number"):
        KMeansNetwork(np.eye(3), beta=0.0)
    with pytest.raises(ValueError, match=r"k = 1 clusters.*2 <= k <= n_points"):
        kmeans(jnp.zeros((5, 2)), 1, jax.random.key(0))
    with pytest.raises(ValueError, match=r"k = 6 clusters for 5 points"):
        kmeans(jnp.zeros((5, 2)), 6, jax.random.key(0))
