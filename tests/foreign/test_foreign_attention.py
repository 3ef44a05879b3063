"""Attention written by other libraries explains with the same transformer composites: Flax's
``nn.MultiHeadDotProductAttention`` and ``nnx.MultiHeadAttention``, equinox's
``MultiheadAttention``, transformers' Flax BERT and ViT (small configurations with random
weights, ``tests/foreign/models.py``).

For each model: ``rule_table`` finds every softmax and the two products of each attention
(AttnLRP: softmax → ``TaylorAtInput``, ``q·kᵀ`` and ``A·v`` → ``UniformProduct``; CP-LRP:
``A·v`` → ``SignalTakesAll``, ``A`` held constant); AttnLRP and CP-LRP relevance is finite and
non-zero; and with every additive constant zero (biases, position and token-type embeddings,
the class token) CP-LRP passes the explained logit on to the input, ``Σ R = f_t``.

The conservation check uses CP-LRP with ε = stabilizer = 1e-9: these models are initialised as
their libraries do (transformers: N(0, 0.02²) weights), so their pre-activations are small and
the default ε = 1e-6 is not negligible (measured with the default: HF ViT keeps 98.2 % of the
logit, the ε of the residual sums and dense layers taking the rest).

Transformers' Flax BERT multiplies the attention weights by its head mask (all ones by default,
``einsum("...hqk,h->...hqk")``) before ``A·v``: ``patterns.mark_attention`` sees the softmax
output through such element-wise scalings (before it did not, and CP-LRP let up to 0.46 % of an
example's logit into the softmax). The transformers models
are ``slow`` (10–30 s per test on two cores).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from foreign import models
from jaxlrp import composites

# name → attention layers (each: one softmax, one q·kᵀ product, one A·v attention node)
ATTENTION = {"linen_attention": 1, "nnx_attention": 1, "eqx_attention": 1, "hf_bert": 2,
             "hf_vit": 2}  # fmt: skip
CONSTANTS = ("bias", "position_embeddings", "token_type_embeddings", "cls_token")
COMPOSITES = {"AttnLRP": composites.AttnLRP(), "CPLRP": composites.CPLRP()}



SLOW = pytest.mark.slow(reason="building a transformers Flax model and explaining it: 10-30 s "
                        "per test on two CPU cores")


def _param(name: str):
    marks = [SLOW] if name.startswith("hf_") else []
    return pytest.param(name, marks=marks, id=name)


NAMES = [_param(name) for name in ATTENTION]


def _require(name: str) -> None:
    library = models.LIBRARY[name]
    pytest.importorskip(library, reason=f"{library} is not installed (the 'foreign' extra)")


def _zero_constants(tree):
    def zero(path, value):
        constant = any(c in jax.tree_util.keystr(path) for c in CONSTANTS)
        return jnp.zeros_like(value) if constant else value

    return jax.tree_util.tree_map_with_path(zero, tree)


@functools.cache
def _case(name: str, unbiased: bool) -> tuple[models.Case, jax.Array, jax.Array]:
    """The float32 model (its additive constants zero when ``unbiased``), its logits and the
    explained targets (top class of each example)."""
    case = models.build(name)
    fn, args = case.fn, case.args
    if unbiased:
        if name.startswith("nnx"):
            from flax import nnx

            graphdef, state = nnx.split(fn)
            fn = nnx.merge(graphdef, _zero_constants(state))
        else:
            args = tuple(a if i == case.argnum else _zero_constants(a)
                         for i, a in enumerate(args))  # fmt: skip
        case = case._replace(fn=fn, args=args)
    logits = case.fn(*case.args)
    return case, logits, jnp.argmax(logits, axis=-1)


def case(name: str, unbiased: bool = False):
    _require(name)
    return _case(name, unbiased)


def _explain(c: models.Case, target, composite) -> np.ndarray:
    """``explain`` under one ``jax.jit`` (one compilation, not op by op)."""
    run = jax.jit(lambda args, target: jaxlrp.explain(c.fn, *args, target=target,
                                                      composite=composite, argnums=c.argnum))
    return np.asarray(run(c.args, target))  # fmt: skip


def _node_lines(c: models.Case, composite) -> list[str]:
    table = jaxlrp.rule_table(c.fn, *c.args, composite=composite, argnums=c.argnum)
    return [line.strip() for line in table.splitlines() if "node(s)" in line]


@pytest.mark.parametrize("name", NAMES)
def test_attnlrp_rule_table_finds_softmax_and_attention_products(name):
    c, _, _ = case(name)
    n = ATTENTION[name]
    lines = _node_lines(c, COMPOSITES["AttnLRP"])
    assert f"{n} softmax node(s): TaylorAtInput()" in lines, lines
    assert f"{n} product node(s): UniformProduct()" in lines, lines  # q·kᵀ
    assert f"{n} attention node(s): UniformProduct()" in lines, lines  # A·v


@pytest.mark.parametrize("name", NAMES)
def test_cplrp_rule_table_holds_the_attention_weights_constant(name):
    c, _, _ = case(name)
    n = ATTENTION[name]
    lines = _node_lines(c, COMPOSITES["CPLRP"])
    assert f"{n} attention node(s): SignalTakesAll()" in lines, lines


@pytest.mark.parametrize("composite", list(COMPOSITES))
@pytest.mark.parametrize("name", NAMES)
def test_transformer_composites_give_finite_nonzero_relevance(name, composite):
    """On the model with its random biases (``models.randomize``)."""
    c, _, target = case(name)
    relevance = _explain(c, target, COMPOSITES[composite])
    assert relevance.shape == c.args[c.argnum].shape
    assert np.all(np.isfinite(relevance)), f"{name}: non-finite relevance"
    per_example = np.abs(relevance.reshape(relevance.shape[0], -1)).max(axis=1)
    assert np.all(per_example > 0), f"{name}: an example got all-zero relevance"


# Measured max |Σ R − f_t| / max |f_t| (CP-LRP, ε = 1e-9, float32): linen_attention 2.3e-7,
# nnx_attention 1.1e-7, eqx_attention 9.5e-8, hf_vit 2.9e-5, hf_bert 3.4e-7 (4.6e-3 before the
# head mask was seen through).
CONSERVATION_RTOL = {"linen_attention": 1e-6, "nnx_attention": 1e-6, "eqx_attention": 1e-6,
                     "hf_bert": 1e-6, "hf_vit": 1e-4}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_cplrp_without_biases_conserves_the_logit(name):
    c, logits, target = case(name, unbiased=True)
    relevance = _explain(c, target, composites.CPLRP(epsilon=1e-9, stabilizer=1e-9))
    totals = np.asarray(relevance, np.float64).reshape(relevance.shape[0], -1).sum(1)
    picked = np.asarray(jnp.take_along_axis(logits, target[:, None], -1)[:, 0], np.float64)
    error = np.abs(totals - picked).max() / np.abs(picked).max()
    assert error < CONSERVATION_RTOL[name], (totals, picked)
