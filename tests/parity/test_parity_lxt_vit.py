"""jaxlrp's CP-LRP and AttnLRP against LXT 2.1 (``lxt.efficient``) on a Vision Transformer:
torchvision's ``VisionTransformer`` with vit_tiny's configuration (32×32 images, 8×8 patches,
2 blocks of 4 heads, width 64) and every parameter random, loaded into jaxlrp's ``ViT`` from
the same state dict; two N(0, 1) images, each explained for its top class (see
``lxt_vit_harness.py``).

What LXT 2.1 can do with a ViT: ``lxt.efficient.models.vit_torch`` patches torchvision's
``vision_transformer`` (and nothing else for vision; transformers' ``ViTModel`` is not in its
map). Read from ``lxt/efficient/models/vit_torch.py``, ``patches.py`` and ``rules.py``, it is
gradient × input with three modifications, "AttnLRP outside the attention, CP-LRP inside":

* ``nn.MultiheadAttention``: ``query`` and ``key`` detached, so no gradient reaches the softmax
  and all relevance of ``A·v`` flows to ``v`` (jaxlrp ``CPLRP``: ``attention=SignalTakesAll``);
* ``nn.LayerNorm``: ``1/σ`` detached, centring, scale and shift by the gradient (jaxlrp: the
  ``SignalTakesAll`` norm rule; the centring's sums ``Norm``, scale/shift an affine layer);
* ``nn.GELU``: the gradient replaced by ``GELU(x)/(x + 1e-10)``, the identity rule (jaxlrp
  ``Pass``, exact: LXT's 1e-10 is the only difference left in float64);
* everything else, the plain gradient, i.e. LRP-0 without stabilizer: the patch convolution,
  ``in_proj``, ``out_proj``, the MLP, the head (jaxlrp's composites: ``Epsilon(1e-6)``), the
  residual sums (``Norm(1e-6)``), the position embeddings (``+ pos_embedding`` is an affine
  shift in jaxlrp; LRP-0 on it is the gradient's ``x ⊙ ∂``) and the class token (a constant on
  both sides: the relevance it receives is not passed to pixels).

LXT's ViT patch is a CP-LRP patch; for AttnLRP the harness replaces its attention patch with one
built from LXT's own ``divide_gradient`` rule (``q``, ``k`` /4 and ``v`` /2 at the attention's
inputs, the softmax's plain gradient), which is what LXT's Hugging Face attention wrapper does.
With ε = 0 and LRP-0 (``lxt_matching_composite``) jaxlrp is LXT to 3e-9 in float64 for both;
the defaults move the per-pixel relevance by 4e-4 of its largest value. LXT's CP and AttnLRP
differ by 0.55 per pixel: the agreement discriminates. The conventions are collected in
docs/lxt-parity.md.
"""

from __future__ import annotations

import concurrent.futures

import jax
import numpy as np
import pytest

pytest.importorskip("torch", reason="the LXT parity test needs torch (the 'parity' extra)")
pytest.importorskip("torchvision", reason="LXT's ViT patch is for torchvision's ViT")
pytest.importorskip("lxt", reason="the LXT parity test needs lxt (pip install lxt==2.1)")

import lxt_vit_harness as harness  # noqa: E402

from jaxlrp import composites  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def setting():
    """The state dict, the images and their top classes (from jaxlrp's forward pass)."""
    state, images = harness.random_state_dict(), harness.images()
    return state, images, harness.top_classes(state, images)


@pytest.fixture(scope="module")
def lxt(setting):
    """LXT's relevance (both variants, float64 and float32), computed in a child process while
    jaxlrp runs."""
    state, images, targets = setting
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        yield pool.submit(harness.lxt_relevance, state, images, targets)


def _check(relevance, expected, pixel_rel, rel_l2, corr):
    measured = harness.agreement(relevance, expected)
    assert measured["pixel_max_rel"] < pixel_rel, measured
    assert measured["rel_l2"] < rel_l2, measured
    assert 1 - measured["pixel_corr"] < corr, measured


@pytest.mark.parametrize("variant", harness.VARIANTS)
def test_lxt_matching_composite_reproduces_lxt_vit_in_float64(setting, lxt, variant):
    """Measured: per-pixel max rel 2.5e-9 (cp) and 3.0e-9 (attnlrp), rel L2 2.4e-9 / 2.7e-9,
    Σ R per image 5e-10 / 7e-10; logits agree to 3e-15."""
    state, images, targets = setting
    with jax.enable_x64(True):
        relevance, logits = harness.jaxlrp_relevance(
            state, images, targets, harness.lxt_matching_composite(variant), "float64"
        )
    expected = lxt.result()
    np.testing.assert_allclose(logits, expected["logits_float64"], rtol=1e-10, atol=1e-12)
    _check(relevance, expected[f"R_{variant}_float64"], pixel_rel=2e-8, rel_l2=2e-8, corr=1e-13)


@pytest.mark.slow(reason="float32 repeats the float64 check at rounding level (6 s each)")
@pytest.mark.parametrize("variant", harness.VARIANTS)
def test_lxt_matching_composite_reproduces_lxt_vit_in_float32(setting, lxt, variant):
    """float32 on both sides. Measured: per-pixel max rel 3.7e-7 (cp) and 4.4e-7 (attnlrp), rel
    L2 4.9e-7 / 5.0e-7 (LXT's own float32 vs float64: 8.1e-7 / 8.2e-7)."""
    state, images, targets = setting
    relevance, _ = harness.jaxlrp_relevance(state, images, targets,
                                            harness.lxt_matching_composite(variant))  # fmt: skip
    _check(relevance, lxt.result()[f"R_{variant}_float32"], pixel_rel=3e-6, rel_l2=3e-6,
           corr=1e-11)  # fmt: skip


def test_cplrp_defaults_differ_from_lxt_vit_only_by_the_stabilizers(setting, lxt):
    """``CPLRP()`` (ε = 1e-6 on the layers, ``Norm(1e-6)`` on the sums) against LXT's own ViT
    patch, float32. Measured: per-pixel max rel 3.7e-4, rel L2 4.1e-4, Σ R per image 6.5e-5
    (AttnLRP() against the AttnLRP patch: 3.5e-4, 3.9e-4, 5.9e-5)."""
    state, images, targets = setting
    relevance, _ = harness.jaxlrp_relevance(state, images, targets, composites.CPLRP())
    expected = lxt.result()
    _check(relevance, expected["R_cp_float32"], pixel_rel=2e-3, rel_l2=2e-3, corr=1e-6)
    # the comparison discriminates: LXT's two variants are far apart
    other = harness.agreement(expected["R_attnlrp_float32"], expected["R_cp_float32"])
    assert other["pixel_max_rel"] > 0.1 and other["rel_l2"] > 0.1, other
