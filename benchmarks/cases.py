"""The benchmarked models and, for each, its forward pass, ``jax.grad`` and explanations.

* Image models (CNNs and ViTs): ``(variables, x, target)``; the gradient is ``∂/∂x`` of the
  target logits summed over the batch, the quantity the explanation starts from.
* MiniLM (``all_minilm_l6_v2``): the mean-pooled sentence embedding dotted with a fixed random
  probe vector (as ``tests/models/test_minilm_lrp.py``), explained w.r.t. the integer token ids
  (jaxlrp explains them at the embedding lookup); the gradient is taken w.r.t. the looked-up
  word embeddings, the lookup included in the timed program.
* Gemma 3 270M (``gemma3_270m``): the next-token logit at the last position of a random-token
  prompt (``<bos>`` first; its top token), explained w.r.t. the token ids; the gradient is that
  logit's ``∂/∂`` scaled embeddings, the lookup included. Only the last position is projected
  onto the 262 144-entry vocabulary, in every method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxlrp
from benchmarks.measure import Method
from jaxlrp import composites, models, rules

IMAGE_COMPOSITES = (
    "epsilon",
    "epsilon-plus-flat",
    "epsilon-gamma-box",
    "epsilon-gamma-box-original",
    "epsilon-alpha2-beta1",
)
TRANSFORMER_COMPOSITES = ("attnlrp", "cplrp")
ALL_COMPOSITES = IMAGE_COMPOSITES + TRANSFORMER_COMPOSITES
TRANSFORMERS = ("vit_b16", "vit_tiny", "all_minilm_l6_v2", "gemma3_270m")
TEXT = ("all_minilm_l6_v2",)
LLM = ("gemma3_270m",)
FULL_MODELS = ("vgg16", "resnet50", "efficientnet_lite0", "vit_b16", "all_minilm_l6_v2")
SMOKE_MODELS = ("mnist_cnn", "vit_tiny")
PRETRAINED_OFFLINE = ("efficientnet_lite0", "mnist_cnn", "all_minilm_l6_v2")


def canonical(name: str) -> str:
    """The zoo's spelling of a model name (``all-minilm-l6-v2`` → ``all_minilm_l6_v2``)."""
    return models.info(name).name


def make_composite(name: str, model: str) -> composites.Composite:
    """The preset ``name`` for ``model`` (ZBox bounds from the model's preprocessing)."""
    if name == "epsilon":
        return composites.Composite(rules.Epsilon(), name="Epsilon")
    if name == "epsilon-plus-flat":
        return composites.EpsilonPlusFlat()
    if name == "epsilon-gamma-box":
        spec = models.info(model)
        return composites.EpsilonGammaBox(low=spec.low, high=spec.high)
    if name == "epsilon-gamma-box-original":  # the overview's (non-generalized) gamma
        spec = models.info(model)
        return composites.EpsilonGammaBox(low=spec.low, high=spec.high, generalized=False)
    if name == "epsilon-alpha2-beta1":
        return composites.EpsilonAlpha2Beta1()
    if name == "attnlrp":
        return composites.AttnLRP()
    if name == "cplrp":
        return composites.CPLRP()
    raise ValueError(f"unknown composite {name!r}; valid: {', '.join(ALL_COMPOSITES)}")


