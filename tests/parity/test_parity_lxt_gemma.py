"""jaxlrp's AttnLRP and CP-LRP against LXT 2.1 (``lxt.efficient``) on Gemma 3: transformers'
``Gemma3ForCausalLM`` patched with LXT's own Gemma 3 maps (``lxt/efficient/models/gemma3.py``:
``attnLRP`` and ``cp_LRP``) and jaxlrp's ``Gemma3`` on the same random weights of a tiny
configuration (3 blocks: two sliding-window layers with a window of 4 and one global layer,
grouped-query attention, q/k RMS norms, RoPE with two bases, GeGLU MLP, every RMSNorm multiplier
``U(0.7, 1.3)``), a 10-token prompt, the top logit at the last position explained (see
``lxt_gemma_harness.py``). The pretrained 270M comparison is the script
``compare_lxt_gemma_pretrained.py`` beside this file (minutes, so not a test).

What LXT's Gemma 3 maps do, read from ``lxt/efficient/models/gemma3.py``, ``patches.py`` and
``rules.py`` (gradient × input with modified gradients):

* ``Gemma3RMSNorm._norm``: ``rsqrt(mean(x²) + ε)`` detached (the identity rule; every norm,
  the q/k norms included; ``1 + w`` by the gradient): jaxlrp's ``SignalTakesAll`` norm rule;
* attention (``eager_attention_forward``, after RoPE): AttnLRP ``q``, ``k`` gradients /4 and
  ``v`` /2, the softmax's plain gradient (jaxlrp: ``UniformProduct`` on ``q·kᵀ`` and ``A·v``,
  ``TaylorAtInput``); CP ``q`` and ``k`` detached (jaxlrp ``CPLRP``: ``SignalTakesAll`` on
  ``A·v``);
* ``Gemma3MLP``: AttnLRP the identity rule on GELU (``GELU(x)/(x + 1e-10)``; jaxlrp ``Pass``)
  and the gradient halved at ``GELU(gate)·up`` (``UniformProduct``); CP ``gate_proj``'s output
  detached, so all relevance of the product goes to ``up`` (jaxlrp ``CPLRP``: ``SignalTakesAll``
  on products gated by an activation, found by ``patterns.mark_gated_products``);
* everything else (projections, RoPE, residual sums, the embedding scale, the unembedding):
  the plain gradient, LRP-0 without a stabilizer (jaxlrp: ε = 1e-6 and ``Norm(1e-6)``).

With ε = 0 and LRP-0 (``lxt_matching_composite``), jaxlrp is LXT to ~1e-8 per token in
float64; a uniform split of the GeGLU product under CP-LRP differs by half the largest token
relevance, so the comparison discriminates.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the LXT parity test needs torch (the 'parity' extra)")
transformers = pytest.importorskip("transformers", reason="LXT patches transformers' Gemma 3")
pytest.importorskip("lxt", reason="the LXT parity test needs lxt (pip install lxt==2.1)")
try:
    import lxt.efficient.models.gemma3  # noqa: F401 - imports transformers' modeling_gemma3
except ImportError as err:  # transformers without Gemma 3, or an lxt without its Gemma 3 map
    pytest.skip(f"LXT's Gemma 3 patches are unavailable: {err}", allow_module_level=True)

import lxt_gemma_harness as harness  # noqa: E402

from jaxlrp import composites, rules  # noqa: E402
from jaxlrp.models.gemma3 import Gemma3  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def setting():
    """Config, variables, ids, the explained token (top logit under jaxlrp's float64 forward
    pass) and jaxlrp's float64 embeddings, handed to LXT as its ``inputs_embeds``."""
    config = harness.tiny_config()
    variables, ids = harness.random_variables(config), harness.token_ids(config)
    with jax.enable_x64(True):
        module = Gemma3(config, dtype=jnp.float64)
        embeds = module.apply(variables, jnp.asarray(ids), method="embed")
        logits = module.apply(variables, embeds, method="from_embeddings")[:, -1]
        embeds, logits = np.asarray(embeds), np.asarray(logits)
    return config, variables, ids, int(logits.argmax()), embeds, logits


@pytest.fixture(scope="module")
def lxt(setting):
    """LXT's relevance for both maps (float64 and float32), one child process each."""
    config, variables, _, target, embeds, _ = setting
    state, kwargs = harness.hf_state_dict(variables), harness.hf_config_kwargs(config)
    return {variant: harness.lxt_relevance(variant, kwargs, state, embeds, target)
            for variant in harness.VARIANTS}  # fmt: skip


