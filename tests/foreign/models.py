"""Models that jaxlrp did not write, built offline from tiny configurations with random weights.

One small function per model. Each returns a :class:`Case` ``(fn, args, argnum, relu)``:
``fn(*args)`` returns logits ``(batch, classes)``, ``args[argnum]`` is the explained input and
``relu`` says whether the network is piecewise linear (ReLU, max pooling, biases, inference batch
norm and nothing else), where LRP-0 must equal gradient × input.

Every builder takes ``dtype`` (float32, or float64 under ``jax_enable_x64``) and builds the model
in that precision. Constant-initialised parameters (zero biases, unit norm scales, zero/unit
batch-norm statistics) are replaced by random values so that biases and norm folding are really
exercised. The foreign library is imported inside its builder; :data:`LIBRARY` names it so that a
test can ``pytest.importorskip`` it first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Keras reads its backend once, at import.
os.environ["KERAS_BACKEND"] = "jax"
# No USE_TORCH=0 here: it would leak into every later test of the same process (and into their
# child processes), hiding torch from transformers' PyTorch classes that the parity tests use.
os.environ.setdefault("USE_TF", "0")

BATCH = 2


class Case(NamedTuple):
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    argnum: int
    relu: bool


# --------------------------------------------------------------------------- helpers


def _key(i: int) -> jax.Array:
    return jax.random.PRNGKey(i)


def _normal(i: int, shape: tuple[int, ...], dtype) -> jax.Array:
    return jax.random.normal(_key(i), shape, dtype)


def _is_float(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)


def randomize(tree: Any, dtype, seed: int = 0) -> Any:
    """Cast the float leaves of ``tree`` to ``dtype``; constant leaves get random values.

    An all-zero leaf (bias, shift, running mean) becomes N(0, 0.1²); an all-one leaf (scale,
    running variance) becomes U(0.7, 1.3). Other leaves keep their (random) initial values.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out = []
    for i, leaf in enumerate(leaves):
        if _is_float(leaf):
            a = np.asarray(leaf, np.float64)
            rng = np.random.default_rng(seed * 1000 + i)
            if a.size and np.all(a == 0):
                a = 0.1 * rng.standard_normal(a.shape)
            elif a.size and np.all(a == 1):
                a = rng.uniform(0.7, 1.3, a.shape)
            leaf = jnp.asarray(a, dtype)
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


def _embedding_input(call: Callable[[Any], Any], params: Any, name: str):
    """Make ``call(params)`` a function of the output of its linen ``nn.Embed`` named ``name``.

    Returns ``fn(params, embeddings)`` (the lookup's result replaced by ``embeddings``) and the
    embeddings the lookup gives, so that relevance is explained w.r.t. the input embeddings.
    """
    import flax.linen as nn

    def is_lookup(context) -> bool:
        return context.module.name == name and context.method_name == "__call__"

    def lookup(params):
        captured = {}

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if is_lookup(context):
                captured["embeddings"] = out
            return out

        with nn.intercept_methods(record):
            call(params)
        return captured["embeddings"]

    def fn(params, embeddings):
        def replace(next_fun, args, kwargs, context):
            return embeddings if is_lookup(context) else next_fun(*args, **kwargs)

        with nn.intercept_methods(replace):
            return call(params)

    return fn, jax.jit(lookup)(params)


# --------------------------------------------------------------------------- equinox


def _eqx_build(make):
    """``make(key)``, initialised in one compiled call (not op by op)."""
    import equinox as eqx

    return eqx.filter_jit(make)(_key(0))


def _eqx_split(model, dtype):
    import equinox as eqx

    params, static = eqx.partition(model, eqx.is_array)
    params = randomize(params, dtype)

    def fn(params, x):
        return jax.vmap(eqx.combine(params, static))(x)

    return fn, params


def eqx_mlp(dtype=jnp.float32) -> Case:
    import equinox as eqx

    model = _eqx_build(lambda key: eqx.nn.MLP(10, 5, 16, 2, activation=jax.nn.relu, key=key))
    fn, params = _eqx_split(model, dtype)
    return Case(fn, (params, _normal(1, (BATCH, 10), dtype)), 1, True)


