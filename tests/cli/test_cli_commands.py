"""The ``jaxlrp`` command line: help, errors, ``composites`` and ``explain`` end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jaxlrp import composites
from jaxlrp.cli import main

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def chelsea_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("images") / "chelsea.png"
    PIL.fromarray(data.chelsea()).save(path)
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> Any:
    return subprocess.run([sys.executable, "-m", "jaxlrp", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)  # fmt: skip


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxlrp: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("argv", [["--help"], ["explain", "--help"], ["composites", "--help"],
                                  ["demo", "--help"]])  # fmt: skip
def test_help_everywhere_exits_zero(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: jaxlrp" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert "explain" in capsys.readouterr().out


def test_missing_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["explain", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png")])
    assert_clean_error(code, capsys.readouterr().err, "no such file", "nope.png")
    assert not (tmp_path / "o.png").exists()


def test_unreadable_image_is_a_one_line_error(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is not a picture")
    code = main(["explain", str(bad), "-o", str(tmp_path / "o.png")])
    assert_clean_error(code, capsys.readouterr().err, "cannot read image", "bad.jpg")


@pytest.mark.parametrize(
    ("option", "fragment"),
    [(["--model", "resnet99"], "unknown model 'resnet99'"),
     (["--composite", "epsilon-foo"], "unknown composite 'epsilon-foo'"),
     (["--target", "top0"], "invalid target"),
     (["--target", "1000"], "out of range"),
     (["--weights", "missing.pth"], "no such weights file")],
)  # fmt: skip
def test_bad_options_are_one_line_errors(option: list[str], fragment: str, chelsea_png: Path,
                                         capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    code = main(["explain", str(chelsea_png), *option])
    assert_clean_error(code, capsys.readouterr().err, fragment)


def test_unknown_model_lists_valid_ones(chelsea_png: Path, capsys: pytest.CaptureFixture) -> None:
    main(["explain", str(chelsea_png), "--model", "resnet99"])
    assert "efficientnet-lite0" in capsys.readouterr().err


def test_several_images_need_a_directory_or_pattern(chelsea_png: Path, tmp_path: Path,
                                                    capsys: Any) -> None:
    code = main(["explain", str(chelsea_png), str(chelsea_png), "-o", str(tmp_path / "one.png")])
    assert_clean_error(code, capsys.readouterr().err, "{stem}")


def test_directory_needs_batch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert_clean_error(main(["explain", str(tmp_path)]), capsys.readouterr().err, "--batch")


def test_composites_lists_every_preset_with_its_rules(capsys: pytest.CaptureFixture) -> None:
    assert main(["composites"]) == 0
    out = capsys.readouterr().out
    for name in composites.PRESETS:
        assert name in out
    assert "ZBox(low=low, high=high" in out
    assert "Gamma(gamma=0.25" in out
    assert "Flat(" in out and "AlphaBeta(alpha=2.0, beta=1.0" in out


def test_composites_unknown_name_is_an_error(capsys: pytest.CaptureFixture) -> None:
    assert_clean_error(main(["composites", "nope"]), capsys.readouterr().err, "unknown composite")


def test_module_entry_point_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = run_cli("explain", str(tmp_path / "missing.jpg"), timeout=120)
    assert result.returncode == 1
    assert_clean_error(result.returncode, result.stderr, "no such file")


def test_explain_chelsea_end_to_end(chelsea_png: Path, tmp_path: Path) -> None:
    """A real run: top-5 printed with names, a cat class on top, a 224x224 PNG heatmap."""
    out = tmp_path / "heat" / "chelsea_lrp.png"
    result = run_cli("explain", str(chelsea_png), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "explained class" in lines[0]
    top = [line for line in lines if line.strip()[:2] in {f"{k}." for k in range(1, 6)}]
    assert len(top) == 5
    top1 = int(top[0].rsplit("(", 1)[1].split(")")[0])
    assert 281 <= top1 <= 285, result.stdout
    with PIL.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (224, 224)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 5  # not a blank picture


@pytest.mark.slow
def test_explain_batch_of_a_directory_with_panels(chelsea_png: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    data = pytest.importorskip("skimage.data")
    PIL.fromarray(data.chelsea()).save(images / "cat.png")
    PIL.fromarray(data.coffee()).save(images / "coffee.jpg")
    PIL.fromarray(data.astronaut()).save(images / "astronaut.jpg")
    result = run_cli("explain", str(images), "--batch", "2", "--style", "panel", "-o",
                     str(tmp_path / "out") + "/", "--target", "top2", "--top", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["astronaut_panel.png", "cat_panel.png", "coffee_panel.png"]
    assert "3/3" in result.stderr  # the progress bar finished
