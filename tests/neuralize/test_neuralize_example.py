"""``examples/explain_clusters.py`` runs as written (offline: the digits ship with scikit-learn)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "explain_clusters.py"


def test_explain_clusters_writes_its_figure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("explain_clusters", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path = example.main(["--out", str(tmp_path / "figures"), "--samples", "2", "--n-init", "1"])
    assert path == tmp_path / "figures" / "explain_clusters.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "conservation: max |sum of pixel relevance - cluster evidence|" in printed
    assert printed.count("nearest competitor") == 2
