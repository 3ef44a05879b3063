"""Shared helpers for the model-zoo tests."""

from __future__ import annotations

import numpy as np
import pytest


def relative_l2(actual, expected) -> float:
    """``||actual - expected|| / ||expected||`` over all entries."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.fixture
def torch():
    """The torch module, or skip the test when torch is not installed."""
    return pytest.importorskip("torch")
