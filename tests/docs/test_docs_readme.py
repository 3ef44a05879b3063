"""The README's usage example is short and its set-up commands are what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _block_after(heading: str, language: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _block_after("Tests (installs", "bash").strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_readme_usage_example_is_short_and_writes_a_picture():
    # It runs, with every other README block, in test_docs_code.py::test_page_code_runs_as_written
    # [README.md], which also checks what it writes and prints (README_OUTPUTS there).
    code = _block_after("## Usage", "python")
    assert len(code.strip().splitlines()) <= 12
    assert 'viz.save_png(viz.heatmap(relevance[0]), "chelsea_relevance.png")' in code
    assert "jaxlrp.print_rules(" in code
