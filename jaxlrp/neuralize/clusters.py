"""k-means as a neural network (NEON), and the explanation of its cluster assignments.

Kauffmann et al. (2022) observe that the k-means assignment rule can be written as a two-layer
network: the evidence for cluster ``c`` contrasts the (squared) distance to ``c`` with the
distance to the nearest competitor,

.. math::

    f_c(x) = \\min_{k \\ne c} \\big(\\|x - \\mu_k\\|^2 - \\|x - \\mu_c\\|^2\\big)
           = \\min_{k \\ne c} h_k(x), \\qquad
    h_k(x) = w_k^\\top x + b_k,\\quad w_k = 2(\\mu_c - \\mu_k),\\quad
    b_k = \\|\\mu_k\\|^2 - \\|\\mu_c\\|^2,

a linear layer (one unit per competitor) followed by min-pooling. ``f_c(x) > 0`` exactly when
``x`` is assigned to ``c``. We follow the paper's convention; ``lrp-notes.md`` §6 writes the same
network with a factor ½ (``w_k = μ_c − μ_k``), which halves ``f_c`` and its relevance and changes
nothing else (use ``beta`` twice as large to get the same soft-min weights).

The evidence is explained in two LRP steps:

* min-pooling → competitors, with the soft-min: ``R_k = p_k f_c(x)``,
  ``p_k = exp(−β h_k) / Σ_{k'≠c} exp(−β h_k')``;
* each linear unit → input features, with the midpoint rule: with ``m_k = (μ_c + μ_k)/2``, the
  point midway between the two centroids (on the decision boundary, ``h_k(m_k) = 0``), one has
  ``h_k(x) = w_k^T (x − m_k)`` exactly, and
  ``R_i = Σ_k (x_i − m_{ki}) w_{ki} / h_k(x) · R_k``.

Because the soft-min only splits ``f_c`` among competitors (``Σ_k p_k = 1``) and the midpoint
decomposition of each ``h_k`` is exact, ``Σ_i R_i = f_c(x)``, the (hard-min) evidence itself, up
to float rounding.

References:
  Kauffmann, Esders, Ruff, Montavon, Samek, Müller, "From clustering to cluster explanations
  via neural networks", IEEE Transactions on Neural Networks and Learning Systems 35(2),
  1926–1940, 2024 (online 2022); arXiv:1906.07633.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp.neuralize import _inputs
from jaxlrp.rules.base import concrete, safe_divide, stabilize

Array = Any

_CENTROIDS_FIX = (
    "pass the centroids as an array of shape (n_clusters, n_features), or a fitted k-means "
    "estimator with a `cluster_centers_` attribute (scikit-learn's KMeans)"
)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class KMeansNetwork:
    """A fitted k-means model rewritten as a network of linear units and min-pooling (NEON).

    The network has no trainable parameters of its own: everything follows from the centroids
    (see the module docstring for the formulas). It is a pytree (the centroids and ``beta`` are
    its leaves), so it can be passed through ``jax.jit`` and ``jax.vmap``.

    Attributes:
      centroids: the cluster centres ``μ_k``, shape ``(n_clusters, n_features)``. The
        constructor also accepts a fitted estimator with a ``cluster_centers_`` attribute
        (scikit-learn's ``KMeans``, ``MiniBatchKMeans``), or the output of
        :func:`jaxlrp.neuralize.kmeans`.
      beta: stiffness ``β > 0`` of the soft-min that splits a cluster's evidence among its
        competitors, in units of 1/(squared distance). Large ``β`` gives all relevance to the
        nearest competitor; small ``β`` spreads it evenly. It changes the explanation, never
        the evidence or the assignment. :func:`beta_heuristic` gives a scale fitted to data;
        ``dataclasses.replace(network, beta=...)`` changes it.

    Example::

        from sklearn.cluster import KMeans
        network = KMeansNetwork(KMeans(10, random_state=0).fit(x_train), beta=0.01)
        relevance = explain_cluster(network, x)  # (n, features): why x is in its cluster

    References:
      Kauffmann et al., "From clustering to cluster explanations via neural networks",
      IEEE TNNLS, 2022.
    """

    centroids: Array
    beta: Array | float = 1.0

    def __post_init__(self) -> None:
        centroids = _inputs.parameter_matrix(
            self.centroids, "cluster_centers_", "the centroids", _CENTROIDS_FIX
        )
        if centroids.shape[0] < 2:
            raise ValueError(
                f"a k-means network needs at least 2 centroids, got {centroids.shape[0]}: the "
                "evidence for a cluster compares it with its competitors; fit k >= 2 clusters"
            )
        _inputs.positive_scalar(self.beta, "beta", "the stiffness of the soft-min")
        object.__setattr__(self, "centroids", centroids)

    # pytree: rebuilt without re-running the checks (leaves may be tracers or placeholders).
    def tree_flatten(self) -> tuple[tuple[Array, Any], None]:
        return (self.centroids, self.beta), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[Array, Any]) -> KMeansNetwork:
        network = object.__new__(cls)
        object.__setattr__(network, "centroids", children[0])
        object.__setattr__(network, "beta", children[1])
        return network

    def __repr__(self) -> str:
        beta = concrete(self.beta)
        beta = f"{float(beta):.4g}" if beta is not None else "<traced>"
        return (
            f"KMeansNetwork(n_clusters={self.n_clusters}, n_features={self.n_features}, "
            f"beta={beta})"
        )

    @property
    def n_clusters(self) -> int:
        """Number of clusters ``K``."""
        return int(self.centroids.shape[0])

    @property
    def n_features(self) -> int:
        """Number of input features ``D``."""
        return int(self.centroids.shape[1])

    def evidence(self, x: Array) -> Array:
        """The cluster evidence (logits) ``f_c(x)`` for every cluster ``c``.

        .. math::

            f_c(x) = \\min_{k \\ne c} \\big(\\|x - \\mu_k\\|^2 - \\|x - \\mu_c\\|^2\\big)

        positive for the assigned cluster (its margin over the nearest competitor), negative
        for all others. Computed in coordinates centred on the mean centroid, which avoids the
        cancellation of the expanded form ``w_k^T x + b_k`` far from the origin.

        Args:
          x: points of shape ``(n_features,)`` or ``(..., n_features)``.

        Returns:
          An array of shape ``x.shape[:-1] + (n_clusters,)``.

        Raises:
          ValueError: when the last axis of ``x`` is not ``n_features`` long.
        """
        return _evidence(self.centroids, self._points(x))

    def assign(self, x: Array) -> Array:
        """The assigned cluster ``argmax_c f_c(x) = argmin_c ||x − μ_c||²`` (k-means' rule).

        Args:
          x: points of shape ``(n_features,)`` or ``(..., n_features)``.

        Returns:
          Integer cluster indices of shape ``x.shape[:-1]``.
        """
        return jnp.argmax(self.evidence(x), axis=-1)

    def _points(self, x: Array) -> Array:
        return _inputs.points(x, self.n_features, self.centroids.dtype, "k-means network")


def explain_cluster(
    network: KMeansNetwork, x: Array, cluster: int | Array | None = None, eps: float = 0.0
) -> Array:
    """Relevance of each input feature for the evidence that ``x`` belongs to ``cluster``.

    Neuralization-propagation (NEON, Kauffmann et al. 2022): soft-min pooling over the
    competitors ``k ≠ c``, then the midpoint rule to the features,

    .. math::

        R_k = \\frac{e^{-\\beta h_k(x)}}{\\sum_{k' \\ne c} e^{-\\beta h_{k'}(x)}}\\, f_c(x),
        \\qquad
        R_i = \\sum_{k \\ne c} \\frac{(x_i - m_{ki})\\, w_{ki}}{h_k(x)}\\, R_k,

    with ``w_k = 2(μ_c − μ_k)``, ``m_k = (μ_c + μ_k)/2`` and
    ``h_k(x) = Σ_i (x_i − m_{ki}) w_{ki} = ||x − μ_k||² − ||x − μ_c||²``.

    Conservation: ``Σ_i R_i = f_c(x) = min_{k≠c} h_k(x)``, the hard-min evidence returned by
    :meth:`KMeansNetwork.evidence`, up to float rounding (for ``eps = 0``). For the assigned
    cluster ``R`` sums to the positive margin; for any other cluster it sums to a negative
    value (evidence against).

    Args:
      network: the :class:`KMeansNetwork`.
      x: points of shape ``(n_features,)`` or ``(..., n_features)``.
      cluster: the cluster to explain: None (default) for each point's assigned cluster, an
        int, or an integer array broadcastable to ``x.shape[:-1]``. Concrete indices are
        checked; indices traced under ``jax.jit`` are not (JAX clamps them into range).
      eps: optional stabilizer of the midpoint rule's denominators, ``h_k + ε·sign(h_k)``
        (``sign(0) = +1``). With the default 0 conservation is exact; a competitor with
        ``h_k = 0`` (``x`` on its decision boundary) then passes no relevance, which loses
        nothing for the assigned cluster (there ``h_k = 0`` implies ``f_c = 0``).

    Returns:
      Relevance of the same shape as ``x``.

    Raises:
      ValueError: when ``x`` has the wrong number of features, or ``cluster`` is out of range,
        not an integer, or does not broadcast to the points.

    References:
      Kauffmann et al., "From clustering to cluster explanations via neural networks",
      IEEE TNNLS, 2022 (the soft-min pooling and the midpoint rule).
    """
    x = network._points(x)
    batch = x.shape[:-1]
    flat = x.reshape(-1, network.n_features)
    clusters = None
    if cluster is not None:
        clusters = _check_cluster(cluster, network.n_clusters, batch).reshape(-1)
    relevance = _explain(network.centroids, network.beta, flat, clusters, eps)
    return relevance.reshape(x.shape)


# The computations are jitted so that eager calls run as one compiled program each.


@jax.jit
def _evidence(centroids: Array, x: Array) -> Array:
    """``f_c(x)`` for all ``c`` (..., K), in coordinates centred on the mean centroid."""
    centre = jnp.mean(centroids, axis=0)
    mu = centroids - centre
    # ||x - μ_k||² = ||x - centre||² - g_k, so f_c = g_c - max_{k≠c} g_k.
    g = 2.0 * (x - centre) @ mu.T - jnp.sum(mu * mu, axis=-1)
    others = ~jnp.eye(centroids.shape[0], dtype=bool)
    best_competitor = jnp.max(jnp.where(others, g[..., None, :], -jnp.inf), axis=-1)
    return g - best_competitor


@jax.jit
def _explain(centroids: Array, beta: Array, x: Array, clusters: Array | None, eps: Array) -> Array:
    """NEON relevance of the points ``x`` (N, D) for ``clusters`` (N,) (None: assigned)."""
    if clusters is None:
        clusters = jnp.argmax(_evidence(centroids, x), axis=-1)
    explain_one = jax.vmap(_explain_one, in_axes=(None, None, 0, 0, None))
    return explain_one(centroids, beta, x, clusters, eps)


def _explain_one(centroids: Array, beta: Array, x: Array, c: Array, eps: float) -> Array:
    """Soft-min and midpoint rule for one point ``x`` (D,) and one cluster ``c``."""
    mu_c = centroids[c]
    weights = 2.0 * (mu_c - centroids)  # (K, D); row c is zero
    contributions = weights * (x - 0.5 * (mu_c + centroids))  # (x_i − m_ki) w_ki
    h = jnp.sum(contributions, axis=-1)  # h_k(x); h_c = 0
    competitor = jnp.arange(centroids.shape[0]) != c
    evidence = jnp.min(jnp.where(competitor, h, jnp.inf))
    share = jax.nn.softmax(jnp.where(competitor, -beta * h, -jnp.inf))  # p_k, p_c = 0
    per_unit = safe_divide(share * evidence, stabilize(h, eps))  # R_k / h_k
    return jnp.sum(contributions * per_unit[:, None], axis=0)


def _check_cluster(cluster: Any, n_clusters: int, batch: tuple[int, ...]) -> Array:
    """``cluster`` as an integer array broadcast to ``batch``, checked when concrete."""
    clusters = jnp.asarray(cluster)
    if not jnp.issubdtype(clusters.dtype, jnp.integer):
        raise ValueError(
            f"cluster must be an integer index (or None for the assigned cluster), got "
            f"{cluster!r} of dtype {clusters.dtype}"
        )
    values = concrete(clusters)
    if values is not None and values.size and (values.min() < 0 or values.max() >= n_clusters):
        bad = values[(values < 0) | (values >= n_clusters)].ravel()[0]
        raise ValueError(
            f"cluster {int(bad)} is out of range for a network with {n_clusters} clusters; "
            f"pass 0 <= cluster < {n_clusters}, or None to explain each point's assigned cluster"
        )
    try:
        return jnp.broadcast_to(clusters, batch)
    except ValueError as error:
        raise ValueError(
            f"cluster of shape {clusters.shape} does not broadcast to the {batch} points of x; "
            "pass one index, or one index per point"
        ) from error


def beta_heuristic(network: KMeansNetwork, x: Array) -> Array:
    """A soft-min stiffness on the scale of the data: ``β = 1 / mean_n f_{c(n)}(x_n)``.

    The mean is taken over the points' assigned-cluster evidence (their margins), so
    ``β h_k`` is of order one for typical competitors: neither a hard winner-take-all nor a
    uniform split. This is the choice made in the authors' demonstration code for NEON.

    Args:
      network: the :class:`KMeansNetwork` (its ``beta`` is ignored).
      x: representative points, e.g. the training data, shape ``(..., n_features)``.

    Returns:
      A positive scalar; use ``dataclasses.replace(network, beta=beta_heuristic(network, x))``.

    References:
      Kauffmann et al., "From clustering to cluster explanations via neural networks",
      IEEE TNNLS, 2022.
    """
    margin = jnp.mean(jnp.max(network.evidence(x), axis=-1))
    values = concrete(margin)
    if values is not None and not values > 0:
        raise ValueError(
            "the points' mean cluster evidence is not positive (all lie on decision "
            "boundaries?); pass representative data points, or choose beta by hand"
        )
    return 1.0 / margin


__all__ = ["KMeansNetwork", "beta_heuristic", "explain_cluster"]