def eqx_cnn(dtype=jnp.float32) -> Case:
    import equinox as eqx

    class CNN(eqx.Module):
        conv1: eqx.nn.Conv2d
        pool: eqx.nn.MaxPool2d
        conv2: eqx.nn.Conv2d
        linear: eqx.nn.Linear

        def __init__(self, key):
            k1, k2, k3 = jax.random.split(key, 3)
            self.conv1 = eqx.nn.Conv2d(3, 8, 3, padding=1, key=k1)
            self.pool = eqx.nn.MaxPool2d(2, 2)
            self.conv2 = eqx.nn.Conv2d(8, 16, 3, stride=2, key=k2)
            self.linear = eqx.nn.Linear(16 * 3 * 3, 10, key=k3)

        def __call__(self, x):  # (C, H, W), unbatched as equinox modules are
            x = self.pool(jax.nn.relu(self.conv1(x)))
            x = jax.nn.relu(self.conv2(x))
            return self.linear(x.reshape(-1))

    fn, params = _eqx_split(_eqx_build(CNN), dtype)
    return Case(fn, (params, _normal(1, (BATCH, 3, 16, 16), dtype)), 1, True)


def eqx_attention(dtype=jnp.float32) -> Case:
    import equinox as eqx

    class Attention(eqx.Module):
        attention: eqx.nn.MultiheadAttention
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.attention = eqx.nn.MultiheadAttention(
                2, 16, use_query_bias=True, use_key_bias=True, use_value_bias=True,
                use_output_bias=True, key=k1,
            )
            self.head = eqx.nn.Linear(16, 4, key=k2)

        def __call__(self, x):  # (seq, features)
            return self.head(self.attention(x, x, x).mean(axis=0))

    fn, params = _eqx_split(_eqx_build(Attention), dtype)
    return Case(fn, (params, _normal(1, (BATCH, 6, 16), dtype)), 1, False)


def eqx_layernorm(dtype=jnp.float32) -> Case:
    import equinox as eqx

    class Net(eqx.Module):
        linear1: eqx.nn.Linear
        norm: eqx.nn.LayerNorm
        linear2: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.linear1 = eqx.nn.Linear(10, 16, key=k1)
            self.norm = eqx.nn.LayerNorm(16)
            self.linear2 = eqx.nn.Linear(16, 5, key=k2)

        def __call__(self, x):
            return self.linear2(jax.nn.relu(self.norm(self.linear1(x))))

    fn, params = _eqx_split(_eqx_build(Net), dtype)
    return Case(fn, (params, _normal(1, (BATCH, 10), dtype)), 1, False)


def eqx_batchnorm(dtype=jnp.float32) -> Case:
    """``eqx.nn.BatchNorm`` in inference mode, its running statistics in an ``eqx.nn.State``
    passed through ``jax.vmap`` (with the batch axis name the layer asks for)."""
    import equinox as eqx

    class Net(eqx.Module):
        linear1: eqx.nn.Linear
        norm: eqx.nn.BatchNorm
        linear2: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.linear1 = eqx.nn.Linear(10, 16, key=k1)
            self.norm = eqx.nn.BatchNorm(16, axis_name="batch", mode="ema")
            self.linear2 = eqx.nn.Linear(16, 5, key=k2)

        def __call__(self, x, state):
            h, state = self.norm(self.linear1(x), state)
            return self.linear2(jax.nn.relu(h)), state

    model, state = eqx.filter_jit(eqx.nn.make_with_state(Net))(_key(0))
    model = eqx.nn.inference_mode(model)
    params, static = eqx.partition(model, eqx.is_array)
    params = randomize(params, dtype)
    running = (0.3 * _normal(7, (16,), dtype), jax.random.uniform(_key(8), (16,), dtype, 0.5, 1.5))
    state = state.set(model.norm.ema_first_time_index, jnp.array(False))
    state = state.set(model.norm.ema_state_index, running)

    def fn(params, state, x):
        net = eqx.combine(params, static)
        return jax.vmap(net, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(x, state)[0]

    return Case(fn, (params, state, _normal(1, (BATCH, 10), dtype)), 2, True)


# --------------------------------------------------------------------------- dm-haiku


def hk_mlp(dtype=jnp.float32) -> Case:
    import haiku as hk

    f = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([16, 16, 5])(x)))
    x = _normal(1, (BATCH, 10), dtype)
    params = randomize(jax.jit(f.init)(_key(0), x), dtype)
    return Case(f.apply, (params, x), 1, True)


