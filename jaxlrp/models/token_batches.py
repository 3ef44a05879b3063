"""Batches of token ids: the padding shared by the text models' tokenizers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def pad_batch(
    texts: Sequence[str], encode: Callable[[str], Sequence[int]], pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """A right-padded batch of ``encode(text)`` for each text: int32 ``(token_ids,
    attention_mask)``, both ``(batch, longest)``, the mask 1 on real tokens."""
    if isinstance(texts, str) or not texts:
        raise ValueError("pass a non-empty list of texts (use encode for one text)")
    encoded = [encode(text) for text in texts]
    longest = max(len(ids) for ids in encoded)
    token_ids = np.full((len(encoded), longest), pad_id, np.int32)
    mask = np.zeros((len(encoded), longest), np.int32)
    for row, ids in enumerate(encoded):
        token_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return token_ids, mask
