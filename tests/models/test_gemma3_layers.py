"""Per-layer token relevance of Gemma 3 (``gemma3_layers.explain_layers``: ``record=`` at every
block's output), on a tiny random model (3 blocks: two sliding-window, one global; every RMSNorm
multiplier random), in float64 so that the checks are at rounding level.

Specifications checked, each against something computed another way:

* CP-LRP without stabilizers is conservative and Gemma has no biases, so every block's row sums
  to the explained logit, as does the input relevance (measured: 2e-16 relative);
* the relevance recorded at block ``l``'s output is the relevance of the *input* of the model cut
  there (blocks ``l+1 …``, final norm, unembedding), explained on its own from block ``l``'s
  hidden states (LRP is local: measured 6e-16 relative, AttnLRP and CP-LRP);
* the last block's row is zero except at the last position, which alone reaches the logit;
* under AttnLRP the rows differ from block to block (the softmax is not conservative), so the
  conservation check above is not vacuous.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites
from jaxlrp.models import Gemma3, Gemma3Config
from jaxlrp.models.gemma3_layers import LayerRelevance, explain_layers

TINY = Gemma3Config(
    vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
    sliding_window_pattern=3, query_pre_attn_scalar=16.0,
)  # fmt: skip
SEQ = 9


def _exact(base):
    """``base`` (AttnLRP or CPLRP) with ε = 0 and no stabilizer on the sums."""
    return base(epsilon=0.0, stabilizer=0.0)


@pytest.fixture(scope="module")
def model():
    """The float64 tiny model, random ``N(0, 1/fan_in)`` weights, norm multipliers U(0.7, 1.3),
    and a prompt of random ids (``<bos>`` first); the explained token is the top one."""
    with jax.enable_x64(True):
        module = Gemma3(TINY, dtype=jnp.float64)
        ids = np.random.default_rng(1).integers(3, TINY.vocab_size, (1, SEQ)).astype(np.int32)
        ids[0, 0] = 2
        template = jax.eval_shape(module.init, jax.random.key(0), jnp.asarray(ids))
        rng = np.random.default_rng(0)

        def draw(path, leaf):
            name = path[-1].key
            if name == "scale":
                return jnp.asarray(rng.uniform(0.7, 1.3, leaf.shape))
            fan_in = leaf.shape[-1] if name == "embedding" else leaf.shape[0]
            return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in))

        variables = jax.tree_util.tree_map_with_path(draw, template)
        logits = module.apply(variables, jnp.asarray(ids))[0, -1]
        yield module, variables, ids, int(jnp.argmax(logits)), float(logits.max())


def _layers(model, composite) -> LayerRelevance:
    module, variables, ids, target, _ = model
    with jax.enable_x64(True):
        return jax.tree_util.tree_map(
            np.asarray, explain_layers(module, variables, ids, target, composite)
        )


def test_every_block_row_sums_to_the_logit_under_exact_cplrp(model):
    """Measured: max relative deviation of a row sum from the logit 2.2e-16 (input: 0)."""
    *_, logit = model
    result = _layers(model, _exact(composites.CPLRP))
    assert result.blocks.shape == (1, TINY.num_hidden_layers, SEQ)
    assert result.input.shape == (1, SEQ)
    np.testing.assert_allclose(result.logits, [logit], rtol=1e-12)
    np.testing.assert_allclose(result.blocks.sum(-1), logit, rtol=1e-13)
    np.testing.assert_allclose(result.input.sum(-1), logit, rtol=1e-13)


def test_the_last_block_passes_relevance_only_at_the_last_position(model):
    result = _layers(model, composites.AttnLRP())
    np.testing.assert_array_equal(result.blocks[0, -1, :-1], 0.0)
    assert result.blocks[0, -1, -1] != 0.0


def test_attnlrp_rows_change_at_the_softmax_so_conservation_is_not_vacuous(model):
    """AttnLRP's softmax rule is not conservative: the block sums differ (1.65, 1.97, 2.02 for
    a logit of 2.02; the input 1.56)."""
    sums = _layers(model, _exact(composites.AttnLRP)).blocks.sum(-1)[0]
    assert np.ptp(sums) > 0.05 * np.abs(sums).max(), sums


@pytest.mark.parametrize(
    "base",
    [pytest.param(composites.AttnLRP, marks=pytest.mark.slow), composites.CPLRP],
    ids=["AttnLRP", "CPLRP"],
)
def test_block_rows_equal_the_input_relevance_of_the_model_cut_there(model, base):
    """Row ``l`` from ``record=`` against ``jaxlrp.explain`` of blocks ``l+1 …`` + norm +
    unembedding w.r.t. block ``l``'s hidden states (no recording). Measured: 6e-16 of the largest
    token relevance."""
    module, variables, ids, target, _ = model
    composite = _exact(base)
    result = _layers(model, composite)
    with jax.enable_x64(True):
        for layer in range(TINY.num_hidden_layers):

            def head(m, token_ids, layer=layer):
                x = m.embed(token_ids)
                for block in m.layers[: layer + 1]:
                    x = block(x)
                return x

            def tail(variables, hidden, layer=layer):
                def run(m, x):
                    for block in m.layers[layer + 1 :]:
                        x = block(x)
                    return m.unembed(m.norm(x)[:, -1])

                return module.apply(variables, hidden, method=run)

            hidden = module.apply(variables, jnp.asarray(ids), method=head)
            cut = jaxlrp.explain(tail, variables, hidden, target=target, composite=composite)
            expected = np.asarray(cut).sum(-1)
            scale = np.abs(expected).max()
            np.testing.assert_allclose(result.blocks[:, layer], expected, rtol=0,
                                       atol=1e-13 * scale)  # fmt: skip


def test_unbatched_ids_give_unbatched_rows_and_bad_shapes_are_refused(model):
    module, variables, ids, target, _ = model
    with jax.enable_x64(True):
        single = explain_layers(module, variables, ids[0], target, composites.CPLRP())
        batched = explain_layers(module, variables, ids, target, composites.CPLRP())
        assert single.blocks.shape == (TINY.num_hidden_layers, SEQ)
        np.testing.assert_allclose(single.blocks, batched.blocks[0], rtol=1e-12)
        with pytest.raises(ValueError, match="token_ids must be"):
            explain_layers(module, variables, ids[None], target)


def test_record_keys_name_the_block_outputs(model):
    """``block_output_key`` names a recordable unit of the traced model for every block."""
    from jaxlrp.models.gemma3_layers import _last_position_logits, block_output_key

    module, variables, ids, _, _ = model
    with jax.enable_x64(True):
        keys = jaxlrp.recordable(_last_position_logits(module), variables, jnp.asarray(ids))
    wanted = [block_output_key(i) for i in range(TINY.num_hidden_layers)]
    assert set(wanted) <= set(keys), sorted(k for k in keys if k.count("/") == 1)