def _hk_resnet(dtype, make) -> Case:
    import haiku as hk

    def forward(x, is_training):
        return make()(x, is_training=is_training)

    f = hk.without_apply_rng(hk.transform_with_state(forward))
    x = _normal(1, (BATCH, 32, 32, 3), dtype)
    params, state = jax.jit(f.init, static_argnums=2)(_key(0), x, True)
    # batch-norm moving averages: random means, variances in [0.5, 1.5]
    rng = np.random.default_rng(1)
    state = {
        name: {**ema, "average": rng.uniform(0.5, 1.5, ema["average"].shape)
               if name.endswith("var_ema") else rng.normal(0, 0.3, ema["average"].shape)}
        for name, ema in state.items()
    }
    params, state = randomize(params, dtype), randomize(state, dtype)

    def fn(params, state, x):
        return f.apply(params, state, x, False)[0]

    return Case(fn, (params, state, x), 2, True)


def hk_resnet18(dtype=jnp.float32) -> Case:
    import haiku as hk

    return _hk_resnet(dtype, lambda: hk.nets.ResNet18(10))


def hk_resnet_v2(dtype=jnp.float32) -> Case:
    """A small pre-activation ResNet (batch norm → ReLU → conv: the batch norms do not follow a
    layer), one basic block per group."""
    import haiku as hk

    return _hk_resnet(dtype, lambda: hk.nets.ResNet(
        blocks_per_group=(1, 1, 1, 1), num_classes=10, resnet_v2=True, bottleneck=False,
        channels_per_group=(16, 32, 64, 128)))


# --------------------------------------------------------------------------- keras 3 (jax)


class _NumpyRandom:
    """Stands in for keras' backend ``random`` module in its initializers, with NumPy draws.

    Keras draws every initial weight with its own jax.random call, compiled once per shape
    (0.2–0.5 s each on the CPU: 40 s to build EfficientNetB0); the distributions are the same.
    """

    def __init__(self, backend_random, seed: int):
        self.backend_random = backend_random
        self.rng = np.random.default_rng(seed)

    def __getattr__(self, name):  # seeds and everything else: keras' own
        return getattr(self.backend_random, name)

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return jnp.asarray(self.rng.normal(mean, stddev, shape), dtype)

    def truncated_normal(self, shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        a = self.rng.standard_normal(shape)
        while np.any(bad := np.abs(a) > 2):
            a[bad] = self.rng.standard_normal(int(bad.sum()))
        return jnp.asarray(mean + stddev * a, dtype)

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        return jnp.asarray(self.rng.uniform(minval, maxval, shape), dtype)


def _keras(application: str, module: str, dtype, relu: bool, size: int = 32) -> Case:
    from unittest import mock

    import keras
    from keras.src.initializers import random_initializers

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras was imported with backend {keras.backend.backend()!r}")
    preprocess = getattr(keras.applications, module).preprocess_input
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(jnp.dtype(dtype).name)
    try:
        with mock.patch.object(
            random_initializers, "random", _NumpyRandom(random_initializers.random, 0)
        ):
            model = getattr(keras.applications, application)(
                weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None
            )
    finally:
        keras.config.set_dtype_policy(previous)
    trainable = randomize([v.value for v in model.trainable_variables], dtype)
    non_trainable = [v.value for v in model.non_trainable_variables]

    def fn(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    def image(seed, n):  # in [0, 255], through the application's own preprocess_input
        pixels = np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3))
        return jnp.asarray(preprocess(pixels), dtype)

    non_trainable = _keras_calibrate(model, trainable, non_trainable, image(2, 8))
    return Case(fn, (trainable, non_trainable, image(1, BATCH)), 2, relu)


