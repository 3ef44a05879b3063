"""Every example runs as written, offline, and writes its figures to ``--out``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("skimage")


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                            text=True, cwd=cwd, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
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


@pytest.mark.slow
def test_fashion_mnist_with_few_steps(tmp_path: Path) -> None:
    result = run_example("fashion_mnist.py", "--steps", "30", "--out", str(tmp_path), cwd=tmp_path)
    assert "test accuracy" in result.stdout
    assert (tmp_path / "fashion_mnist_cnn_steps30.npz").is_file()
    assert_png(tmp_path / "fashion_mnist.png")


@pytest.mark.slow
def test_batched_and_jitted(tmp_path: Path) -> None:
    result = run_example("batched_and_jitted.py", "--fashion-steps", "30", "--top", "3",
                         "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert "jit(vmap(explain))" in result.stdout
    assert_png(tmp_path / "batched_images.png")
    assert_png(tmp_path / "batched_classes.png")
