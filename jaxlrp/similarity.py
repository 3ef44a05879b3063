"""Explaining the similarity of two inputs: BiLRP (second order) and first-order relevance.

A similarity model scores two inputs by the dot product of their embeddings,

    s(a, b) = <φ(a), φ(b)> = Σ_m φ_m(a) φ_m(b),

for instance two sentences embedded by a sentence encoder (mean-pooled hidden states). Two
explanations of ``s`` are offered here, for any embedding function of token ids (or of floats):

* :func:`bilrp` (second order, Eberle et al. 2022): each embedding dimension ``φ_m`` is
  explained by LRP on each side, and the two explanations are multiplied and summed over ``m``,

      R_ij = Σ_m R_i(φ_m(a)) · R_j(φ_m(b)),

  a relevance for every *pair* of tokens (``i`` in ``a``, ``j`` in ``b``). Where LRP conserves
  relevance (``Σ_i R_i(φ_m(a)) = φ_m(a)``), ``Σ_ij R_ij = s``; biases, ε and non-conservative
  rules (AttnLRP's softmax rule) absorb the rest.
* :func:`similarity_relevance` (first order): ``s`` is explained on one side with the other
  embedding held fixed, i.e. LRP of the output ``<φ(a), φ(b)>`` with ``φ(b)`` a constant, giving
  ``R_i = Σ_m φ_m(b) R_i(φ_m(a))`` per token of ``a`` (and symmetrically for ``b``).

The ``M`` explanations of one side (``M`` = embedding width) are one relevance pull-back of
:func:`jaxlrp.lrp` batched over ``M`` output cotangents (``jax.vmap``, or ``jax.lax.map`` in
chunks of ``batch_size``): one forward pass and one compiled program per side.

References:
  O. Eberle, J. Büttner, F. Kräutli, K.-R. Müller, M. Valleriani, G. Montavon, "Building and
  Interpreting Deep Similarity Models", IEEE TPAMI 44(3), 2022.
  A. Vasileiou, O. Eberle, "Explaining Text Similarity in Transformer Models", NAACL 2024
  (BiLRP for sentence transformers).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp import compiled
from jaxlrp.composites import Composite
from jaxlrp.explain import lrp

Array = Any

__all__ = ["bilrp", "embedding_relevance", "similarity_relevance"]


def _args(variables: Any, ids: Array, mask: Array | None) -> tuple[Any, ...]:
    return (variables, ids) if mask is None else (variables, ids, mask)


def _per_dimension(
    embed_fn: Callable[..., Array],
    composite: Composite | None,
    variables: Any,
    ids: Array,
    mask: Array | None,
    batch_size: int | None,
) -> tuple[Array, Array]:
    """``φ`` and the relevance of ``ids`` for each entry ``φ_m`` alone: ``(M, *ids.shape)``."""
    phi, relevance_fn = lrp(embed_fn, composite, argnums=1)(*_args(variables, ids, mask))
    size = phi.size
    flat = phi.reshape(-1)

    def one(m: Array) -> Array:
        onehot = (jnp.arange(size) == m).astype(phi.dtype)
        # R_out = φ_m e_m; its cotangent R_out / φ is e_m (given, so φ_m = 0 needs no division)
        return relevance_fn((onehot * flat).reshape(phi.shape),
                            cotangent=onehot.reshape(phi.shape))  # fmt: skip

    dims = jnp.arange(size)
    if batch_size is None:
        per_dim = jax.vmap(one)(dims)
    else:
        per_dim = jax.lax.map(one, dims, batch_size=batch_size)
    return phi, per_dim


_JITTED = compiled.Cache(maxsize=16)


def _run(plain: Callable, static: tuple[Any, ...], *args: Any) -> Any:
    """``plain(*static, *args)`` through ``jax.jit`` with ``static`` (the embedding function,
    the composite, options) baked in: compiled once per function object, composite value and
    options (:mod:`jaxlrp.compiled`)."""
    fn, composite, *options = static
    entry = _JITTED.get(fn, composite, (plain.__name__, *options),
                        lambda: jax.jit(functools.partial(plain, *static)))  # fmt: skip
    return entry.run(*args)


def _embedding_relevance(embed_fn, composite, batch_size, variables, ids, mask):
    return _per_dimension(embed_fn, composite, variables, ids, mask, batch_size)


def embedding_relevance(
    embed_fn: Callable[..., Array],
    variables: Any,
    ids: Array,
    composite: Composite | None = None,
    mask: Array | None = None,
    batch_size: int | None = None,
) -> tuple[Array, Array]:
    """The embedding ``φ = embed_fn(variables, ids[, mask])`` and, for each of its entries
    ``φ_m``, the LRP relevance of the input for ``φ_m`` alone (output relevance ``φ_m e_m``).

    This is the building block of :func:`bilrp`: ``R[m]`` sums to ``φ_m`` where the composite
    conserves relevance.

    Args:
      embed_fn: ``embed_fn(variables, ids)`` (or ``embed_fn(variables, ids, mask)`` when
        ``mask`` is given) returning the embedding, e.g. ``(D,)``. ``ids`` may be integer token
        ids (explained at their embedding lookups, see :func:`jaxlrp.lrp`) or floats.
      variables: the model's parameters (not explained).
      ids: the input, e.g. ``(T,)`` token ids of one sentence.
      composite: the LRP rules (e.g. :func:`jaxlrp.composites.AttnLRP`); ``Epsilon`` if None.
      mask: an optional third argument of ``embed_fn`` (e.g. an attention mask).
      batch_size: explain the ``M`` entries of ``φ`` in chunks of this size (``jax.lax.map``)
        instead of all at once (``jax.vmap``), to bound memory.

    Returns:
      ``(φ, R)`` with ``R`` of shape ``(φ.size, *ids.shape)`` (entries of ``φ`` flattened).

    References:
      Eberle et al., "Building and Interpreting Deep Similarity Models", IEEE TPAMI 2022 (the
      per-dimension explanations that BiLRP contracts).
    """
    return _run(_embedding_relevance, (embed_fn, composite, batch_size), variables, ids, mask)


def _bilrp(embed_fn, composite, batch_size, variables, ids_a, ids_b, mask_a, mask_b):
    _, r_a = _per_dimension(embed_fn, composite, variables, ids_a, mask_a, batch_size)
    _, r_b = _per_dimension(embed_fn, composite, variables, ids_b, mask_b, batch_size)
    return jnp.tensordot(r_a, r_b, axes=(0, 0))


def bilrp(
    embed_fn: Callable[..., Array],
    variables: Any,
    ids_a: Array,
    ids_b: Array,
    composite: Composite | None = None,
    mask_a: Array | None = None,
    mask_b: Array | None = None,
    batch_size: int | None = None,
) -> Array:
    """BiLRP: the relevance of every pair of input tokens for ``s = <φ(a), φ(b)>``.

    ``R_ij = Σ_m R_i(φ_m(a)) · R_j(φ_m(b))``, where ``R_i(φ_m(a))`` is the LRP relevance of
    token ``i`` of ``a`` for the embedding entry ``φ_m(a)`` alone (see
    :func:`embedding_relevance`). As ``s = Σ_m φ_m(a) φ_m(b)``, the matrix sums to ``s`` when
    each side conserves relevance; biases, ε and non-conservative rules absorb the rest. Its
    row sums approximate the first-order relevance of ``a``'s tokens
    (:func:`similarity_relevance`).

    Both sides are computed in one compiled call (cached per ``embed_fn``, composite and
    shapes; pass the same function object to reuse it, and pad inputs to one length with a
    mask to reuse it across pairs). Its cost is one forward pass and ``M`` relevance pull-backs
    per side, ``M`` the embedding width (384 for MiniLM: ~1.3 s for two short sentences on two
    CPU cores after compilation); ``batch_size`` bounds the memory of the batched pull-back::

        def embed(variables, ids):            # (T,) token ids -> (D,) sentence embedding
            hidden = module.apply(variables, ids[None])
            return hidden.mean(axis=1)[0]

        R = jaxlrp.bilrp(embed, variables, ids_a, ids_b, composite=composites.AttnLRP())

    Args:
      embed_fn: ``embed_fn(variables, ids)``, or ``embed_fn(variables, ids, mask)`` when masks
        are given, returning the embedding (any shape; every entry is one ``m``).
      variables: the model's parameters (not explained).
      ids_a: the first input, e.g. ``(T_a,)`` token ids (integers are explained at their
        embedding lookups; float inputs are explained directly).
      ids_b: the second input, e.g. ``(T_b,)`` token ids.
      composite: the LRP rules, e.g. :func:`jaxlrp.composites.AttnLRP` or
        :func:`~jaxlrp.composites.CPLRP` for transformers; ``Epsilon`` everywhere if None.
      mask_a: optional third argument of ``embed_fn`` for ``ids_a`` (an attention mask); give
        both masks or neither.
      mask_b: the same for ``ids_b``.
      batch_size: explain the embedding entries in chunks of this size (bounds memory).

    Returns:
      The pair relevance, of shape ``ids_a.shape + ids_b.shape`` (``(T_a, T_b)``).

    References:
      Eberle, Büttner, Kräutli, Müller, Valleriani, Montavon, "Building and Interpreting Deep
      Similarity Models", IEEE TPAMI 44(3), 2022.
    """
    if (mask_a is None) != (mask_b is None):
        raise ValueError("give both mask_a and mask_b, or neither")
    return _run(_bilrp, (embed_fn, composite, batch_size), variables, ids_a, ids_b, mask_a,
                mask_b)  # fmt: skip


def _first_order(embed_fn, composite, variables, ids_a, ids_b, mask_a, mask_b):
    phi_a, rel_a = lrp(embed_fn, composite, argnums=1)(*_args(variables, ids_a, mask_a))
    phi_b, rel_b = lrp(embed_fn, composite, argnums=1)(*_args(variables, ids_b, mask_b))
    phi_a, phi_b = jnp.asarray(phi_a), jnp.asarray(phi_b)
    # R_out = φ(a) ⊙ φ(b): each entry's share of s; its cotangent at φ(a) is φ(b), and vice versa
    r_out = phi_a * phi_b
    return rel_a(r_out, cotangent=phi_b), rel_b(r_out, cotangent=phi_a)


def similarity_relevance(
    embed_fn: Callable[..., Array],
    variables: Any,
    ids_a: Array,
    ids_b: Array,
    composite: Composite | None = None,
    mask_a: Array | None = None,
    mask_b: Array | None = None,
) -> tuple[Array, Array]:
    """First-order relevance of each input's tokens for ``s = <φ(a), φ(b)>``.

    For ``a``: LRP of the output ``<φ(a), c>`` with ``c = φ(b)`` held constant, i.e. output
    relevance ``φ(a) ⊙ φ(b)`` on the embedding, so ``R_i = Σ_m φ_m(b) R_i(φ_m(a))``; for ``b``
    symmetrically. Each sums to ``s`` where the composite conserves relevance. Unlike
    :func:`bilrp`, it says which tokens of one input matter, not which tokens they match.

    Args:
      embed_fn: as in :func:`bilrp`.
      variables: as in :func:`bilrp`.
      ids_a: as in :func:`bilrp`.
      ids_b: as in :func:`bilrp`.
      composite: as in :func:`bilrp`.
      mask_a: as in :func:`bilrp`.
      mask_b: as in :func:`bilrp`.

    Returns:
      ``(R_a, R_b)`` of the shapes of ``ids_a`` and ``ids_b``.

    References:
      Eberle et al., "Building and Interpreting Deep Similarity Models", IEEE TPAMI 2022
      (the first-order baseline of BiLRP).
    """
    if (mask_a is None) != (mask_b is None):
        raise ValueError("give both mask_a and mask_b, or neither")
    return _run(_first_order, (embed_fn, composite), variables, ids_a, ids_b, mask_a, mask_b)
