"""Shared code of the zennit parity tests: build a torchvision model with random weights, explain
it with zennit and with jaxlrp, and compare.

Used by ``test_parity_*.py`` (float32, in the pytest process) and run as a script for float64
(``python tests/parity/zennit_parity_harness.py --x64``), where ``jax_enable_x64`` must be set
before anything is traced, so it runs in its own process.

zennit is LGPL; nothing here is taken from its code, it is only called.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from jaxlrp.models import zennit_batchnorm_variables  # noqa: F401 (used by the tests)

ARCHITECTURES = ("vgg16", "vgg16_bn", "resnet18", "resnet50")
COMPOSITES = (
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
LOW = (0.0 - IMAGENET_MEAN) / IMAGENET_STD  # ZBox bounds: pixels in [0, 1], normalized
HIGH = (1.0 - IMAGENET_MEAN) / IMAGENET_STD
INPUT_SIZE = 64
BATCH = 2


def relative_l2(actual: Any, expected: Any) -> float:
    """``||actual - expected|| / ||expected||`` over all entries, in float64."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def torch_model(torch: Any, name: str, seed: int = 0) -> Any:
    """A torchvision ``name`` in eval mode with random weights that exercise every convention.

    torchvision's default initialisation (Kaiming), plus: random batch-norm affine parameters and
    running statistics (so that folding matters, eps included), and non-zero biases on VGG's
    convolutions and linear layers (torchvision initialises them to zero; the bias share of each
    rule is then part of the comparison).
    """
    import torchvision

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
            elif isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                if module.bias is not None:
                    module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def inputs(batch: int = BATCH, size: int = INPUT_SIZE, seed: int = 0) -> np.ndarray:
    """Normalized images (NHWC), pixels uniform in [0, 1]: inside the ZBox bounds."""
    pixels = np.random.default_rng(seed).uniform(size=(batch, size, size, 3))
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def zennit_composite(name: str, architecture: str, torch: Any, **kwargs: Any) -> Any:
    """zennit's preset ``name`` with the canonizers zennit recommends for ``architecture``."""
    from zennit import composites
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    canonizers = [ResNetCanonizer()] if architecture.startswith("resnet") else [
        SequentialMergeBatchNorm()
    ]
    if name == "EpsilonGammaBox":
        low = torch.tensor(LOW).reshape(1, 3, 1, 1)
        high = torch.tensor(HIGH).reshape(1, 3, 1, 1)
        return composites.EpsilonGammaBox(low=low, high=high, canonizers=canonizers, **kwargs)
    return getattr(composites, name)(canonizers=canonizers, **kwargs)


def jaxlrp_composite(name: str, **kwargs: Any) -> Any:
    """jaxlrp's preset of the same name (bounds per channel, NHWC)."""
    from jaxlrp import composites

    if name == "EpsilonGammaBox":
        return composites.EpsilonGammaBox(low=LOW, high=HIGH, **kwargs)
    return getattr(composites, name)(**kwargs)


