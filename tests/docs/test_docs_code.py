"""Every ```python block of README.md and docs/**/*.md runs as written.

Per page, in order, in one fresh namespace, in a child process (a page may configure JAX) whose
working directory is a temporary folder. A failing block is reported with its page and line.
```py and ```bash blocks are display-only (code needing optional weights, GPUs or a shell).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_code import python_blocks  # beside this file (pytest puts tests/docs on sys.path)

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


def test_blocks_are_found_with_their_lines(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n```py\nnot run\n```\n- item\n\n"
                    "  ```python\n  y = x + 1\n  ```\n```bash\nls\n```\n")
    blocks = python_blocks(page)
    assert [(b.line, b.code) for b in blocks] == [(3, "x = 1\n"), (11, "y = x + 1\n")]


def test_unclosed_block_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        python_blocks(page)


def test_a_failing_block_names_its_page_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n```python\nassert x == 2\n```\n")
    result = _run(page, tmp_path)
    assert result.returncode == 1
    assert f"DOCS BLOCK FAILED: {page}:6" in result.stderr
    assert f'File "{page}", line 6' in result.stderr


def test_the_readme_and_the_guides_have_code():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES_WITH_CODE}
    assert {"README.md", "docs/guides/quickstart.md", "docs/guides/composites.md"} <= names


# What a page's code must leave behind: files written (PNG signature checked) and text printed.
README_OUTPUTS = {"files": ["chelsea_relevance.png"], "printed": ["ZBox", "(first)"]}
EXPECTED = {"README.md": README_OUTPUTS}


def _run(page: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Compiled eager calls, as users get them (tests/conftest.py turns them off for the suite).
    env = {**os.environ, "MPLBACKEND": "Agg", "JAXLRP_NO_CACHE": "1", "JAXLRP_COMPILE_EAGER": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs" / "markdown_code.py"), str(page)],
        cwd=cwd, capture_output=True, text=True, timeout=600, env=env,
    )


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_code_runs_as_written(page, tmp_path):
    result = _run(page, tmp_path)
    assert result.returncode == 0, (result.stdout[-1500:] + result.stderr[-4000:])
    expected = EXPECTED.get(page.relative_to(ROOT).as_posix(), {})
    for name in expected.get("files", []):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for text in expected.get("printed", []):
        assert text in result.stdout, f"{text!r} not printed by {page.name}"
