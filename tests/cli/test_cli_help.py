"""``jaxlrp --help`` and each command's ``--help`` are plain text: the descriptions come from
reST docstrings, and no markup of theirs reaches the terminal."""

from __future__ import annotations

import re

import pytest

from jaxlrp import cli
from jaxlrp.cli import _plain, main

COMMANDS = [[], ["explain"], ["composites"], ["demo"], ["explain-text"]]
MARKUP = re.compile(r"``|`|:[a-z]+:`|::$|^\.\. ", re.MULTILINE)


def help_text(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv) or "jaxlrp")
def test_help_has_no_rest_markup(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    text = help_text(argv, capsys)
    assert MARKUP.search(text) is None, MARKUP.search(text)
    assert max(len(line) for line in text.splitlines()) <= 100


def test_top_level_help_shows_the_examples_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    text = help_text([], capsys)
    assert (
        "\n    jaxlrp explain photos/ --batch 8 -o 'out/{stem}_{ext}.png' --skip-errors\n" in text
    )
    assert 'print one line "jaxlrp: error: ..."' in text  # a literal with spaces is quoted


def test_explain_help_documents_outputs_overwrite_and_skip_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    text = " ".join(help_text(["explain"], capsys).split())
    for fragment in ["{stem} (the file name without its extension)", "{name} (the whole file "
                     "name)", "{ext} (the extension without the dot)", "--overwrite",
                     "the run stops before any work and names them", "--skip-errors",
                     "the exit status is then 1", "With --batch, jaxlrp.explain_dataset",
                     "counts images"]:  # fmt: skip
        assert fragment in text


def test_command_descriptions_are_their_docstrings() -> None:
    parser = cli.build_parser()
    explain = parser._subparsers._group_actions[0].choices["explain"]  # noqa: SLF001
    assert explain.description == _plain(cli._cmd_explain.__doc__)


def test_plain_removes_roles_and_literals_and_keeps_literal_blocks() -> None:
    doc = """Use :func:`jaxlrp.explain_dataset` or :class:`~jaxlrp.demo.Explanation`, ``--batch``
    and ``python -m jaxlrp``, `emphasis`. For example::

        jaxlrp explain a.png   # two  spaces kept

    - a list item that is long enough to wrap onto a second line at this width
    - a short one
    """
    assert _plain(doc, width=60) == (
        "Use jaxlrp.explain_dataset or Explanation, --batch and\n"
        '"python -m jaxlrp", emphasis. For example:\n'
        "\n"
        "    jaxlrp explain a.png   # two  spaces kept\n"
        "\n"
        "- a list item that is long enough to wrap onto a second line\n"
        "  at this width\n"
        "- a short one"
    )


@pytest.mark.parametrize(("text", "plain"), [("Text::", "Text:"), ("Text ::", "Text"),
                                              ("::", "")])  # fmt: skip
def test_plain_reads_double_colons_as_rest_does(text: str, plain: str) -> None:
    assert _plain(text) == plain