class Pair:
    """One architecture on both sides: the torch model and the converted linen module."""

    def __init__(self, torch: Any, architecture: str, dtype: str = "float32", batch: int = BATCH):
        import jax
        import jax.numpy as jnp

        import jaxlrp.models

        self.torch = torch
        self.architecture = architecture
        self.torch_dtype = getattr(torch, dtype)
        self.np_dtype = np.dtype(dtype)
        self.model = torch_model(torch, architecture).to(self.torch_dtype)
        state = {k: v.detach().numpy() for k, v in self.model.state_dict().items()}
        self.module, variables = jaxlrp.models.load(architecture, weights=state)
        self.variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), variables)
        self.zennit_variables = zennit_batchnorm_variables(self.variables)
        self.x = inputs(batch).astype(self.np_dtype)
        with torch.no_grad():
            self.logits = self.model(torch.tensor(self.x.transpose(0, 3, 1, 2).copy())).numpy()
        self.target = self.logits.argmax(-1)

    def zennit(self, composite: str, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """zennit's relevance (NHWC) and the logits of zennit's canonized model.

        zennit's ``Gradient`` attributor uses ``attr_output`` as the vector of the
        vector-Jacobian product, i.e. as the output relevance itself (it does not multiply it by
        the output), so ``logit ⊙ onehot`` is passed explicitly.
        """
        from zennit.attribution import Gradient

        torch = self.torch
        x = torch.tensor(self.x.transpose(0, 3, 1, 2).copy())
        onehot = torch.nn.functional.one_hot(torch.tensor(self.target), self.logits.shape[-1])
        onehot = onehot.to(self.torch_dtype)
        rules = zennit_composite(composite, self.architecture, torch, **kwargs)
        with Gradient(self.model, rules) as attributor:
            out, relevance = attributor(x, attr_output=lambda output: output * onehot)
        return relevance.detach().numpy().transpose(0, 2, 3, 1), out.detach().numpy()

    def jaxlrp(self, composite: Any, variables: Any) -> np.ndarray:
        """jaxlrp's relevance (NHWC) for ``target`` (output relevance ``logit ⊙ onehot``)."""
        import jax.numpy as jnp

        import jaxlrp

        relevance = jaxlrp.explain(
            self.module.apply, variables, jnp.asarray(self.x), target=jnp.asarray(self.target),
            composite=composite,
        )
        return np.asarray(relevance)

    def compare(self, composite: str, **kwargs: Any) -> dict[str, float]:
        """Relative L2 errors of jaxlrp against zennit, and the relevance sums.

        ``error``: jaxlrp on the model zennit's canonizers produce (see
        :func:`zennit_batchnorm_variables`); ``error_model``: jaxlrp on the model itself.
        """
        expected, zennit_logits = self.zennit(composite, **kwargs)
        rules = jaxlrp_composite(composite, **kwargs)  # one object: one compilation for both
        actual = self.jaxlrp(rules, self.zennit_variables)
        actual_model = self.jaxlrp(rules, self.variables)
        return {
            "error": relative_l2(actual, expected),
            "error_model": relative_l2(actual_model, expected),
            "zennit_sum": float(expected.sum()),
            "jaxlrp_sum": float(actual.sum()),
            "logit": float(self.logits[np.arange(len(self.target)), self.target].sum()),
            "canonizer_logit_change": relative_l2(zennit_logits, self.logits),
        }


def main(argv: list[str] | None = None) -> None:
    """Print the error table (``--x64``: both sides in float64)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--x64", action="store_true", help="run both sides in float64")
    parser.add_argument("--arch", nargs="*", default=list(ARCHITECTURES))
    parser.add_argument("--composite", nargs="*", default=list(COMPOSITES))
    parser.add_argument("--stabilizer", type=float, default=None,
                        help="stabilizer of both sides (default: the presets' 1e-6)")
    args = parser.parse_args(argv)
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import torch

    torch.set_num_threads(2)
    dtype = "float64" if args.x64 else "float32"
    kwargs = {} if args.stabilizer is None else {"stabilizer": args.stabilizer}
    print(f"{dtype}, stabilizer {args.stabilizer or 'default'}")
    print("| architecture | composite | error (zennit's merged model) | error (model) | "
          "sum R zennit | sum R jaxlrp | logit | canonizer logit change | seconds |")
    for architecture in args.arch:
        pair = Pair(torch, architecture, dtype)
        for composite in args.composite:
            start = time.perf_counter()
            r = pair.compare(composite, **kwargs)
            print(f"| {architecture} | {composite} | {r['error']:.1e} | {r['error_model']:.1e} | "
                  f"{r['zennit_sum']:.4g} | {r['jaxlrp_sum']:.4g} | {r['logit']:.4g} | "
                  f"{r['canonizer_logit_change']:.1e} | {time.perf_counter() - start:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
