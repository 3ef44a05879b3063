"""The documentation site builds in strict mode (a warning fails) and offline.

CI runs only ``pytest`` (``.ci/run`` runs the README's test command verbatim), so the strict
``mkdocs build`` of issue 14 runs here. It needs the ``docs`` extra (part of ``test``).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_mkdocs_builds_strict_without_warnings(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs comes with the 'docs' extra (part of 'test')")
    pytest.importorskip("material", reason="mkdocs-material comes with the 'docs' extra")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python]: 'docs' extra")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # No network: proxies pointing nowhere make any download attempt fail loudly.
    env.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "WARNING" not in log, log[-4000:]
    # Every public module has an API page rendered from its docstrings.
    for page in ("jaxlrp", "rules", "composites", "attribution", "evaluate", "viz", "models",
                 "neuralize", "primitives", "errors"):
        html = (site / "api" / page / "index.html").read_text()
        assert 'class="doc doc-heading"' in html, f"api/{page}.md rendered no docstrings"
    api = (site / "api" / "jaxlrp" / "index.html").read_text()
    for name in ("explain.explain", "explain.lrp", "explain_dataset", "bilrp",
                 "explain_continuation", "recordable", "ledger.ledger"):
        assert f'id="jaxlrp.{name}"' in api, f"jaxlrp.{name} is missing from the API page"
    # reST roles are rewritten to Markdown by docs/_ext/rest_roles.py, never shown raw.
    assert ":func:" not in api and ":class:" not in api