def _keras_calibrate(model, trainable, non_trainable, x):
    """Batch-norm moving statistics set to those of the batch ``x`` (as after training).

    With random weights and the initial statistics (mean 0, variance 1) activations vanish or
    are dominated by the biases after a few blocks, and the logits no longer depend on the
    input; one forward pass in training mode with momentum 0 stores each batch norm's real
    input statistics.
    """
    import keras

    layers = list(model._flatten_layers())
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    dropouts = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    momenta = [layer.momentum for layer in norms]
    rates = [layer.rate for layer in dropouts]
    try:
        for layer in norms:
            layer.momentum = 0.0
        for layer in dropouts:  # deterministic statistics: no dropout, no stochastic depth
            layer.rate = 0.0
        train = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=True)[1])
        return train(trainable, non_trainable, x)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates, strict=True):
            layer.rate = rate


def keras_resnet50(dtype=jnp.float32) -> Case:
    return _keras("ResNet50", "resnet50", dtype, relu=True)


def keras_mobilenetv2(dtype=jnp.float32) -> Case:
    # ReLU6 saturates: not positively homogeneous, so not a "ReLU network" here
    return _keras("MobileNetV2", "mobilenet_v2", dtype, relu=False)


def keras_efficientnetb0(dtype=jnp.float32) -> Case:
    return _keras("EfficientNetB0", "efficientnet", dtype, relu=False)


