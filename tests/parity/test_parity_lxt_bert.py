"""jaxlrp's AttnLRP against LXT 2.1 (the authors' PyTorch AttnLRP, ``lxt.efficient``) on the
real all-MiniLM-L6-v2 weights: relevance of the word embeddings for a probe of the mean-pooled
last hidden state, on a padded batch of two sentences (see ``lxt_harness.py``).

What LXT's efficient BERT patch computes, rule by rule (read from ``lxt/efficient/rules.py``,
``patches.py`` and ``models/bert.py``): it is gradient × input with three gradients modified.

* linear layers: the plain gradient, i.e. LRP-0 with ε = 0 (jaxlrp ``AttnLRP()``:
  ``Epsilon(1e-6)``);
* LayerNorm: ``1/σ`` detached; the centring, scale and shift by the gradient, LRP-0 (jaxlrp:
  ``1/σ`` held constant, the centring's sums ``Norm(1e-6)``, scale/shift ``Epsilon(1e-6)``);
* residual and embedding sums: the gradient, no stabilizer (jaxlrp: ``Norm(1e-6)``, and
  ``Epsilon(1e-6)`` for ``e + position + token type``, an affine layer: its shift is constant);
* softmax: the plain gradient, which is the Taylor rule at the input (``TaylorAtInput``);
* ``q·kᵀ`` and ``A·v``: the gradient halved, the uniform rule (``UniformProduct``);
* GELU: the gradient replaced by ``GELU(x)/(x + 1e-10)``, the identity rule (``Pass``, exact);
* attention mask: added to the scaled scores, gradient through it, so padded keys get none
  (jaxlrp: the shift of the affine layer ``scores/√d + mask``; none either).

So ``AttnLRP(epsilon=0, stabilizer=0)`` with LRP-0 on the layers (``lxt_matching_composite``)
is LXT exactly: measured, float64, per-token max relative error 2.7e-8 and feature-wise
relative L2 error 2.4e-7, all of it LXT's ``1e-10`` in GELU (with it set to 0 the two agree to
1e-15). The defaults (ε = 1e-6, zennit's stabilizer convention) move the per-token relevance by
6e-4 of its largest value. LXT's eager and SDPA attention give the same relevance (1e-15).
As a check that these numbers discriminate: CP-LRP differs from LXT by 0.59 per token and
``softmax=Pass()`` by 0.35.
"""

from __future__ import annotations

import concurrent.futures

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("torch", reason="the LXT parity test needs torch (the 'parity' extra)")
transformers = pytest.importorskip(
    "transformers", reason="the LXT parity test needs transformers 4.x"
)
pytest.importorskip("lxt", reason="the LXT parity test needs lxt (pip install lxt==2.1)")
pytest.importorskip("safetensors", reason="reading model.safetensors needs safetensors")
pytest.importorskip("tokenizers", reason="the MiniLM tokenizer needs tokenizers")
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip(
        "lxt 2.1's BERT patch needs transformers 4.x (it imports modeling_attn_mask_utils)",
        allow_module_level=True,
    )

import lxt_harness as harness  # noqa: E402

from jaxlrp import composites  # noqa: E402
from jaxlrp.models import info, load  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def setting():
    """The model, the padded batch and the probe; skips without the weights package."""
    try:
        module, variables = load("all-minilm-l6-v2", weights="pretrained")
        ids, mask = info("all-minilm-l6-v2").tokenizer(harness.SENTENCES)
    except ImportError as err:
        pytest.skip(str(err))
    assert not mask.all()  # the second sentence is padded: the mask is part of the comparison
    return module, variables, ids, mask, harness.probe_vector()


@pytest.fixture(scope="module")
def lxt(setting):
    """LXT's relevance (float64 and float32), computed in a child process while jaxlrp runs."""
    _, _, ids, mask, probe = setting
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        yield pool.submit(harness.lxt_relevance, ids, mask, probe)


def _check(relevance, expected, mask, token_rel, feature_rel, corr):
    real = mask.astype(bool)
    measured = harness.agreement(relevance[real][None], expected[real][None])
    assert measured["token_max_rel"] < token_rel, measured
    assert measured["rel_l2"] < feature_rel, measured
    assert 1 - measured["token_corr"] < corr, measured
    # Padded tokens are not attended and not pooled: no relevance on either side.
    assert np.abs(expected[~real]).max() == 0
    assert np.abs(relevance[~real]).max() == 0


def test_attnlrp_with_lxt_stabilizers_reproduces_lxt_in_float64(setting, lxt):
    """Measured: per-token max rel 2.7e-8, feature rel L2 2.4e-7, 1 − corr 6e-16; y agrees to
    7e-16 (the forward passes are the same function)."""
    module, variables, ids, mask, probe = setting
    with jax.enable_x64(True):
        variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), variables)
        relevance, y = harness.jaxlrp_relevance(
            module, variables, ids, mask, probe, harness.lxt_matching_composite()
        )
    expected = lxt.result()
    np.testing.assert_allclose(y, expected["y_float64"], rtol=1e-10)
    _check(relevance, expected["R_float64"], mask, token_rel=2e-7, feature_rel=1e-6, corr=1e-13)


def test_attnlrp_with_lxt_stabilizers_reproduces_lxt_in_float32(setting, lxt):
    """float32 on both sides. Measured: per-token max rel 5.8e-7, feature rel L2 1.05e-6,
    1 − corr 3e-13 (LXT's own float32 vs float64 error: 4.1e-7, 8.4e-7)."""
    module, variables, ids, mask, probe = setting
    relevance, _ = harness.jaxlrp_relevance(
        module, variables, ids, mask, probe.astype(np.float32), harness.lxt_matching_composite()
    )
    _check(relevance, lxt.result()["R_float32"], mask, token_rel=3e-6, feature_rel=5e-6,
           corr=1e-11)  # fmt: skip


def test_attnlrp_defaults_differ_from_lxt_only_by_the_stabilizers(setting, lxt):
    """``AttnLRP()`` (ε = 1e-6 on the layers, ``Norm(1e-6)`` on the sums), float32 both sides.

    Measured: per-token max rel 6.3e-4, feature rel L2 2.7e-3, 1 − corr 3.4e-7. The shares, each
    alone on top of the LXT-matching composite (float64): ``Norm(1e-6)`` 6.0e-4, ε on the dense
    layers 5.7e-4, ε on the affine layers (LayerNorm scale/shift, embedding sum) 4.0e-4.
    """
    module, variables, ids, mask, probe = setting
    relevance, _ = harness.jaxlrp_relevance(
        module, variables, ids, mask, probe.astype(np.float32), composites.AttnLRP()
    )
    _check(relevance, lxt.result()["R_float32"], mask, token_rel=2e-3, feature_rel=1e-2,
           corr=2e-6)  # fmt: skip