def _jaxlrp(setting, composite, dtype="float32"):
    config, variables, ids, target, _, _ = setting
    if dtype == "float64":
        with jax.enable_x64(True):
            module = Gemma3(config, dtype=jnp.float64)
            return harness.jaxlrp_relevance(module, variables, ids, target, composite, dtype)
    return harness.jaxlrp_relevance(Gemma3(config), variables, ids, target, composite)


def _check(relevance, expected, token_rel, rel_l2):
    measured = harness.agreement(relevance, expected)
    assert measured["token_max_rel"] < token_rel, measured
    assert measured["rel_l2"] < rel_l2, measured
    return measured


def test_the_models_agree_in_float64(setting, lxt):
    """Same forward pass: last-position logits. Measured: 3.9e-8 max abs (|logit| ≤ 2.7; RoPE's
    inverse frequencies are float32 on both sides, rounded differently by at most an ulp)."""
    *_, logits = setting
    for variant in harness.VARIANTS:
        np.testing.assert_allclose(lxt[variant]["logits_float64"], logits, rtol=0, atol=4e-7)


@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
def test_lxt_matching_composite_reproduces_lxt_gemma_in_float64(setting, lxt, variant):
    """Measured: per-token max rel 5.5e-9 (AttnLRP) and 8.5e-9 (CP-LRP, GeGLU gate detached as
    LXT does), rel L2 1.0e-8 / 1.6e-8, Σ R 6e-9 / 8e-9 (the logit difference above)."""
    composite = harness.lxt_matching_composite(variant)
    relevance, _, _ = _jaxlrp(setting, composite, "float64")
    _check(relevance, lxt[variant]["R_float64"], token_rel=1e-7, rel_l2=1e-7)


@pytest.mark.slow(reason="float32 repeats the float64 check at rounding level")
@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
def test_lxt_matching_composite_reproduces_lxt_gemma_in_float32(setting, lxt, variant):
    """float32 on both sides. Measured: per-token max rel 8.3e-8 (AttnLRP) and 4.8e-7 (CP), rel
    L2 4.8e-7 / 8.0e-7 (LXT's own float32 vs float64: 4.5e-8 / 2.6e-7 per token)."""
    composite = harness.lxt_matching_composite(variant)
    relevance, _, _ = _jaxlrp(setting, composite)
    _check(relevance, lxt[variant]["R_float32"], token_rel=5e-6, rel_l2=8e-6)


def test_attnlrp_defaults_differ_from_lxt_gemma_only_by_the_stabilizers(setting, lxt):
    """``AttnLRP()`` (ε = 1e-6, ``Norm(1e-6)``) against LXT's AttnLRP map, float32. Measured:
    per-token max rel 2.0e-5, rel L2 6.3e-5, Σ R 1.9e-5."""
    relevance, _, _ = _jaxlrp(setting, composites.AttnLRP())
    _check(relevance, lxt["attnlrp"]["R_float32"], token_rel=2e-4, rel_l2=5e-4)


def test_cplrp_defaults_differ_from_lxt_gemma_only_by_the_stabilizers(setting, lxt):
    """``CPLRP()`` (ε = 1e-6, ``Norm(1e-6)``) against LXT's CP map, float32. Measured:
    per-token max rel 5.7e-5, rel L2 1.4e-4, Σ R 6e-6."""
    relevance, _, _ = _jaxlrp(setting, composites.CPLRP())
    _check(relevance, lxt["cp"]["R_float32"], token_rel=2e-4, rel_l2=5e-4)


def test_a_uniform_split_of_the_geglu_gate_would_differ_from_lxt_cp(setting, lxt):
    """Splitting ``GELU(gate)·up`` uniformly (AttnLRP's product rule) under CP-LRP moves the
    per-token relevance by half of its largest value while both conserve the logit: the gated
    product matcher is what makes ``CPLRP()`` agree with LXT."""
    uniform = dataclasses.replace(composites.CPLRP(), product=rules.UniformProduct())
    relevance, _, _ = _jaxlrp(setting, uniform)
    measured = harness.agreement(relevance, lxt["cp"]["R_float32"])
    assert measured["token_max_rel"] > 0.1, measured
    assert measured["sum_rel"] < 1e-4, measured
    apart = harness.agreement(lxt["cp"]["R_float32"], lxt["attnlrp"]["R_float32"])
    assert apart["token_max_rel"] > 0.1, apart  # LXT's own two maps are far apart too
