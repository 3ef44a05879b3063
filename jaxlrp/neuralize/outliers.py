"""Kernel outlier scores as a soft-min over distances, and their explanation per feature.

A Gaussian kernel density estimate or a Gaussian one-class SVM scores a point ``x`` by
``Σ_j α_j exp(−β ||x − u_j||²)`` over support points ``u_j`` with weights ``α_j ≥ 0``
(normalized here to ``Σ_j α_j = 1``). Kauffmann, Müller and Montavon (2020) rewrite its negative
log as a two-layer network, distances then soft-min pooling:

.. math::

    d_j(x) = \\|x - u_j\\|^2, \\qquad
    o(x) = -\\frac{1}{\\beta} \\log \\sum_j \\alpha_j\\, e^{-\\beta d_j(x)}
         = \\mathrm{softmin}_\\beta\\{d_j(x) - \\beta^{-1}\\log\\alpha_j\\}.

``o(x)`` lies between ``min_j d_j(x)`` and ``Σ_j α_j d_j(x)``, so it is never negative and grows
with the (soft) distance to the data: a large ``o(x)`` marks an outlier. For a Gaussian KDE
with bandwidth ``h``, ``β = 1/(2h²)`` and ``o(x) = −(1/β) (log p(x) + (D/2) log(2πh²))``; for a
one-class SVM with kernel ``exp(−γ||x − u||²)``, ``β = γ`` and ``α`` are its dual coefficients.

The score is explained in two steps:

* soft-min pooling → support points: ``R_j = p_j o(x)`` with
  ``p_j = α_j e^{−β d_j} / Σ_j' α_j' e^{−β d_j'}`` (the pooling is the model itself here, not an
  approximation of it);
* each squared distance → features, in proportion to its terms:
  ``R_i = Σ_j (x_i − u_{ji})² / d_j(x) · R_j``.

Hence ``Σ_i R_i = o(x)`` up to float rounding, and every ``R_i ≥ 0``: the ratio uses the
plain squared distance, so the weights' offsets ``−β⁻¹ log α_j`` absorb no relevance.

References:
  Kauffmann, Müller, Montavon, "Towards explaining anomalies: a deep Taylor decomposition of
  one-class models", Pattern Recognition 101, 107198, 2020; arXiv:1805.06230.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.neuralize import _inputs
from jaxlrp.rules.base import concrete, safe_divide

Array = Any

_SUPPORT_FIX = "pass the support points as an array of shape (n_support, n_features)"


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class OutlierModel:
    """A kernel outlier model ``o(x) = −β⁻¹ log Σ_j α_j exp(−β ||x − u_j||²)`` (a soft-min).

    Build one from support points directly (a Gaussian KDE with ``β = 1/(2h²)`` and uniform
    weights), with :meth:`from_kde`, or from a fitted one-class SVM with
    :meth:`from_one_class_svm`. It is a pytree (support points, ``beta`` and weights are its
    leaves), so it passes through ``jax.jit`` and ``jax.vmap``.

    Attributes:
      support: the support points ``u_j``, shape ``(n_support, n_features)``.
      beta: the kernel's stiffness ``β > 0`` (``γ`` of an RBF kernel), in units of
        1/(squared distance).
      weights: non-negative weights ``α_j``, shape ``(n_support,)``; None (default) for uniform
        weights. They are normalized to sum to one, so that ``o(x) >= 0``.

    References:
      Kauffmann, Müller, Montavon, "Towards explaining anomalies: a deep Taylor decomposition
      of one-class models", Pattern Recognition, 2020.
    """

    support: Array
    beta: Array | float = 1.0
    weights: Array | None = None

    def __post_init__(self) -> None:
        support = _inputs.parameter_matrix(
            self.support, "support_vectors_", "the support points", _SUPPORT_FIX
        )
        if support.shape[0] < 1:
            raise ValueError(f"an outlier model needs at least one support point; {_SUPPORT_FIX}")
        _inputs.positive_scalar(self.beta, "beta", "the kernel stiffness, 1/(2 bandwidth²)")
        object.__setattr__(self, "support", support)
        object.__setattr__(self, "weights", _normalized_weights(self.weights, support))

    def tree_flatten(self) -> tuple[tuple[Array, Any, Array], None]:
        return (self.support, self.beta, self.weights), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[Array, Any, Array]) -> OutlierModel:
        model = object.__new__(cls)
        for name, value in zip(("support", "beta", "weights"), children, strict=True):
            object.__setattr__(model, name, value)
        return model

    def __repr__(self) -> str:
        beta = concrete(self.beta)
        beta = f"{float(beta):.4g}" if beta is not None else "<traced>"
        return (
            f"OutlierModel(n_support={self.n_support}, n_features={self.n_features}, beta={beta})"
        )

    @classmethod
    def from_kde(
        cls, points: Array, bandwidth: float, weights: Array | None = None
    ) -> OutlierModel:
        """The outlier score of a Gaussian kernel density estimate with bandwidth ``h``.

        ``p(x) = Σ_j α_j N(x; u_j, h² I)``, ``β = 1/(2h²)``, and
        ``o(x) = −(1/β) (log p(x) + (D/2) log(2πh²))``: the negative log density up to a
        constant, in units of squared distance.

        Args:
          points: the data the density is estimated from, shape ``(n, n_features)``.
          bandwidth: the kernel's standard deviation ``h > 0``.
          weights: optional non-negative weight per point.
        """
        _inputs.positive_scalar(bandwidth, "bandwidth", "the Gaussian kernel's standard deviation")
        return cls(points, beta=0.5 / bandwidth**2, weights=weights)

    @classmethod
    def from_one_class_svm(cls, svm: Any) -> OutlierModel:
        """The outlier score of a fitted one-class SVM with an RBF kernel.

        Reads ``support_vectors_``, ``dual_coef_`` and the fitted ``γ`` (``_gamma``, else
        ``gamma``) of a scikit-learn ``OneClassSVM``, or of any object with those attributes.
        Then ``o(x) = −(1/γ) log(s(x) / Σ_j α_j)`` with ``s(x) = svm.score_samples(x)``; the
        SVM's decision boundary is the level set ``o(x) = −(1/γ) log(offset / Σ_j α_j)``.

        Raises:
          ValueError: when the object has another kernel or is not fitted.
        """
        kernel = getattr(svm, "kernel", "rbf")
        if kernel != "rbf":
            raise ValueError(
                f"only the RBF kernel exp(-gamma ||x - u||²) is a soft-min over distances; "
                f"this SVM uses kernel={kernel!r}: refit it with kernel='rbf'"
            )
        missing = [a for a in ("support_vectors_", "dual_coef_") if not hasattr(svm, a)]
        if missing:
            raise ValueError(
                f"the one-class SVM has no {', '.join(missing)}: fit it before neuralizing it"
            )
        gamma = getattr(svm, "_gamma", getattr(svm, "gamma", None))
        if isinstance(gamma, str) or gamma is None:
            raise ValueError(
                f"could not read the fitted gamma of the SVM (gamma={gamma!r}); fit it first, "
                "or pass a number as gamma"
            )
        weights = np.asarray(svm.dual_coef_, dtype=np.float64).ravel()
        return cls(np.asarray(svm.support_vectors_), beta=float(gamma), weights=weights)

    @property
    def n_support(self) -> int:
        """Number of support points."""
        return int(self.support.shape[0])

    @property
    def n_features(self) -> int:
        """Number of input features ``D``."""
        return int(self.support.shape[1])

    def sq_distances(self, x: Array) -> Array:
        """``d_j(x) = ||x − u_j||²`` of shape ``x.shape[:-1] + (n_support,)``.

        Computed from the differences (not the expanded form), the same terms
        :func:`explain_outlier` redistributes; memory grows as points × support × features.
        """
        return _sq_distances(self, self._points(x))

    def score(self, x: Array) -> Array:
        """The outlier score ``o(x) = −β⁻¹ log Σ_j α_j exp(−β ||x − u_j||²) >= 0``.

        Args:
          x: points of shape ``(n_features,)`` or ``(..., n_features)``.

        Returns:
          Scores of shape ``x.shape[:-1]``; larger means more anomalous.

        Raises:
          ValueError: when the last axis of ``x`` is not ``n_features`` long.
        """
        return _score(self, self._points(x))

    def _points(self, x: Array) -> Array:
        return _inputs.points(x, self.n_features, self.support.dtype, "outlier model")

    def _squared_differences(self, x: Array) -> Array:
        """``(x_i − u_{ji})²`` of shape ``(..., n_support, n_features)``."""
        return jnp.square(x[..., None, :] - self.support)

    def _pool(self, d: Array) -> tuple[Array, Array]:
        """Soft-min of the distances ``d`` (..., J): the score and the pooling weights ``p_j``."""
        logits = jnp.log(self.weights) - self.beta * d
        total = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        return -total[..., 0] / self.beta, jnp.exp(logits - total)


def _normalized_weights(weights: Array | None, support: Array) -> Array:
    """Weights ``α_j`` of shape ``(n_support,)`` summing to one (uniform when None)."""
    n = support.shape[0]
    if weights is None:
        return jnp.full((n,), 1.0 / n, support.dtype)
    weights = jnp.asarray(weights, support.dtype)
    if weights.shape != (n,):
        raise ValueError(
            f"weights must have shape ({n},), one per support point, got shape {weights.shape}"
        )
    values = concrete(weights)
    valid = values is None or (
        np.all(np.isfinite(values)) and values.min() >= 0 and values.sum() > 0
    )
    if not valid:
        raise ValueError(
            "weights must be finite, non-negative and not all zero (they are normalized to sum "
            "to one); pass None for uniform weights"
        )
    return weights / jnp.sum(weights)


def explain_outlier(model: OutlierModel, x: Array) -> Array:
    """Relevance of each input feature for the outlier score ``o(x)``.

    Soft-min pooling to the support points, then each squared distance in proportion to its
    per-feature terms (Kauffmann, Müller, Montavon 2020):

    .. math::

        R_j = \\frac{\\alpha_j e^{-\\beta d_j(x)}}{\\sum_{j'} \\alpha_{j'} e^{-\\beta d_{j'}(x)}}
              \\, o(x), \\qquad
        R_i = \\sum_j \\frac{(x_i - u_{ji})^2}{d_j(x)}\\, R_j .

    Conservation: ``Σ_i R_i = o(x)`` (:meth:`OutlierModel.score`) up to float rounding, and
    ``R_i >= 0``: a feature is relevant when ``x`` is far from the nearby support points along
    it. A support point that ``x`` coincides with (``d_j = 0``) has no direction to attribute
    its share to and passes nothing on.

    Args:
      model: the :class:`OutlierModel`.
      x: points of shape ``(n_features,)`` or ``(..., n_features)``.

    Returns:
      Relevance of the same shape as ``x``.

    Raises:
      ValueError: when the last axis of ``x`` is not ``n_features`` long.

    References:
      Kauffmann, Müller, Montavon, "Towards explaining anomalies: a deep Taylor decomposition
      of one-class models", Pattern Recognition, 2020.
    """
    return _explain(model, model._points(x))


@jax.jit
def _explain(model: OutlierModel, x: Array) -> Array:
    """The relevance computation, jitted so that an eager call is one compiled program."""
    terms = model._squared_differences(x)  # (..., J, D)
    d = jnp.sum(terms, axis=-1)
    score, share = model._pool(d)
    per_unit = safe_divide(share * score[..., None], d)  # R_j / d_j
    return jnp.sum(terms * per_unit[..., None], axis=-2)


@jax.jit
def _sq_distances(model: OutlierModel, x: Array) -> Array:
    return jnp.sum(model._squared_differences(x), axis=-1)


@jax.jit
def _score(model: OutlierModel, x: Array) -> Array:
    return model._pool(jnp.sum(model._squared_differences(x), axis=-1))[0]


__all__ = ["OutlierModel", "explain_outlier"]
