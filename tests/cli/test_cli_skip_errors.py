"""``jaxlrp explain``: unreadable images stop the run with a clear message, or, with
``--skip-errors``, are skipped and listed at the end (exit status 1); the ``--batch`` progress
bar counts images, not batches.

MNIST-CNN with random weights keeps every run to a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxlrp import cli
from jaxlrp.cli import main

PIL = pytest.importorskip("PIL.Image")

TINY = ["--model", "mnist-cnn", "--weights", "random"]
NOT_AN_IMAGE = "not an image file (Pillow cannot identify its format)"


def write_image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    PIL.fromarray(pixels).save(path)
    return path


def write_truncated_png(path: Path) -> Path:
    """A PNG cut in half: the header reads, the pixel data does not."""
    write_image(path, 9)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with PIL.open(path) as image:  # the header still reads as an image ...
        assert image.size == (40, 48)
    with pytest.raises(OSError, match="truncated"), PIL.open(path) as image:  # ... the data not
        image.load()
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """a.png and b.jpg (good), cut.png (truncated), notes.jpg (text), in sorted order."""
    folder = tmp_path / "photos"
    write_image(folder / "a.png", 0)
    write_image(folder / "b.jpg", 1)
    write_truncated_png(folder / "cut.png")
    (folder / "notes.jpg").write_text("these are not pixels")
    return folder


def summary(err: str) -> list[str]:
    """The lines of the skipped-files summary at the end of stderr."""
    lines = err.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("jaxlrp: skipped "))
    return lines[start:]


@pytest.mark.parametrize("batch", [["--batch", "2"], []], ids=["batch", "one-by-one"])
def test_skip_errors_explains_the_rest_and_lists_every_skipped_file(
    batch: list[str], mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    inputs = [str(mixed)] if batch else sorted(str(p) for p in mixed.iterdir())
    code = main(["explain", *inputs, *batch, *TINY, "--skip-errors", "-o", f"{out}/"])
    captured = capsys.readouterr()
    assert code == 1  # something was skipped
    assert sorted(p.name for p in out.iterdir()) == ["a_heatmap.png", "b_heatmap.png"]
    assert summary(captured.err) == [
        "jaxlrp: skipped 2 of 4 images:",
        f"  {mixed / 'notes.jpg'}: {NOT_AN_IMAGE}",
        f"  {mixed / 'cut.png'}: image file is truncated",
    ]
    assert "Traceback" not in captured.err
    assert f"{mixed / 'a.png'}: explained class" in captured.out
    assert "2 of 4 images explained" in captured.out


def test_skip_errors_with_nothing_skipped_exits_zero(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = [str(mixed / "a.png"), str(mixed / "b.jpg")]
    assert main(["explain", *good, *TINY, "--skip-errors", "-q", "-o", f"{tmp_path}/"]) == 0
    assert capsys.readouterr().err == ""


def test_an_unreadable_file_stops_the_run_before_any_work(
    mixed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(cli.explain_images, "_make_explainer",
                        lambda args: pytest.fail("work was done"))
    assert main(["explain", str(mixed), "--batch", *TINY, "-o", "out/"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"jaxlrp: error: cannot read image {mixed / 'notes.jpg'}: {NOT_AN_IMAGE}; use "
        "--skip-errors to skip it"
    )


@pytest.mark.parametrize("batch", [["--batch", "2"], []], ids=["batch", "one-by-one"])
def test_a_truncated_file_stops_the_run_naming_it(
    batch: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "photos"
    first = write_image(folder / "a.png", 0)
    cut = write_truncated_png(folder / "cut.png")
    write_image(folder / "z.png", 2)
    inputs = [str(folder)] if batch else [str(first), str(cut), str(folder / "z.png")]
    out = tmp_path / "out"
    assert main(["explain", *inputs, *batch, *TINY, "-q", "-o", f"{out}/"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"jaxlrp: error: cannot read image {cut}: image file is truncated; use --skip-errors "
        "to skip it"
    )
    assert not (out / "z_heatmap.png").exists()  # the run stopped at cut.png


def test_only_unreadable_files_is_a_summary_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(cli.explain_images, "_make_explainer",
                        lambda args: pytest.fail("nothing to explain"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x00" * 64)
    assert main(["explain", str(bad), *TINY, "--skip-errors", "-o", f"{tmp_path}/out/"]) == 1
    assert summary(capsys.readouterr().err) == [
        "jaxlrp: skipped 1 of 1 images:",
        f"  {bad}: {NOT_AN_IMAGE}",
    ]
    assert not (tmp_path / "out").exists()


def test_batch_progress_counts_images_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Three images in batches of two: a bar counting batches would jump from 0/3 to 2/3."""
    pytest.importorskip("tqdm")
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # draw every update, however fast
    folder = tmp_path / "photos"
    for k, name in enumerate(["a.png", "b.png", "c.png"]):
        write_image(folder / name, k)
    assert main(["explain", str(folder), "--batch", "2", *TINY, "-o", f"{tmp_path}/out/"]) == 0
    err = capsys.readouterr().err
    states = [part.split("|")[-1] for part in err.replace("\r", "\n").splitlines() if "/3" in part]
    counts = [state.split("/3")[0].strip() for state in states]
    assert {"0", "1", "2", "3"} <= set(counts), err
    assert "b.png" in err  # the bar names the image it is at