def keras_layers(dtype=jnp.float32) -> Case:
    """A functional keras model of its own layers: Conv1D, LayerNormalization, a residual
    MultiHeadAttention, LSTM and GRU (keras runs them with ``lax.scan``), Dense."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(jnp.dtype(dtype).name)
    try:
        keras.utils.set_random_seed(0)
        layers = keras.layers
        inputs = keras.Input((6, 8))
        h = layers.Conv1D(8, 3, padding="same", activation="relu")(inputs)
        h = layers.LayerNormalization()(h)
        h = h + layers.MultiHeadAttention(2, 4)(h, h)
        h = layers.LSTM(8, return_sequences=True)(h)
        model = keras.Model(inputs, layers.Dense(3)(layers.GRU(8)(h)))
    finally:
        keras.config.set_dtype_policy(previous)
    trainable = randomize([v.value for v in model.trainable_variables], dtype)
    non_trainable = [v.value for v in model.non_trainable_variables]

    def fn(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    return Case(fn, (trainable, non_trainable, _normal(1, (BATCH, 6, 8), dtype)), 2, False)


# --------------------------------------------------------------------------- transformers (Flax)

_TEXT = dict(vocab_size=64, max_position_embeddings=32)
_IDS = np.random.default_rng(0).integers(0, 64, (BATCH, 8)).astype(np.int32)


def _hf_params(model, dtype):
    """The random parameters of a transformers model built with ``_do_init=False``."""
    return randomize(jax.jit(model.init_weights, static_argnums=1)(_key(0), model.input_shape),
                     dtype)


def _hf_text(model, dtype, name: str, call: Callable) -> Case:
    params = _hf_params(model, dtype)
    fn, embeddings = _embedding_input(lambda p: call(model, p), params, name)
    return Case(fn, (params, embeddings), 1, False)


def hf_bert(dtype=jnp.float32) -> Case:
    from transformers import BertConfig, FlaxBertForSequenceClassification

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3, **_TEXT)
    model = FlaxBertForSequenceClassification(config, dtype=dtype, _do_init=False)
    return _hf_text(model, dtype, "word_embeddings",
                    lambda m, p: m(_IDS, params=p, train=False).logits)


def hf_bert_pooler(dtype=jnp.float32) -> Case:
    """FlaxBertModel: the pooler output (tanh of a dense layer on [CLS]) as the explained output."""
    from transformers import BertConfig, FlaxBertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, **_TEXT)
    model = FlaxBertModel(config, dtype=dtype, _do_init=False)
    return _hf_text(model, dtype, "word_embeddings",
                    lambda m, p: m(_IDS, params=p, train=False).pooler_output)


def hf_distilbert(dtype=jnp.float32) -> Case:
    from transformers import DistilBertConfig, FlaxDistilBertForSequenceClassification

    config = DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, num_labels=3, **_TEXT)
    model = FlaxDistilBertForSequenceClassification(config, dtype=dtype, _do_init=False)
    return _hf_text(model, dtype, "word_embeddings",
                    lambda m, p: m(_IDS, params=p, train=False).logits)


def hf_gpt2(dtype=jnp.float32) -> Case:
    """GPT-2 language model: the next-token logits at the last position."""
    from transformers import FlaxGPT2LMHeadModel, GPT2Config

    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    model = FlaxGPT2LMHeadModel(config, dtype=dtype, _do_init=False)
    return _hf_text(model, dtype, "wte",
                    lambda m, p: m(_IDS, params=p, train=False).logits[:, -1, :])


def hf_llama(dtype=jnp.float32) -> Case:
    """Llama (rotary embeddings, RMSNorm, SiLU-gated MLP, grouped-query attention): the
    next-token logits at the last position."""
    from transformers import FlaxLlamaForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, **_TEXT)
    model = FlaxLlamaForCausalLM(config, dtype=dtype, _do_init=False)
    return _hf_text(model, dtype, "embed_tokens",
                    lambda m, p: m(_IDS, params=p, train=False).logits[:, -1, :])


def _hf_vision(model, dtype, output: Callable, size: int, relu: bool = False) -> Case:
    params = _hf_params(model, dtype)

    def fn(params, pixel_values):  # NCHW, as transformers takes images
        return output(model(pixel_values, params=params, train=False))

    return Case(fn, (params, _normal(1, (BATCH, 3, size, size), dtype)), 1, relu)


def hf_vit(dtype=jnp.float32) -> Case:
    from transformers import FlaxViTForImageClassification, ViTConfig

    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=16, patch_size=4, num_labels=5)
    model = FlaxViTForImageClassification(config, dtype=dtype, _do_init=False)
    return _hf_vision(model, dtype, lambda out: out.logits, 16)


def hf_resnet(dtype=jnp.float32) -> Case:
    from transformers import FlaxResNetForImageClassification, ResNetConfig

    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                          layer_type="basic", num_labels=5)
    model = FlaxResNetForImageClassification(config, dtype=dtype, _do_init=False)
    return _hf_vision(model, dtype, lambda out: out.logits, 32, relu=True)


def hf_clip_vision(dtype=jnp.float32) -> Case:
    from transformers import CLIPVisionConfig, FlaxCLIPVisionModel

    config = CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, image_size=16, patch_size=4)
    model = FlaxCLIPVisionModel(config, dtype=dtype, _do_init=False)
    return _hf_vision(model, dtype, lambda out: out.pooler_output, 16)


# --------------------------------------------------------------------------- Flax's own layers


def _linen(module, x, dtype, relu: bool) -> Case:
    variables = randomize(jax.jit(module.init)(_key(0), x), dtype)
    return Case(module.apply, (variables, x), 1, relu)


def linen_attention(dtype=jnp.float32) -> Case:
    """Embed → MultiHeadDotProductAttention → LayerNorm → mean → Dense, w.r.t. the embeddings."""
    import flax.linen as nn

    class Text(nn.Module):
        @nn.compact
        def __call__(self, ids):
            x = nn.Embed(64, 16, name="embed")(ids)
            x = x + nn.MultiHeadDotProductAttention(num_heads=2)(x, x)
            x = nn.LayerNorm()(x)
            return nn.Dense(4)(x.mean(axis=1))

    module = Text()
    variables = randomize(jax.jit(module.init)(_key(0), _IDS), dtype)
    fn, embeddings = _embedding_input(lambda v: module.apply(v, _IDS), variables, "embed")
    return Case(fn, (variables, embeddings), 1, False)


def linen_rmsnorm(dtype=jnp.float32) -> Case:
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.RMSNorm()(nn.Dense(16)(x)))
            return nn.Dense(5)(x)

    return _linen(Net(), _normal(1, (BATCH, 10), dtype), dtype, relu=False)


def linen_groupnorm(dtype=jnp.float32) -> Case:
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.GroupNorm(num_groups=4)(nn.Conv(8, (3, 3))(x)))
            x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
            return nn.Dense(5)(x.mean(axis=(1, 2)))

    return _linen(Net(), _normal(1, (BATCH, 12, 12, 3), dtype), dtype, relu=False)


def linen_conv_transpose(dtype=jnp.float32) -> Case:
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
            x = nn.relu(nn.ConvTranspose(4, (3, 3), strides=(2, 2))(x))
            return nn.Dense(5)(x.reshape(x.shape[0], -1))

    return _linen(Net(), _normal(1, (BATCH, 8, 8, 3), dtype), dtype, relu=True)


def linen_depthwise(dtype=jnp.float32) -> Case:
    """A MobileNet-style block: conv, BatchNorm, depthwise conv (feature_group_count), pooling."""
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(8, (3, 3))(x)))
            x = nn.relu(nn.Conv(8, (3, 3), feature_group_count=8)(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            return nn.Dense(5)(x.reshape(x.shape[0], -1))

    return _linen(Net(), _normal(1, (BATCH, 8, 8, 3), dtype), dtype, relu=True)


def linen_scan_blocks(dtype=jnp.float32) -> Case:
    """Pre-norm transformer blocks under ``nn.scan(nn.remat(Block))`` (their parameters are
    scanned inputs): causal ``nn.SelfAttention``, deterministic ``nn.Dropout``, a GELU MLP."""
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            h = nn.LayerNorm()(x)
            h = nn.SelfAttention(num_heads=2)(h, mask=nn.make_causal_mask(h[..., 0]))
            x = x + nn.Dropout(0.5, deterministic=True)(h)
            return x + nn.Dense(16)(nn.gelu(nn.Dense(32)(nn.LayerNorm()(x)))), None

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            blocks = nn.scan(nn.remat(Block), variable_axes={"params": 0},
                             split_rngs={"params": True}, length=2)  # fmt: skip
            return nn.Dense(4)(blocks()(x, None)[0].mean(axis=1))

    return _linen(Net(), _normal(1, (BATCH, 6, 16), dtype), dtype, relu=False)


def nnx_cnn(dtype=jnp.float32) -> Case:
    """An nnx module called directly (``explain(model, x)``): Conv, BatchNorm, ReLU, Linear."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
            self.norm = nnx.BatchNorm(8, use_running_average=True, rngs=rngs)
            self.linear = nnx.Linear(8 * 4 * 4, 5, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.norm(self.conv(x)))
            x = nnx.max_pool(x, (2, 2), strides=(2, 2))
            return self.linear(x.reshape(x.shape[0], -1))

    model = Net(nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    model = nnx.merge(graphdef, randomize(state, dtype))
    return Case(model, (_normal(1, (BATCH, 8, 8, 3), dtype),), 0, True)


def nnx_attention(dtype=jnp.float32) -> Case:
    """nnx MultiHeadAttention, LayerNorm and RMSNorm, called directly."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.attention = nnx.MultiHeadAttention(2, 16, decode=False, rngs=rngs)
            self.norm1 = nnx.LayerNorm(16, rngs=rngs)
            self.norm2 = nnx.RMSNorm(16, rngs=rngs)
            self.linear = nnx.Linear(16, 4, rngs=rngs)

        def __call__(self, x):
            x = self.norm1(x + self.attention(x))
            return self.linear(self.norm2(x).mean(axis=1))

    model = Net(nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    model = nnx.merge(graphdef, randomize(state, dtype))
    return Case(model, (_normal(1, (BATCH, 6, 16), dtype),), 0, False)


# --------------------------------------------------------------------------- hand-written jnp
# Idioms of code written directly against jax.numpy and lax, not through a layer library.


def _dense_init(i: int, shape: tuple[int, ...], dtype) -> jax.Array:
    return _normal(i, shape, dtype) / np.sqrt(shape[-2] if len(shape) > 1 else 1)


def jnp_relu_cnn(dtype=jnp.float32) -> Case:
    """A ReLU CNN written with lax: jnp.pad, conv, ``lax.reduce_window`` max and average pooling,
    a concatenated skip connection and ``jnp.split``."""
    dn = ("NHWC", "HWIO", "NHWC")
    params = (_normal(2, (3, 3, 3, 8), dtype) * 0.3, 0.1 * _normal(3, (8,), dtype),
              _normal(4, (3, 3, 8, 8), dtype) * 0.2, 0.1 * _normal(5, (8,), dtype),
              _normal(6, (16 * 4 * 4, 5), dtype) * 0.05)  # fmt: skip

    def conv(x, w, b):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn) + b

    def fn(params, x):
        w1, b1, w2, b2, head = params
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h = jax.nn.relu(conv(x, w1, b1))
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = jnp.concatenate([h, jax.nn.relu(conv(h, w2, b2))], axis=-1)
        h = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 2, 2, 1), "VALID") / 9
        left, right = jnp.split(h, 2, axis=-1)
        h = jnp.concatenate([right, left], axis=-1)
        return h.reshape(h.shape[0], -1) @ head

    return Case(fn, (params, _normal(1, (BATCH, 16, 16, 3), dtype)), 1, True)


def jnp_scan_blocks(dtype=jnp.float32) -> Case:
    """Residual ReLU blocks run by ``lax.scan`` over their stacked parameters (as ``nn.scan``
    does): ``h + relu(h W_i + b_i) ⊙ g_i``, the per-channel scale ``g_i`` a scanned input."""
    params = (_dense_init(2, (3, 10, 10), dtype), 0.1 * _normal(3, (3, 10), dtype),
              1 + 0.1 * _normal(4, (3, 10), dtype), _dense_init(5, (10, 4), dtype))  # fmt: skip

    def fn(params, x):
        w, b, g, head = params

        def block(h, p):
            w, b, g = p
            return h + jax.nn.relu(h @ w + b) * g, None

        return jax.lax.scan(block, x, (w, b, g))[0] @ head

    return Case(fn, (params, _normal(1, (BATCH, 10), dtype)), 1, True)


def jnp_checkpointed(dtype=jnp.float32) -> Case:
    """``jax.checkpoint`` blocks with ``checkpoint_name`` (the ``name`` primitive), a remat
    policy and a user ``custom_jvp`` ReLU."""
    from jax.ad_checkpoint import checkpoint_name

    @jax.custom_jvp
    def relu(x):
        return jnp.maximum(x, 0)

    @relu.defjvp
    def _relu_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return relu(x), t * (x > 0)

    params = (_dense_init(2, (10, 10), dtype), _dense_init(3, (10, 10), dtype),
              _dense_init(4, (10, 4), dtype))  # fmt: skip
    policy = jax.checkpoint_policies.save_only_these_names("hidden")

    def fn(params, x):
        w1, w2, head = params
        h = jax.checkpoint(lambda h: checkpoint_name(relu(h @ w1), "hidden"))(x)
        h = jax.checkpoint(lambda h: relu(h @ w2), policy=policy)(h)
        return h @ head

    return Case(fn, (params, _normal(1, (BATCH, 10), dtype)), 1, True)


def jnp_rope_attention(dtype=jnp.float32) -> Case:
    """Causal attention with rotary position embeddings written with ``jnp.stack`` (the
    ``stack`` primitive) and a ``jnp.where`` mask."""
    d, t = 8, 6
    params = tuple(_dense_init(i, (d, d), dtype) for i in range(2, 5)) + (
        _dense_init(5, (d, 4), dtype),)
    angles = jnp.arange(t)[:, None] / 10000 ** (jnp.arange(0, d, 2) / d)[None]
    sin, cos = jnp.sin(angles).astype(dtype), jnp.cos(angles).astype(dtype)

    def rotate(x):
        even, odd = x[..., ::2], x[..., 1::2]
        return jnp.stack([even * cos - odd * sin, even * sin + odd * cos], -1).reshape(x.shape)

    def fn(params, x):
        wq, wk, wv, head = params
        q, k, v = rotate(x @ wq), rotate(x @ wk), x @ wv
        scores = jnp.einsum("btd,bsd->bts", q, k) / np.sqrt(d)
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -1e9)
        return (jax.nn.softmax(scores) @ v).mean(axis=1) @ head

    return Case(fn, (params, _normal(1, (BATCH, t, d), dtype)), 1, False)


def jnp_moe(dtype=jnp.float32) -> Case:
    """A mixture of experts routed by ``lax.top_k``: the top-2 experts per token, weighted by a
    softmax over their router logits."""
    d, experts = 8, 4
    params = (_dense_init(2, (d, experts), dtype), _dense_init(3, (experts, d, d), dtype),
              _dense_init(4, (d, 3), dtype))  # fmt: skip

    def fn(params, x):
        router, weights, head = params
        logits, chosen = jax.lax.top_k(x @ router, 2)
        outputs = jnp.einsum("btd,edf->btef", x, weights)
        picked = jnp.take_along_axis(outputs, chosen[..., None], axis=2)
        mixed = jnp.sum(picked * jax.nn.softmax(logits)[..., None], axis=2)
        return mixed.mean(axis=1) @ head

    return Case(fn, (params, _normal(1, (BATCH, 5, d), dtype)), 1, False)


# --------------------------------------------------------------------------- registry

LIBRARY = {
    "eqx_mlp": "equinox",
    "eqx_cnn": "equinox",
    "eqx_attention": "equinox",
    "eqx_layernorm": "equinox",
    "hk_mlp": "haiku",
    "hk_resnet18": "haiku",
    "hk_resnet_v2": "haiku",
    "keras_resnet50": "keras",
    "keras_mobilenetv2": "keras",
    "keras_efficientnetb0": "keras",
    "hf_bert": "transformers",
    "hf_bert_pooler": "transformers",
    "hf_distilbert": "transformers",
    "hf_gpt2": "transformers",
    "hf_vit": "transformers",
    "hf_resnet": "transformers",
    "hf_clip_vision": "transformers",
    "linen_attention": "flax",
    "linen_rmsnorm": "flax",
    "linen_groupnorm": "flax",
    "linen_conv_transpose": "flax",
    "linen_depthwise": "flax",
    "nnx_cnn": "flax",
    "nnx_attention": "flax",
    "eqx_batchnorm": "equinox",
    "keras_layers": "keras",
    "hf_llama": "transformers",
    "linen_scan_blocks": "flax",
    "jnp_relu_cnn": "jax",
    "jnp_scan_blocks": "jax",
    "jnp_checkpointed": "jax",
    "jnp_rope_attention": "jax",
    "jnp_moe": "jax",
}
"""Model name → the foreign library its builder imports."""

SLOW = {"hk_resnet18", "hk_resnet_v2", "keras_resnet50", "keras_mobilenetv2",
        "keras_efficientnetb0"}
"""Models whose tests take more than a few seconds on two CPU cores."""

OP_BY_OP = {"eqx_mlp", "hk_mlp", "linen_rmsnorm", "nnx_cnn", "jnp_checkpointed", "jnp_moe"}
"""Models whose eager explanations run op by op, as elsewhere in the suite
(``JAXLRP_COMPILE_EAGER=0``); the others are explained eagerly through ``explain``'s own
compilation (its default): op by op, their first explanation takes 10 s to minutes on two
cores."""

RELU = {name for name in LIBRARY if name in {
    "eqx_mlp", "eqx_cnn", "hk_mlp", "hk_resnet18", "hk_resnet_v2", "keras_resnet50",
    "hf_resnet", "linen_conv_transpose", "linen_depthwise", "nnx_cnn", "eqx_batchnorm",
    "jnp_relu_cnn", "jnp_scan_blocks", "jnp_checkpointed"}}
"""Models that are ReLU networks (their builders return ``relu=True``)."""


def build(name: str, dtype=jnp.float32) -> Case:
    """The :class:`Case` of model ``name``."""
    return globals()[name](dtype)
