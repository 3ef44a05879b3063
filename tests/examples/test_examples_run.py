"""Every example runs as written, offline, and writes its figures to ``--out``.

Examples that need Fashion-MNIST (the Debian package ``dataset-fashion-mnist``, which the test
command cannot install from PyPI) skip with a reason naming the package when it is absent;
``.ci/run`` installs it with apt-get where it can, so CI runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("skimage")
sys.path.insert(0, str(EXAMPLES))
import fashion_mnist_model  # noqa: E402 - the examples' data loader


def require_fashion_mnist() -> None:
    """Skip, naming the Debian package, when Fashion-MNIST is not on this machine."""
    if fashion_mnist_model.missing_files():
        pytest.skip(f"needs the Debian package {fashion_mnist_model.DEBIAN_PACKAGE}: "
                    f"{fashion_mnist_model.missing_message()}")  # fmt: skip


def run_example(name: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
                expect: int = 0) -> subprocess.CompletedProcess:  # fmt: skip
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                            text=True, cwd=cwd, timeout=900, env=env)  # fmt: skip
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file(), path
    with PIL.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.slow
def test_demo_writes_three_rows_with_cat_class(tmp_path: Path) -> None:
    result = run_example("demo.py", "-o", str(tmp_path / "heatmaps.png"), cwd=tmp_path)
    width, height = assert_png(tmp_path / "heatmaps.png")
    assert width > 600 and height > 600
    chelsea = result.stdout.split("chelsea: top-5")[1].splitlines()[1]
    assert any(f"({k})" in chelsea for k in range(281, 286)), result.stdout
    assert "(967)" in result.stdout.split("coffee: top-5")[1].splitlines()[1]


@pytest.mark.slow
def test_imagenet_heatmaps(tmp_path: Path) -> None:
    result = run_example("imagenet_heatmaps.py", "--out", str(tmp_path / "figs"), cwd=tmp_path)
    assert_png(tmp_path / "figs" / "imagenet_heatmaps.png")
    for name in ("EpsilonGammaBox", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat", "DepthRecipe"):
        assert name in result.stdout


def test_fashion_mnist_tests_skip_naming_the_package_when_the_data_are_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(pytest.skip.Exception, match="dataset-fashion-mnist"):
        require_fashion_mnist()
    with pytest.raises(fashion_mnist_model.FashionMNISTMissing, match="dataset-fashion-mnist"):
        fashion_mnist_model.load_fashion_mnist()


def test_fashion_mnist_is_found_where_the_variable_points(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in fashion_mnist_model.FILES:
        (tmp_path / name).touch()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    assert fashion_mnist_model.missing_files() == []
    require_fashion_mnist()  # does not skip


@pytest.mark.parametrize("example", ["fashion_mnist.py", "fashion_mnist_model.py"])
def test_fashion_mnist_examples_stop_with_a_clear_message_when_the_data_are_absent(
    example: str, tmp_path: Path
) -> None:
    env = {**os.environ, "FASHION_MNIST_DIR": str(tmp_path / "absent")}
    result = run_example(example, "--help", cwd=tmp_path, env=env)  # --help needs no data
    assert "usage" in result.stdout
    result = run_example(example, cwd=tmp_path, env=env, expect=fashion_mnist_model.EXIT_NO_DATA)
    assert "dataset-fashion-mnist" in result.stderr
    assert "Traceback" not in result.stderr


def test_examples_other_than_fashion_mnist_do_not_read_the_debian_data() -> None:
    """Only the Fashion-MNIST examples (whose tests skip without it) may need the package."""
    allowed = {"fashion_mnist.py", "fashion_mnist_model.py", "evaluate_faithfulness.py"}
    for path in sorted(EXAMPLES.glob("*.py")):
        text = path.read_text()
        if path.name not in allowed:
            assert "fashion_mnist" not in text and "/usr/share/datasets" not in text, path.name


@pytest.mark.slow
def test_fashion_mnist_with_few_steps(tmp_path: Path) -> None:
    require_fashion_mnist()
    result = run_example("fashion_mnist.py", "--steps", "30", "--out", str(tmp_path), cwd=tmp_path)
    assert "test accuracy" in result.stdout
    assert (tmp_path / "fashion_mnist_cnn_steps30.npz").is_file()
    assert_png(tmp_path / "fashion_mnist.png")


@pytest.mark.slow
def test_batched_and_jitted_needs_only_the_offline_model_and_photos(tmp_path: Path) -> None:
    env = {**os.environ, "FASHION_MNIST_DIR": str(tmp_path / "absent")}
    result = run_example("batched_and_jitted.py", "--top", "3", "--out", str(tmp_path),
                         cwd=tmp_path, env=env)  # fmt: skip
    assert "jit(vmap(explain))" in result.stdout
    assert_png(tmp_path / "batched_images.png")
    width, height = assert_png(tmp_path / "batched_classes.png")
    assert width > height  # two rows (cat, coffee) of 1 + 3 cells
    cat_row = result.stdout.split("top-3 classes")[0]
    assert "batched_images.png" in cat_row  # the first figure is written before part 2 runs
