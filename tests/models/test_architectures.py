"""Each zoo model, given a torchvision state dict, computes what the torchvision model computes.

Random weights (batch norm with random running statistics, in eval mode) are converted with
``load(name, weights=state_dict)`` and both forwards are compared on random inputs. Inputs are
64x64 where the architecture allows: for VGG that makes the adaptive pooling upsample 2x2 → 7x7.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlrp.models import load

from .conftest import relative_l2


def _randomize_batch_norm(torch, model):
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = 0.1 * torch.randn(n, generator=generator)
            module.running_mean = 0.1 * torch.randn(n, generator=generator)
            module.running_var = torch.rand(n, generator=generator) + 0.5
    return model.eval()


def _state_dict(model) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def _compare(torch, name, model, input_shape, tolerance=1e-5):
    _randomize_batch_norm(torch, model)
    module, variables = load(name, weights=_state_dict(model))
    x = np.random.default_rng(0).normal(size=input_shape).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    actual = np.asarray(module.apply(variables, jnp.asarray(x)))
    assert actual.shape == expected.shape
    assert relative_l2(actual, expected) < tolerance


@pytest.fixture
def torchvision(torch):
    torch.manual_seed(0)
    return pytest.importorskip("torchvision")


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn"])
def test_vgg_matches_torchvision_with_adaptive_upsampling(torch, torchvision, name):
    model = getattr(torchvision.models, name)(weights=None)
    _compare(torch, name, model, (2, 64, 64, 3))


def test_vgg_matches_torchvision_at_an_odd_size(torch, torchvision):
    """44x44 → 1x1 after the features: every output bin of the pooling repeats one pixel."""
    _compare(torch, "vgg16", torchvision.models.vgg16(weights=None), (1, 44, 44, 3))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_matches_torchvision(torch, torchvision, name):
    model = getattr(torchvision.models, name)(weights=None)
    _compare(torch, name, model, (2, 64, 64, 3))


def test_resnet18_matches_torchvision_at_an_odd_size(torch, torchvision):
    """Odd sizes exercise the stride-2 padding conventions of conv1, maxpool and downsample."""
    _compare(torch, "resnet18", torchvision.models.resnet18(weights=None), (1, 57, 43, 3))


def test_mnist_cnn_matches_the_digit_recognizer_architecture(torch):
    """A torch twin of ``digit_recognizer.model.CNN`` (rebuilt here: that package needs torch)."""
    nn = torch.nn
    model = nn.Module()
    model.conv_layers = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
    )  # fmt: skip
    model.fc_layers = nn.Sequential(nn.Linear(1152, 256), nn.ReLU(), nn.Linear(256, 10))
    model.forward = lambda x: model.fc_layers(model.conv_layers(x).flatten(1))
    _compare(torch, "mnist_cnn", model, (3, 28, 28, 1))
