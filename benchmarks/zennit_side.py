"""zennit (PyTorch) on the same weights, batch and images, timed in the same run (``--zennit``).

Only torchvision architectures (``vgg16``, ``vgg16_bn``, ``resnet18``, ``resnet50``) have a
zennit twin here: the torchvision model gets random weights (torchvision's initialisation plus
random batch-norm statistics and non-zero biases, as in ``tests/parity``), its state dict is
converted into the jaxlrp model, and both explain the same images for the same classes. A
zennit call is ``with Gradient(model, composite): attributor(x, attr_output)``, so it includes
registering and removing the rule hooks (milliseconds). zennit is LGPL; it is only called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.measure import Method

ARCHITECTURES = ("vgg16", "vgg16_bn", "resnet18", "resnet50")
_MISSING = ("--zennit needs the 'parity' extra (torch, torchvision, zennit): "
            "pip install -e '.[parity]'")  # fmt: skip


def _import() -> tuple[Any, Any, Any]:
    try:
        import torch
        import torchvision
        import zennit  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"{_MISSING} ({err})") from err
    return torch, torchvision, zennit


def torch_model(name: str, seed: int = 0) -> Any:
    """torchvision ``name`` in eval mode with random weights, batch-norm statistics and biases."""
    torch, torchvision, _ = _import()
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            elif isinstance(module, torch.nn.Conv2d | torch.nn.Linear) and module.bias is not None:
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def state_dict(model: Any) -> dict[str, np.ndarray]:
    """The model's weights as numpy arrays (torch layout), for ``jaxlrp.models.load``."""
    return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def _composite(name: str, architecture: str, low: np.ndarray, high: np.ndarray) -> Any:
    torch, _, _ = _import()
    from zennit import composites, rules, types
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    canonizers = (
        [ResNetCanonizer()] if architecture.startswith("resnet") else [SequentialMergeBatchNorm()]
    )
    if name == "epsilon":
        layer_map = [(types.Convolution, rules.Epsilon()), (types.Linear, rules.Epsilon()),
                     (types.AvgPool, rules.Norm())]  # fmt: skip
        return composites.LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
    if name == "epsilon-gamma-box":
        return composites.EpsilonGammaBox(
            low=torch.tensor(low, dtype=torch.float32).reshape(1, -1, 1, 1),
            high=torch.tensor(high, dtype=torch.float32).reshape(1, -1, 1, 1),
            canonizers=canonizers,
        )
    presets = {"epsilon-plus-flat": composites.EpsilonPlusFlat,
               "epsilon-alpha2-beta1": composites.EpsilonAlpha2Beta1}  # fmt: skip
    return presets[name](canonizers=canonizers)


def methods(architecture: str, model: Any, x_nhwc: np.ndarray, target: np.ndarray,
            names: tuple[str, ...], low: np.ndarray, high: np.ndarray) -> list[Method]:  # fmt: skip
    """``torch.grad`` (the target logits summed, w.r.t. the input) and one zennit method per
    composite, as zero-argument callables."""
    torch, _, _ = _import()
    from zennit.attribution import Gradient

    x = torch.tensor(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    index = torch.tensor(target, dtype=torch.long)
    with torch.no_grad():
        classes = model(x[:1]).shape[-1]
    onehot = torch.nn.functional.one_hot(index, classes).to(torch.float32)

    def grad() -> Any:
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        (grad_x,) = torch.autograd.grad(out.gather(1, index[:, None]).sum(), xg)
        return grad_x

    def explainer(composite: Any) -> Callable[[], Any]:
        def explain() -> Any:
            with Gradient(model, composite) as attributor:
                _, relevance = attributor(x, attr_output=lambda out: out * onehot)
            return relevance

        return explain

    out = [Method("torch.grad", "torch", call=grad)]
    for name in names:
        out.append(Method(f"zennit {name}", "zennit",
                          call=explainer(_composite(name, architecture, low, high))))  # fmt: skip
    return out
