"""``jaxlrp explain`` never overwrites a file silently: output names that clash, outputs that
exist and inputs in the way are refused before any work; ``{name}``, ``{ext}`` and ``{parent}``
give every image its own output.

Runs that get as far as explaining use MNIST-CNN with random weights (28x28, compiles in about
a second); refusals are checked with the model loader replaced by a failure, which proves that
they come before any work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxlrp import cli
from jaxlrp.cli import CLIError, _output_paths, main

PIL = pytest.importorskip("PIL.Image")

TINY = ["--model", "mnist-cnn", "--weights", "random"]


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (40, 32)) -> Path:
    """A small random RGB picture (PNG or JPEG after the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    PIL.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/astronaut.jpg, photos/astronaut.png (same stem) and photos/camera.png."""
    folder = tmp_path / "photos"
    write_image(folder / "astronaut.jpg", 0)
    write_image(folder / "astronaut.png", 1)
    write_image(folder / "camera.png", 2)
    return folder


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the CLI gets as far as loading a model."""

    def fail(args: object) -> None:
        pytest.fail("the CLI loaded the model: the refusal did not come before the work")

    monkeypatch.setattr(cli.explain_images, "_make_explainer", fail)


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxlrp: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("batch", [["--batch"], []], ids=["batch", "one-by-one"])
def test_same_stem_is_refused_before_any_work_naming_both_inputs(
    batch: list[str], photos: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    inputs = [str(photos)] if batch else sorted(str(p) for p in photos.iterdir())
    code = main(["explain", *inputs, *batch, *TINY, "-o", f"{out}/{{stem}}.png"])
    assert code == 1
    error = one_line_error(capsys)
    assert f"{photos / 'astronaut.jpg'} and {photos / 'astronaut.png'} -> {out / 'astronaut.png'}" \
        in error  # fmt: skip
    assert "camera" not in error  # only the clashing images are named
    assert "{name}" in error and f"-o '{out}/{{stem}}_{{ext}}.png'" in error
    assert not out.exists()


def test_same_stem_in_a_directory_output_is_refused_too(
    photos: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    code = main(["explain", str(photos), "--batch", *TINY, "-o", f"{tmp_path}/out/"])
    assert code == 1
    error = one_line_error(capsys)
    assert f"-> {tmp_path / 'out' / 'astronaut_heatmap.png'}" in error
    assert f"-o '{tmp_path / 'out'}/{{stem}}_{{ext}}_heatmap.png'" in error


def test_same_file_name_in_two_folders_suggests_parent(
    tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    a = write_image(tmp_path / "cats" / "1.png")
    b = write_image(tmp_path / "dogs" / "1.png")
    assert main(["explain", str(a), str(b), *TINY, "-o", "out/{stem}.png"]) == 1
    error = one_line_error(capsys)
    assert "{parent}" in error and "-o 'out/{parent}_{stem}.png'" in error


def test_an_image_given_twice_is_named(
    photos: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    camera = str(photos / "camera.png")
    assert main(["explain", camera, camera, *TINY, "-o", "out/{stem}.png"]) == 1
    assert f"{camera} is given more than once" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("pattern", "written"),
    [("{stem}_{ext}.png", ["astronaut_jpg.png", "astronaut_png.png", "camera_png.png"]),
     ("{name}.png", ["astronaut.jpg.png", "astronaut.png.png", "camera.png.png"])],
)  # fmt: skip
def test_name_and_ext_placeholders_give_every_image_its_own_output(
    pattern: str, written: list[str], photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert (
        main(["explain", str(photos), "--batch", "2", *TINY, "-q", "-o", f"{out}/{pattern}"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == written
    pictures = [np.asarray(PIL.open(out / name)) for name in written]
    assert all(p.shape == (28, 28, 3) for p in pictures)  # MNIST-CNN's input size
    assert not np.array_equal(pictures[0], pictures[1])  # two different photos, two heatmaps


def test_output_paths_fill_every_placeholder() -> None:
    image = Path("shots/2024/cat.JPG")
    assert _output_paths([image], "o/{parent}-{stem}.{ext}.png", "heatmap") == \
        [Path("o/2024-cat.JPG.png")]  # fmt: skip
    assert _output_paths([image], "o/{name}", "heatmap") == [Path("o/cat.JPG")]


@pytest.mark.parametrize(("pattern", "fragment"),
                         [("o/{size}.png", "unknown placeholder {size}"),
                          ("o/{}.png", "the placeholders are {stem}, {name}, {ext}, {parent}"),
                          ("o/{stem.png", "the placeholders are")])  # fmt: skip
def test_bad_patterns_name_the_placeholders(pattern: str, fragment: str) -> None:
    with pytest.raises(CLIError, match="placeholder") as info:
        _output_paths([Path("cat.png")], pattern, "heatmap")
    assert fragment in str(info.value)


def test_an_existing_output_is_kept_unless_overwrite(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "camera_lrp.png"
    out.write_bytes(b"keep me")
    argv = ["explain", str(photos / "camera.png"), *TINY, "-o", str(out)]
    with monkeypatch.context() as patch:
        patch.setattr(cli.explain_images, "_make_explainer",
                      lambda args: pytest.fail("work was done"))
        assert main(argv) == 1
    error = one_line_error(capsys)
    assert f"{out} exists already" in error and "--overwrite" in error
    assert out.read_bytes() == b"keep me"

    assert main([*argv, "--overwrite", "-q"]) == 0
    with PIL.open(out) as picture:
        assert picture.format == "PNG" and picture.size == (28, 28)


def test_existing_outputs_are_counted(photos: Path, tmp_path: Path, no_work: None,
                                      capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    for name in ("astronaut_jpg.png", "camera_png.png"):
        (out / name).write_bytes(b"old")
    assert (
        main(["explain", str(photos), "--batch", *TINY, "-o", f"{out}/{{stem}}_{{ext}}.png"]) == 1
    )
    error = one_line_error(capsys)
    assert f"{out / 'astronaut_jpg.png'} exists already (and 1 more of the 3 outputs)" in error


def test_an_input_image_is_never_written_over(photos: Path, no_work: None,
                                              capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    camera = photos / "camera.png"
    before = camera.read_bytes()
    code = main(["explain", str(camera), *TINY, "-o", f"{photos}/{{stem}}.png", "--overwrite"])
    assert code == 1
    assert f"would write over the input image {camera}" in one_line_error(capsys)
    assert camera.read_bytes() == before