def applicable(model: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The composites of ``wanted`` that apply to ``model`` (image presets on CNNs,
    AttnLRP/CP-LRP on transformers)."""
    family = TRANSFORMER_COMPOSITES if model in TRANSFORMERS else IMAGE_COMPOSITES
    return tuple(name for name in wanted if name in family)


@dataclasses.dataclass
class Case:
    """One model ready to benchmark."""

    model: str
    weights: str  # "pretrained", "random", "torchvision random" …
    input_desc: str
    batch: int
    methods: list[Method]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _shard(tree: Any, devices: int, batched: bool) -> Any:
    """Place ``tree`` on the first ``devices`` devices: split along axis 0 or replicated."""
    if devices <= 1:
        return tree
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    available = jax.devices()
    if len(available) < devices:
        raise SystemExit(
            f"--devices {devices}: only {len(available)} device(s) visible "
            f"({available[0].platform}; see XLA_FLAGS in python -m benchmarks.run --help)"
        )
    mesh = Mesh(np.array(available[:devices]), ("batch",))
    spec = PartitionSpec("batch") if batched else PartitionSpec()
    return jax.device_put(tree, NamedSharding(mesh, spec))


def _methods(fn: Callable, forward: Callable, grad: Callable, names: tuple[str, ...], model: str,
             variables: Any, inputs: Any, target: Any, devices: int) -> list[Method]:
    """forward, jax.grad and ``jaxlrp.explain(fn, …)`` under each composite in ``names``, on
    the variables (replicated) and the inputs and targets (sharded over ``devices``)."""

    def explainer(composite: composites.Composite) -> Callable[..., jax.Array]:
        def explain(variables: Any, inputs: jax.Array, target: jax.Array) -> jax.Array:
            return jaxlrp.explain(fn, variables, inputs, target=target, composite=composite)

        return explain

    variables = _shard(variables, devices, batched=False)
    xs, ts = _shard(jnp.asarray(inputs), devices, True), _shard(target, devices, True)
    methods = [Method("forward", "forward", forward, (variables, xs)),
               Method("jax.grad", "grad", grad, (variables, xs, ts))]  # fmt: skip
    for name in names:
        methods.append(Method(name, "explain", explainer(make_composite(name, model)),
                              (variables, xs, ts)))  # fmt: skip
    return methods


def _image_inputs(spec: Any, batch: int, size: int | None) -> np.ndarray:
    height, width, channels = spec.input_shape
    if size is not None and spec.name not in ("mnist_cnn", "vit_b16", "vit_tiny"):
        height = width = size
    pixels = np.random.default_rng(0).uniform(0, 255, (batch, height, width, channels))
    return np.asarray(spec.normalize(pixels), np.float32)


def _load(model: str, weights: Mapping | None, shape: tuple[int, ...]) -> tuple[Any, dict, str]:
    if weights is not None:
        module, variables = models.load(model, weights=weights, input_shape=shape)
        return module, variables, "torchvision random (shared with zennit)"
    if model in PRETRAINED_OFFLINE:
        try:
            module, variables = models.load(model, weights="pretrained")
            return module, variables, "pretrained"
        except ImportError:
            pass
    if model in TEXT:
        module, variables = models.load(model)
    else:
        module, variables = models.load(model, input_shape=shape)
    return module, variables, "random"


def image_case(model: str, names: tuple[str, ...], batch: int, size: int | None, devices: int,
               weights: Mapping | None = None) -> Case:  # fmt: skip
    """Forward, grad and explanations of an image model on normalized uniform-pixel images."""
    spec = models.info(model)
    x = _image_inputs(spec, batch, size)
    module, variables, source = _load(model, weights, x.shape)
    apply = module.apply

    def forward(variables: Any, x: jax.Array) -> jax.Array:
        return apply(variables, x)

    # each example's top class (a separate jit: the timed forward is compiled afresh below)
    logits = jax.jit(lambda v, x: apply(v, x))(variables, x)
    target = jnp.asarray(np.asarray(logits).argmax(-1), jnp.int32)

    def grad(variables: Any, x: jax.Array, target: jax.Array) -> jax.Array:
        def total(x: jax.Array) -> jax.Array:
            logits = apply(variables, x)
            return jnp.take_along_axis(logits, target[:, None], axis=1).sum()

        return jax.grad(total)(x)

    methods = _methods(apply, forward, grad, names, model, variables, x, target, devices)
    shape = "x".join(str(d) for d in x.shape[1:3])
    return Case(model, source, f"{shape} px", batch, methods,
                {"x": x, "target": np.asarray(target)})  # fmt: skip


def text_case(model: str, names: tuple[str, ...], batch: int, seq: int, devices: int) -> Case:
    """MiniLM: a linear probe of the mean-pooled embedding, explained w.r.t. token ids."""
    module, variables, source = _load(model, None, ())
    config = module.config
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, config.vocab_size, (batch, seq)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] … [SEP]
    probe = jax.random.normal(jax.random.PRNGKey(0), (config.hidden_size, 1))

    def head(variables: Any, embeds: jax.Array) -> jax.Array:
        hidden = module.apply(variables, embeds, method="from_embeddings")
        return hidden.mean(1) @ probe  # (batch, 1)

    def forward(variables: Any, ids: jax.Array) -> jax.Array:
        return head(variables, module.apply(variables, ids, method="embed_tokens"))

    def grad(variables: Any, ids: jax.Array) -> jax.Array:
        embeds = module.apply(variables, ids, method="embed_tokens")
        return jax.grad(lambda e: head(variables, e).sum())(embeds)

    def explainer(composite: composites.Composite) -> Callable[..., jax.Array]:
        def explain(variables: Any, ids: jax.Array) -> jax.Array:
            return jaxlrp.explain(forward, variables, ids, target=0, composite=composite)

        return explain

    variables = _shard(variables, devices, batched=False)
    ids_j = _shard(jnp.asarray(ids), devices, True)
    methods = [Method("forward", "forward", forward, (variables, ids_j)),
               Method("jax.grad", "grad", grad, (variables, ids_j))]  # fmt: skip
    for name in names:
        methods.append(Method(name, "explain", explainer(make_composite(name, model)),
                              (variables, ids_j)))  # fmt: skip
    return Case(model, source, f"{seq} tokens", batch, methods)


def llm_case(model: str, names: tuple[str, ...], batch: int, seq: int, devices: int) -> Case:
    """Gemma 3: the last position's top next-token logit, explained w.r.t. token ids."""
    try:
        module, variables = models.load(model, weights="pretrained")
        source = "pretrained"
    except ImportError:
        module, variables = models.load(model)
        source = "random"
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, module.config.vocab_size, (batch, seq)).astype(np.int32)
    ids[:, 0] = 2  # <bos>

    def head(variables: Any, embeds: jax.Array) -> jax.Array:
        def last_logits(m: Any, e: jax.Array) -> jax.Array:
            return m.unembed(m.hidden_states(e)[:, -1])

        return module.apply(variables, embeds, method=last_logits)  # (batch, vocab)

    def forward(variables: Any, ids: jax.Array) -> jax.Array:
        return head(variables, module.apply(variables, ids, method="embed"))

    # the top token (a separate jit: the timed forward is compiled afresh below)
    logits = jax.jit(lambda v, x: forward(v, x))(variables, jnp.asarray(ids))
    target = jnp.asarray(np.asarray(logits).argmax(-1), jnp.int32)

    def grad(variables: Any, ids: jax.Array, target: jax.Array) -> jax.Array:
        embeds = module.apply(variables, ids, method="embed")

        def total(e: jax.Array) -> jax.Array:
            return jnp.take_along_axis(head(variables, e), target[:, None], axis=1).sum()

        return jax.grad(total)(embeds)

    methods = _methods(forward, forward, grad, names, model, variables, ids, target,
                       devices)
    return Case(model, source, f"{seq} tokens", batch, methods)


def build_case(model: str, names: tuple[str, ...], batch: int, size: int | None, seq: int,
               devices: int, weights: Mapping | None = None) -> Case:  # fmt: skip
    """The :class:`Case` of ``model`` with the applicable composites of ``names``."""
    model = canonical(model)
    names = applicable(model, names)
    if model in TEXT:
        return text_case(model, names, batch, seq, devices)
    if model in LLM:
        return llm_case(model, names, batch, seq, devices)
    if not isinstance(models.info(model), models.ModelInfo):
        raise SystemExit(f"{model}: only image classifiers, MiniLM and Gemma 3 are benchmarked")
    return image_case(model, names, batch, size, devices, weights)
