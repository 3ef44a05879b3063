"""AttnLRP and CP-LRP on the real all-MiniLM-L6-v2 weights: the rules are found in the traced
program (no BERT-specific code) and CP-LRP conserves relevance block by block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites
from jaxlrp.models import info, load
from jaxlrp.models.bert import BertEmbeddings, BertLayer

SENTENCE = "A man is eating a piece of bread."


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("safetensors", reason="reading model.safetensors needs safetensors")
    pytest.importorskip("tokenizers", reason="the MiniLM tokenizer needs tokenizers")
    try:
        module, variables = load("all-minilm-l6-v2", weights="pretrained")
        ids = jnp.asarray(info("all-minilm-l6-v2").tokenizer.encode(SENTENCE))[None]
    except ImportError as err:
        pytest.skip(str(err))
    return module, variables, ids


def _blocks(module, params, ids):
    """The hidden state entering every block, and a function running blocks k.. on it."""
    config = module.config
    emb = module.apply({"params": params}, ids, method="embed_tokens")
    h = BertEmbeddings(config).apply({"params": params["embeddings"]}, emb,
                                     jnp.zeros(ids.shape, jnp.int32))  # fmt: skip
    probe = jax.random.normal(jax.random.PRNGKey(0), (config.hidden_size, 1))

    def run(k, x):
        for j in range(k, config.num_hidden_layers):
            x = BertLayer(config).apply({"params": params["encoder"][f"layer_{j}"]}, x, None)
        return x.mean(1) @ probe  # a linear probe of the mean-pooled sentence embedding

    states = [h]
    for j in range(config.num_hidden_layers):
        states.append(BertLayer(config).apply({"params": params["encoder"][f"layer_{j}"]},
                                              states[-1], None))  # fmt: skip
    return states, run


def test_rules_are_found_in_the_traced_bert(minilm):
    module, variables, ids = minilm
    emb = module.apply(variables, ids, method="embed_tokens")
    table = jaxlrp.rule_table(lambda e: module.apply(variables, e, method="from_embeddings"),
                              emb, composite=composites.AttnLRP())  # fmt: skip
    # 6 blocks: one softmax and one attention product each; 13 LayerNorms (embeddings + 2/block)
    assert "6 softmax node(s): TaylorAtInput()" in table
    assert "6 attention node(s): UniformProduct()" in table
    assert "13 norm node(s): SignalTakesAll()" in table


def test_cplrp_conserves_relevance_block_by_block(minilm):
    """With the biases set to zero (they absorb relevance by design), Σ R entering each block
    equals Σ R leaving it. Measured: largest relative step 1.8e-5 (float32, ε = 1e-6)."""
    module, variables, ids = minilm
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.zeros_like(v) if "bias" in jax.tree_util.keystr(p) else v,
        variables["params"],
    )
    states, run = _blocks(module, params, ids)
    n = module.config.num_hidden_layers
    cp = composites.CPLRP()
    sums = [float(jaxlrp.explain(lambda x, k=k: run(k, x), states[k], target=0, composite=cp)
                  .sum()) for k in range(n)]  # fmt: skip
    sums.append(float(run(n, states[n])[0, 0]))
    steps = [abs(a - b) / abs(b) for a, b in zip(sums[:-1], sums[1:], strict=True)]
    assert max(steps) < 1e-4, sums


@pytest.mark.parametrize("name", ["AttnLRP", "CPLRP"])
def test_relevance_per_token_on_real_weights_is_finite_and_concentrated(minilm, name):
    module, variables, ids = minilm
    emb = module.apply(variables, ids, method="embed_tokens")
    probe = jax.random.normal(jax.random.PRNGKey(0), (module.config.hidden_size, 1))

    def sentence_probe(e):
        return module.apply(variables, e, method="from_embeddings").mean(1) @ probe

    relevance = jaxlrp.explain(sentence_probe, emb, target=0,
                               composite=getattr(composites, name)())  # fmt: skip
    per_token = np.asarray(relevance.sum(-1))[0]
    assert per_token.shape == (ids.shape[1],) and np.all(np.isfinite(per_token))
    assert np.abs(per_token).max() > 0.2 * np.abs(per_token).sum()  # not spread uniformly
