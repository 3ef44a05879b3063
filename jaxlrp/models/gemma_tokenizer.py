"""Gemma's tokenizer (SentencePiece BPE with byte fallback), rebuilt from a GGUF vocabulary.

A GGUF file of a Gemma model keeps the SentencePiece model as three arrays,
``tokenizer.ggml.tokens``/``scores``/``token_type`` (llama.cpp's ``"llama"`` = SentencePiece
tokenizer), but no merge list. SentencePiece's BPE encoder needs none: it splits the text into
characters and repeatedly joins the adjacent pair whose concatenation is the vocabulary piece
with the highest score, leftmost first. A ``tokenizers`` BPE model does the same when its merges
are every split ``(a, b)`` of every piece ``a + b`` ranked by the piece's score, so the merge list
is derived from the scores here. The rest of the SentencePiece model is:

* normalization: identity, spaces escaped as ``▁`` (U+2581), no dummy prefix, whitespace runs
  kept (Gemma's ``NormalizerSpec``; ``tokenizer.ggml.add_space_prefix`` is false);
* user-defined pieces (token type 4: newline, tab and space runs, HTML tags,
  ``<start_of_image>``…) are matched as wholes in the normalized text before BPE and never
  merged; llama.cpp's converter stores them with spaces (``"  "``), SentencePiece with ``▁``
  (``"▁▁"``), which is what is matched here (a literal ``▁`` next to a space joins the run);
* control tokens (type 3: ``<bos>``, ``<eos>``, ``<start_of_turn>``, ``<unusedN>``…) are
  special: matched in text as Hugging Face's Gemma tokenizer does, dropped by ``decode``;
* characters outside the vocabulary become their UTF-8 bytes ``<0xXX>`` (type 6);
* ``<bos>`` (id 2) is prepended (``tokenizer.ggml.add_bos_token``), no ``<eos>`` appended.

transformers 4.57's GGUF converter gets this file wrong: it builds a *Unigram* model from the
scores (SentencePiece BPE scores are negative merge ranks, not log-probabilities, so Viterbi
picks other segmentations: ``"The capital"`` → ``The ca pi tal``), renames the byte token
``<0x09>`` to ``"\\t"`` (a second ``"\\t"``, next to the user-defined one), and matches no
user-defined pieces.

References:
    T. Kudo and J. Richardson, "SentencePiece: A simple and language independent subword
    tokenizer and detokenizer for Neural Text Processing", EMNLP 2018 (``bpe_model.cc``:
    highest-score pair first, user-defined pieces frozen). Gemma Team, "Gemma 3 Technical
    Report", 2025 (the 262k-entry SentencePiece vocabulary).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxlrp.models.token_batches import pad_batch

__all__ = [
    "CONTROL",
    "NORMAL",
    "USER_DEFINED",
    "BYTE",
    "GemmaTokenizer",
    "bpe_merges_from_scores",
]

# llama.cpp's token types (gguf.TokenType), the same numbers as SentencePiece's piece types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

TOKENIZERS_PIP = "pip install tokenizers"


def bpe_merges_from_scores(
    tokens: Sequence[str], scores: Sequence[float], token_types: Sequence[int]
) -> list[tuple[str, str]]:
    """The merge list that makes a rank-ordered BPE behave like SentencePiece's BPE.

    Every normal piece ``p`` of two or more characters contributes each split ``(p[:k], p[k:])``
    whose halves are normal pieces; merges are ordered by ``p``'s score, highest first (ties by
    id), so the lowest-rank applicable merge is the highest-score piece, as in SentencePiece.

    Args:
        tokens: The pieces, by id.
        scores: Their scores (``tokenizer.ggml.scores``).
        token_types: Their types (``tokenizer.ggml.token_type``); only ``NORMAL`` pieces merge.

    Returns:
        ``[(left, right), …]`` in rank order.
    """
    types = np.asarray(token_types)
    normal = {tokens[i] for i in np.flatnonzero(types == NORMAL)}
    order = sorted(np.flatnonzero(types == NORMAL), key=lambda i: (-float(scores[i]), int(i)))
    merges = []
    for index in order:
        piece = tokens[index]
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                merges.append((left, right))
    return merges


def _build(tokens, scores, token_types, bos_id: int, unk_id: int) -> Any:
    try:
        from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
        from tokenizers.models import BPE
    except ImportError as err:
        raise ImportError(f"the Gemma tokenizer needs tokenizers; run: {TOKENIZERS_PIP}") from err
    types = np.asarray(token_types)
    # User-defined pieces are matched on the normalized text, where spaces are "▁" (so a
    # literal "▁" next to a space joins a run, as in SentencePiece): store them escaped.
    tokens = [
        t.replace(" ", "▁") if k == USER_DEFINED else t for t, k in zip(tokens, types, strict=True)
    ]
    if len(set(tokens)) != len(tokens):
        raise ValueError("the vocabulary has duplicate pieces")
    vocab = {piece: index for index, piece in enumerate(tokens)}
    merges = bpe_merges_from_scores(tokens, scores, token_types)
    model = BPE(vocab, merges, unk_token=tokens[unk_id], fuse_unk=True, byte_fallback=True)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    user_defined = [tokens[i] for i in np.flatnonzero(types == USER_DEFINED)]
    tokenizer.add_tokens([AddedToken(t, normalized=True, special=False) for t in user_defined])
    control = [tokens[i] for i in np.flatnonzero((types == CONTROL) | (types == UNKNOWN))]
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    bos = tokens[bos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, bos_id)]
    )
    if tokenizer.get_vocab_size() != len(tokens):
        raise ValueError("added tokens changed the vocabulary size")
    return tokenizer


class GemmaTokenizer:
    """Gemma's tokenizer: text ↔ int32 ids, ``<bos>`` first, one text at a time or a batch.

    Build it with :meth:`from_vocab`; the ids are SentencePiece's for the same model.

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` as :meth:`from_vocab` builds it.
        bos_id: Id of ``<bos>``; ``eos_id``, ``pad_id`` likewise.
    """

    def __init__(self, tokenizer: Any, bos_id: int = 2, eos_id: int = 1, pad_id: int = 0):
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self._lock = threading.Lock()

    @classmethod
    def from_vocab(
        cls,
        tokens: Sequence[str],
        scores: Sequence[float],
        token_types: Sequence[int],
        *,
        bos_id: int = 2,
        eos_id: int = 1,
        unk_id: int = 3,
        pad_id: int = 0,
    ) -> GemmaTokenizer:
        """The tokenizer of a SentencePiece BPE vocabulary as GGUF stores it (see the module).

        Args:
            tokens: Pieces by id (``tokenizer.ggml.tokens``); user-defined ones with spaces.
            scores: ``tokenizer.ggml.scores``.
            token_types: ``tokenizer.ggml.token_type`` (1 normal, 3 control, 4 user-defined,
                6 byte).
            bos_id: ``tokenizer.ggml.bos_token_id``; ``eos_id``, ``unk_id``, ``pad_id`` alike.

        Raises:
            ImportError: If ``tokenizers`` is missing.
            ValueError: For duplicate pieces.
        """
        return cls(
            _build(list(tokens), scores, token_types, bos_id, unk_id), bos_id, eos_id, pad_id
        )

    @property
    def vocab_size(self) -> int:
        """Number of ids (262144 for Gemma 3)."""
        return self._tokenizer.get_vocab_size()

    def _encode(self, text: str, add_bos: bool, parse_special: bool) -> Any:
        with self._lock:
            self._tokenizer.encode_special_tokens = not parse_special
            try:
                return self._tokenizer.encode(text, add_special_tokens=add_bos)
            finally:
                self._tokenizer.encode_special_tokens = False

    def encode(self, text: str, add_bos: bool = True, parse_special: bool = True) -> np.ndarray:
        """Token ids of ``text`` as int32 ``(seq,)``.

        Args:
            text: Any string.
            add_bos: Start with ``<bos>`` (id 2), as the model was trained.
            parse_special: Control-token strings in ``text`` (``<start_of_turn>``, ``<eos>``)
                become their ids, as in Hugging Face's tokenizer; ``False`` tokenizes them as
                plain text, as SentencePiece does.
        """
        encoding = self._encode(text, add_bos, parse_special)
        return np.asarray(encoding.ids, np.int32)

    def tokens(self, text: str, add_bos: bool = True, parse_special: bool = True) -> list[str]:
        """The pieces of ``text`` (``["<bos>", "The", "▁capital", …]``); see :meth:`encode`."""
        return self._encode(text, add_bos, parse_special).tokens

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        """Text of token ids: ``▁`` → space, byte tokens joined into UTF-8, control tokens
        dropped (unless ``skip_special_tokens=False``)."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary entry of one id."""
        return self._tokenizer.id_to_token(int(token_id))

    def token_to_id(self, token: str) -> int | None:
        """The id of one vocabulary entry, or ``None``."""
        return self._tokenizer.token_to_id(token)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """A right-padded batch: int32 ``(token_ids, attention_mask)``, both ``(batch, longest)``.

        With causal attention, right padding does not change the logits of the real tokens.
        """
        return pad_batch(texts, self.encode, self.pad_id)

    def __repr__(self) -> str:
        return f"GemmaTokenizer(vocab_size={self.vocab_size})"
