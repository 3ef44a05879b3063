"""The Flax all-MiniLM-L6-v2 reproduces sentence-transformers' sentence embeddings.

The reference is ``fixtures/minilm_sentence_embeddings.npz``, written once by
``make_fixture.py`` with ``sentence_transformers.SentenceTransformer`` on the packaged model
(its own mean pooling and L2 normalisation); this test only reads it, so it needs neither
torch nor sentence-transformers, only the weights package. Measured: cosine within 5e-8 of 1 for
every sentence, largest entry difference 1.5e-7 (float32); required: cosine ≥ 0.9999.
"""

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.models import info, load, mean_pool

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "minilm_sentence_embeddings.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return [str(s) for s in data["sentences"]], data["embeddings"]


def test_flax_minilm_reproduces_sentence_transformers_embeddings(reference):
    pytest.importorskip("safetensors", reason="reading model.safetensors needs safetensors")
    pytest.importorskip("tokenizers", reason="the MiniLM tokenizer needs tokenizers")
    try:
        module, variables = load("all-minilm-l6-v2", weights="pretrained")
        tokenizer = info("all-minilm-l6-v2").tokenizer
    except ImportError as err:
        pytest.skip(f"the MiniLM weights package is missing: {err}")
    sentences, expected = reference
    ids, mask = tokenizer(sentences)
    hidden = module.apply(variables, jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(mean_pool(hidden, mask), np.float64)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    assert ours.shape == expected.shape == (len(sentences), 384)
    cosine = np.sum(ours * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.all(cosine >= 0.9999), cosine
    np.testing.assert_allclose(ours, expected, atol=1e-5)
