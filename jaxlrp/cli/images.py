"""The input images of ``jaxlrp explain``: collecting the files, reading them, and what to
say about one that cannot be read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxlrp.cli.errors import CLIError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def _collect_images(paths: Sequence[str], allow_dirs: bool,
                    skipped: list[tuple[Path, str]] | None = None) -> list[Path]:  # fmt: skip
    """Expand directories, check every file exists and its header reads as an image.

    A file whose header does not read stops the run with a :class:`CLIError`, or, when
    ``skipped`` is a list (``--skip-errors``), is appended to it with the reason and left out.
    """
    from PIL import Image

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not allow_dirs:
                raise CLIError(f"{raw} is a directory; give image files, or use --batch")
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in directory {raw}")
            files.extend(found)
        elif not path.exists():
            raise CLIError(f"no such file: {raw}")
        else:
            files.append(path)
    readable = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - the header is read here
        except Exception as err:  # noqa: BLE001 - whatever PIL raises, the file is unusable
            _unreadable(path, _reason(err), skipped)
        else:
            readable.append(path)
    return readable


def _reason(err: BaseException) -> str:
    """Why an image file could not be read, in words."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image file (Pillow cannot identify its format)"
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError | PermissionError):
        return str(err) or type(err).__name__  # e.g. "image file is truncated"
    return f"{type(err).__name__}: {err}"


def _unreadable(path: Path, reason: str, skipped: list[tuple[Path, str]] | None) -> None:
    """Record an unreadable image under ``--skip-errors``; stop the run otherwise."""
    if skipped is None:
        raise CLIError(f"cannot read image {path}: {reason}; use --skip-errors to skip it")
    skipped.append((path, reason))


def _read_image(explainer: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``explainer.preprocess([path])``: the uint8 crop and the model input, each ``(1, ...)``.

    Every image that decodes is resized and cropped to the model's input shape, so a file
    fails here only when its data does not decode (truncated or corrupt).

    Raises:
      _ImageError: with the reason.
    """
    try:
        return explainer.preprocess([path])
    except Exception as err:  # noqa: BLE001 - decoding errors of any kind are the file's
        raise _ImageError(_reason(err)) from None


class _ImageError(Exception):
    """An image file that cannot be read (the message is the reason)."""
