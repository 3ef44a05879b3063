"""Specification of token relevance rendered as HTML and ANSI text."""

import re

import numpy as np
import pytest

from jaxlrp.viz import tokens_to_ansi, tokens_to_html

TOKENS = ["The", "<cat>", "&", "sat"]
RELEVANCE = np.array([0.0, 2.0, -2.0, 1.0])
BACKGROUND = re.compile(r"background-color: rgb\((\d+), (\d+), (\d+)\)")


def _backgrounds(html):
    return [tuple(int(c) for c in m) for m in BACKGROUND.findall(html)]


def test_html_has_one_span_per_token_with_escaped_text():
    html = tokens_to_html(TOKENS, RELEVANCE)
    assert html.count("<span") == len(TOKENS) == html.count("</span>")
    assert "&lt;cat&gt;" in html and "<cat>" not in html
    assert ">&amp;</span>" in html


def test_html_colours_are_symmetric_around_white_under_bwr():
    colours = _backgrounds(tokens_to_html(TOKENS, RELEVANCE))
    assert colours == [(255, 255, 255), (255, 0, 0), (0, 0, 255), (255, 128, 128)]


def test_html_title_attribute_carries_the_relevance_value():
    html = tokens_to_html(["a", "b"], [0.125, -3.5])
    assert 'title="0.125"' in html and 'title="-3.5"' in html


def test_html_escapes_quotes_in_tokens():
    html = tokens_to_html(['say "hi"'], [1.0])
    assert "&quot;hi&quot;" in html


def test_html_accepts_other_colour_maps_and_embedding_relevance():
    html = tokens_to_html(["x", "y"], np.array([[1.0, 1.0], [0.0, 0.0]]), cmap="coldnhot")
    assert _backgrounds(html) == [(255, 255, 0), (0, 0, 0)]


def test_ansi_contains_true_colour_escapes_and_the_tokens():
    text = tokens_to_ansi(TOKENS, RELEVANCE)
    assert text.count("\x1b[48;2;") == len(TOKENS)
    assert "\x1b[48;2;255;0;0m" in text and "\x1b[48;2;0;0;255m" in text
    assert text.count("\x1b[0m") == len(TOKENS)
    for token in TOKENS:
        assert token in text
    stripped = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert stripped == " ".join(TOKENS)


@pytest.mark.parametrize("render", [tokens_to_html, tokens_to_ansi])
def test_mismatched_token_and_relevance_lengths_are_rejected(render):
    with pytest.raises(ValueError, match="3 tokens but 2 relevance"):
        render(["a", "b", "c"], [1.0, 2.0])


@pytest.mark.parametrize("render", [tokens_to_html, tokens_to_ansi])
def test_unknown_colour_map_is_rejected_naming_the_valid_ones(render):
    with pytest.raises(ValueError, match="valid ones are bwr"):
        render(["a"], [1.0], cmap="rainbowish")
