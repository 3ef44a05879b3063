"""Neuralization (NEON): explaining models that are not neural networks by rewriting them as one.

A k-means clustering and a kernel outlier detector are rewritten exactly as small networks
(linear units or distances, then min-pooling), whose outputs are then explained with LRP-style
rules. Everything is a plain JAX function of frozen, pytree-registered models, so ``jax.jit``
and ``jax.vmap`` apply.

* k-means (:mod:`jaxlrp.neuralize.clusters`): :class:`KMeansNetwork` (from centroids or a fitted
  scikit-learn ``KMeans``) with ``.evidence(x)`` and ``.assign(x)``; :func:`explain_cluster`
  (soft-min, then the midpoint rule; ``Σ_i R_i = f_c(x)``); :func:`beta_heuristic`.
* fitting (:mod:`jaxlrp.neuralize.fitting`): :func:`kmeans`, k-means++ and Lloyd in pure JAX.
* outliers (:mod:`jaxlrp.neuralize.outliers`): :class:`OutlierModel` (Gaussian KDE, one-class
  SVM) with ``.score(x)``; :func:`explain_outlier` (``Σ_i R_i = o(x)``).

Example::

    from jaxlrp import neuralize
    network = neuralize.KMeansNetwork(neuralize.kmeans(x, 3, jax.random.key(0)))
    relevance = neuralize.explain_cluster(network, x)   # x.shape; sums to network.evidence

References:
  Kauffmann, Esders, Ruff, Montavon, Samek, Müller, "From clustering to cluster explanations
  via neural networks", IEEE TNNLS, 2022.
  Kauffmann, Müller, Montavon, "Towards explaining anomalies: a deep Taylor decomposition of
  one-class models", Pattern Recognition, 2020.
"""

from jaxlrp.neuralize.clusters import KMeansNetwork, beta_heuristic, explain_cluster
from jaxlrp.neuralize.fitting import kmeans
from jaxlrp.neuralize.outliers import OutlierModel, explain_outlier

__all__ = [
    "KMeansNetwork",
    "OutlierModel",
    "beta_heuristic",
    "explain_cluster",
    "explain_outlier",
    "kmeans",
]
