"""Token-pair relevance rendered as an HTML table, a terminal table and a matplotlib figure."""

import re

import numpy as np
import pytest

from jaxlrp.viz import pairs

TOKENS_A = ["[CLS]", "eating", "<food>"]
TOKENS_B = ["eating", "bread"]
MATRIX = np.array([[0.0, 0.1], [2.0, -0.5], [0.8, 1.0]])


def test_top_pairs_lists_the_strongest_first():
    top = pairs.top_pairs(TOKENS_A, TOKENS_B, MATRIX, k=3)
    assert [(i, j, a, b) for i, j, a, b, _ in top] == [
        (1, 0, "eating", "eating"), (2, 1, "<food>", "bread"), (2, 0, "<food>", "eating")]
    assert top[0][4] == 2.0
    by_abs = pairs.top_pairs(TOKENS_A, TOKENS_B, MATRIX, k=4, by="abs")
    assert (by_abs[3][0], by_abs[3][1]) == (1, 1)  # |-0.5| beats 0.1 and 0.0


def test_html_table_has_a_coloured_cell_per_pair_and_escapes_tokens():
    out = pairs.pairs_to_html(TOKENS_A, TOKENS_B, MATRIX)
    assert out.count("<tr>") == 1 + len(TOKENS_A)
    cells = re.findall(r'<td style="background-color: rgb\((\d+), (\d+), (\d+)\)', out)
    assert len(cells) == MATRIX.size
    assert tuple(map(int, cells[2])) == (255, 0, 0)  # the largest value: full red on bwr
    assert tuple(map(int, cells[3]))[2] == 255 and tuple(map(int, cells[3]))[0] < 255  # negative
    assert "&lt;food&gt;" in out and "<food>" not in out
    assert 'title="2"' in out


def test_ansi_table_has_a_header_and_a_line_per_row():
    out = pairs.pairs_to_ansi(TOKENS_A, TOKENS_B, MATRIX)
    lines = out.split("\n")
    assert len(lines) == 1 + len(TOKENS_A)
    assert "eating" in lines[0] and "bread" in lines[0]
    assert lines[2].startswith("eating") and "\x1b[48;2;255;0;0m" in lines[2]
    assert lines[2].count("\x1b[0m") == len(TOKENS_B)


def test_figure_is_written_as_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "pairs.png"
    fig = pairs.pairs_figure(TOKENS_A, TOKENS_B, MATRIX, title="s = 3.4", path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax, _colorbar) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS_A


def test_a_matrix_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"needs shape \(3, 2\)"):
        pairs.pairs_to_html(TOKENS_A, TOKENS_B, MATRIX.T)
