"""Why is this digit in its cluster? k-means on scikit-learn's digits, explained with NEON.

k-means (k = 10, fixed seed) clusters the 1797 handwritten 8x8 digits of
``sklearn.datasets.load_digits`` (shipped with scikit-learn, no download). The fitted model is
rewritten as a network (``jaxlrp.neuralize.KMeansNetwork``): the evidence ``f_c(x)`` that a
digit belongs to its cluster ``c`` is its margin over the nearest other centroid,
``min_{k≠c} ||x − μ_k||² − ||x − μ_c||²``. ``explain_cluster`` distributes that margin over the
64 pixels (soft-min over the competing clusters, then the midpoint rule; Kauffmann et al., IEEE
TNNLS 2022), and the pixel relevances sum to ``f_c(x)``.

Each row of the figure shows a digit, the relevance of its pixels for its cluster (red: pixels
that make it look like its own centroid rather than the competitors, blue: pixels that speak for
a competitor), its cluster's centroid and the centroid of the competitor that gets most of the
relevance.

Run::

    python examples/explain_clusters.py                  # writes out/explain_clusters.png
    python examples/explain_clusters.py --samples 4 --fit jax --out figures/
    python examples/explain_clusters.py --samples 10 --n-init 1    # faster fit, more digits
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import neuralize, viz

SEED = 0
N_CLUSTERS = 10


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits as (1797, 64) in [0, 1], and their labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return digits.data / 16.0, digits.target


def fit_centroids(x: np.ndarray, fit: str, n_init: int) -> np.ndarray:
    """k-means centroids (10, 64) from scikit-learn's KMeans or from ``neuralize.kmeans``, the
    best of ``n_init`` seedings."""
    if fit == "sklearn":
        from sklearn.cluster import KMeans

        return KMeans(N_CLUSTERS, n_init=n_init, random_state=SEED).fit(x).cluster_centers_
    keys = jax.random.split(jax.random.key(SEED), n_init)
    fits = [neuralize.kmeans(jnp.asarray(x), N_CLUSTERS, key) for key in keys]
    inertia = [float(jnp.sum(jnp.min(((x[:, None] - c) ** 2).sum(-1), -1))) for c in fits]
    return np.asarray(fits[int(np.argmin(inertia))])


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output directory (default: out/)")
    parser.add_argument("--samples", type=int, default=6, help="digits to explain (rows)")
    parser.add_argument("--n-init", type=int, default=10, help="k-means seedings (best kept)")
    parser.add_argument("--fit", choices=("sklearn", "jax"), default="sklearn",
                        help="k-means from scikit-learn or jaxlrp.neuralize.kmeans")  # fmt: skip
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x, labels = load_digits()
    network = neuralize.KMeansNetwork(fit_centroids(x, args.fit, args.n_init))
    network = dataclasses.replace(network, beta=neuralize.beta_heuristic(network, x))
    assigned = np.asarray(network.assign(x))
    # name each cluster after the digit most of its members show
    majority = [np.bincount(labels[assigned == c], minlength=10).argmax() for c in range(10)]
    purity = np.mean(np.asarray(majority)[assigned] == labels)
    print(f"k-means ({args.fit}) on {len(x)} digits: {purity:.1%} of digits are in a cluster "
          f"named after their own label; soft-min beta = {float(network.beta):.3g}")  # fmt: skip

    relevance = np.asarray(neuralize.explain_cluster(network, x))  # all digits at once
    evidence = np.asarray(network.evidence(x))[np.arange(len(x)), assigned]
    error = np.max(np.abs(relevance.sum(-1) - evidence))
    print(f"conservation: max |sum of pixel relevance - cluster evidence| = {error:.2g} "
          f"(evidence up to {evidence.max():.3g})")  # fmt: skip

    picks = [int(np.flatnonzero(labels == digit)[0]) for digit in range(args.samples)]
    centroids = np.asarray(network.centroids)
    cells, titles = [], []
    for i in picks:
        c = assigned[i]
        distances = ((x[i] - centroids) ** 2).sum(-1)
        distances[c] = np.inf
        competitor = int(np.argmin(distances))  # the largest soft-min share
        print(f"digit {labels[i]} (#{i}): cluster {c} ('{majority[c]}'), evidence "
              f"{evidence[i]:.3f} = sum of relevance {relevance[i].sum():.3f}; nearest "
              f"competitor: cluster {competitor} ('{majority[competitor]}')")  # fmt: skip
        heat = viz.heatmap(relevance[i].reshape(8, 8), reduce=None, cmap="bwr")
        own, rival = (np.clip(centroids[k], 0, 1).reshape(8, 8) for k in (c, competitor))
        cells += [x[i].reshape(8, 8), heat, own, rival]
        titles += [f"digit {labels[i]}", f"R, f={evidence[i]:.2f}", f"cluster '{majority[c]}'",
                   f"rival '{majority[competitor]}'"]  # fmt: skip
    path = out / "explain_clusters.png"
    viz.grid(cells, titles=titles, ncols=4, cell_size=1.8, path=path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
