"""``convert_state_dict``: a PyTorch state dict becomes Flax variables that compute what the
torch model computes. The torch side is written out in NumPy (NCHW, OIHW), no torch needed."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.models import convert_state_dict


class Net(nn.Module):
    """conv 3x3 → batch norm → depthwise 1x1 conv → flatten → dense, named like the torch
    ``features.0``, ``features.1``, ``features.2``, ``classifier.0``."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), padding="VALID", name="features_0")(x)
        x = nn.BatchNorm(use_running_average=True, name="features_1")(x)
        x = nn.Conv(4, (1, 1), feature_group_count=4, name="features_2")(x)
        return nn.Dense(5, name="classifier_0")(x.reshape(x.shape[0], -1))


LAYOUTS = {"classifier_0": (2, 2, 4)}  # the dense layer reads a flattened (H, W, C) = (2, 2, 4)


def _torch_state_dict(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {
        "features.0.weight": (4, 3, 3, 3), "features.0.bias": (4,),
        "features.1.weight": (4,), "features.1.bias": (4,),
        "features.1.running_mean": (4,), "features.2.weight": (4, 1, 1, 1),
        "features.2.bias": (4,), "classifier.0.weight": (5, 16), "classifier.0.bias": (5,),
    }  # fmt: skip
    state = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    state["features.1.running_var"] = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
    state["features.1.num_batches_tracked"] = np.array(10, np.int64)
    return state


def _torch_forward(state, x_nchw):
    """What ``torch.nn.Sequential(Conv2d, BatchNorm2d, Conv2d(groups=4), Flatten, Linear)``
    computes in eval mode, by hand (float64)."""
    s = {k: np.asarray(v, np.float64) for k, v in state.items()}
    x = np.asarray(x_nchw, np.float64)
    w = s["features.0.weight"]
    n, _, h, wd = x.shape
    y = np.zeros((n, 4, h - 2, wd - 2))
    for o in range(4):
        for i in range(h - 2):
            for j in range(wd - 2):
                y[:, o, i, j] = (x[:, :, i : i + 3, j : j + 3] * w[o]).sum(axis=(1, 2, 3))
    y = y + s["features.0.bias"][None, :, None, None]
    mean, var = s["features.1.running_mean"], s["features.1.running_var"]
    y = (y - mean[None, :, None, None]) / np.sqrt(var + 1e-5)[None, :, None, None]
    y = y * s["features.1.weight"][None, :, None, None] + s["features.1.bias"][None, :, None, None]
    y = y * s["features.2.weight"][:, 0, 0, 0][None, :, None, None]
    y = y + s["features.2.bias"][None, :, None, None]
    flat = y.reshape(n, -1)  # torch's (C, H, W) order
    return flat @ s["classifier.0.weight"].T + s["classifier.0.bias"]


@pytest.fixture(scope="module")
def template():
    return jax.eval_shape(Net().init, jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


def test_converted_model_computes_what_the_torch_model_computes(template):
    state = _torch_state_dict()
    variables = convert_state_dict(state, template, LAYOUTS)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype(np.float32)  # NCHW
    ours = Net().apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(ours, _torch_forward(state, x), rtol=1e-5, atol=1e-5)


def test_layouts_and_collections(template):
    state = _torch_state_dict()
    variables = convert_state_dict(state, template, LAYOUTS)
    params, stats = variables["params"], variables["batch_stats"]
    # OIHW → HWIO: kernel[i, j, c, o] = weight[o, c, i, j]
    assert params["features_0"]["kernel"][0, 2, 1, 3] == state["features.0.weight"][3, 1, 0, 2]
    assert params["features_2"]["kernel"].shape == (1, 1, 1, 4)  # depthwise: I = 1
    # batch norm: weight/bias are params scale/bias, running statistics batch_stats mean/var
    np.testing.assert_array_equal(params["features_1"]["scale"], state["features.1.weight"])
    np.testing.assert_array_equal(stats["features_1"]["var"], state["features.1.running_var"])
    assert set(stats["features_1"]) == {"mean", "var"}  # num_batches_tracked is dropped
    # dense after a flatten: torch input index c*H*W + h*W + w → NHWC index h*W*C + w*C + c
    c, h, w = 3, 1, 0
    assert (
        params["classifier_0"]["kernel"][h * 2 * 4 + w * 4 + c, 2]
        == (state["classifier.0.weight"][2, c * 4 + h * 2 + w])
    )


def test_without_the_flatten_layout_the_dense_kernel_is_only_transposed(template):
    state = _torch_state_dict()
    variables = convert_state_dict(state, template)
    np.testing.assert_array_equal(variables["params"]["classifier_0"]["kernel"],
                                  state["classifier.0.weight"].T)  # fmt: skip


def test_dtypes_follow_the_template():
    template = jax.eval_shape(
        lambda: jax.tree_util.tree_map(
            lambda v: v.astype(jnp.float16),
            Net().init(jax.random.key(0), jnp.zeros((1, 4, 4, 3))),
        )
    )
    variables = convert_state_dict(_torch_state_dict(), template, LAYOUTS)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {jnp.dtype("float16")}


def test_missing_unexpected_and_misshapen_keys_are_refused(template):
    state = _torch_state_dict()
    del state["features.2.bias"]
    state["features.0.num_batches_tracked"] = np.array(1)  # not a batch norm: unexpected
    with pytest.raises(ValueError, match=r"missing keys \['features.2.bias'\], unexpected keys "
                                         r"\['features.0.num_batches_tracked'\]"):  # fmt: skip
        convert_state_dict(state, template, LAYOUTS)
    state = _torch_state_dict()
    state["classifier.0.weight"] = state["classifier.0.weight"].T
    with pytest.raises(ValueError, match=r"'classifier.0.weight' has shape \(16, 5\), the model "
                                         r"expects \(5, 16\)"):  # fmt: skip
        convert_state_dict(state, template, LAYOUTS)
