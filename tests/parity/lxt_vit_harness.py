"""Shared code of the LXT ViT parity test: explain torchvision's ``VisionTransformer`` with
LXT 2.1's efficient rules (PyTorch) and jaxlrp's :class:`~jaxlrp.models.ViT` on the same random
weights, and compare the relevance of the pixels.

The explained function is the same on both sides: NCHW images (NHWC for jaxlrp) → patch
convolution → class token and position embeddings → pre-LN blocks → ``encoder.ln`` → head on the
class token, explained for one class per image (``R_out = logit ⊙ onehot``); LXT's relevance is
``x ⊙ ∂̃logit/∂x`` (gradient × input with modified gradients).

LXT's side runs in a child process (``python tests/parity/lxt_vit_harness.py IN OUT``): LXT
patches ``torch.nn.LayerNorm.forward``, ``torch.nn.GELU.forward`` and
``torch.nn.MultiheadAttention.forward`` for the whole process, which would leak into every
other test that builds one. The child needs only numpy, torch, torchvision and lxt.

Two LXT variants are computed in the child:

* ``cp``: ``lxt.efficient.monkey_patch(torchvision.models.vision_transformer)``, LXT's own
  ViT patch map (``lxt/efficient/models/vit_torch.py``): identity rule on GELU and LayerNorm,
  ``query`` and ``key`` of ``MultiheadAttention`` detached (CP-LRP inside the attention);
* ``attnlrp``: the same, with ``MultiheadAttention.forward`` then replaced by one that applies
  LXT's ``divide_gradient`` to the attention's inputs as LXT's HF attention wrapper does
  (``query`` and ``key`` /4, ``value`` /2: the uniform rule on ``q·kᵀ`` and ``A·v``) and keeps
  the softmax's plain gradient. LXT ships no AttnLRP patch for torchvision's ViT; this one is
  built only from LXT's rules (see docs/lxt-parity.md).

LXT is BSD-3-Clause; nothing here is taken from its code, it is only called.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from lxt_harness import run_child  # beside this file: on sys.path as a script or a test

# torchvision.models.VisionTransformer's arguments of jaxlrp's vit_tiny.
TINY = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
            num_classes=10)  # fmt: skip
BATCH = 2
VARIANTS = ("cp", "attnlrp")


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """vit_tiny's torchvision state dict, every parameter random (float32 values, so that the
    float64 comparisons run on the same weights on both sides).

    Kernels LeCun-normal, class token and position embeddings N(0, 0.02²) (as
    ``random_vit_variables``), and, unlike it, biases N(0, 0.1²), LayerNorm scales U(0.7, 1.3)
    and shifts N(0, 0.1²), so that every bias and norm convention is exercised.
    """
    import jax
    import jax.numpy as jnp

    from jaxlrp.models import load
    from jaxlrp.models.vit import vit_torch_key

    _, variables = load("vit_tiny", seed=seed)
    rng = np.random.default_rng(seed + 1)
    state = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
        names = tuple(k.key for k in path)
        array = np.asarray(jnp.asarray(leaf), np.float64)
        if names[-1] == "bias":
            array = 0.1 * rng.standard_normal(array.shape)
        elif names[-1] == "scale":
            array = rng.uniform(0.7, 1.3, array.shape)
        if names[-1] == "kernel":
            array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
        state[vit_torch_key(names)] = array.astype(np.float32)
    return state


def images(seed: int = 0) -> np.ndarray:
    """``BATCH`` NHWC images of N(0, 1) pixels (already "normalized"), float32."""
    size = TINY["image_size"]
    return np.random.default_rng(seed).standard_normal((BATCH, size, size, 3)).astype(np.float32)


def top_classes(state: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The explained classes: each image's arg-max logit under jaxlrp's forward pass."""
    import jax

    from jaxlrp.models import load

    module, variables = load("vit_tiny", weights=state)
    return np.asarray(jax.jit(module.apply)(variables, x).argmax(-1))


def lxt_matching_composite(attention: str) -> Any:
    """jaxlrp's composite computing what LXT's efficient patches compute on the ViT.

    LXT is gradient × input: the operations it does not patch (patch convolution, ``in_proj``,
    ``out_proj``, the MLP's dense layers, the head, the LayerNorm scale/shift, the position
    embeddings, the residual sums, the LayerNorm centring) are LRP-0 without a stabilizer:
    ``rules.Zero`` with a denominator clipped at 1e-30 and ``Norm(0)`` on the sums. Its patches
    are AttnLRP's ``1/σ`` held constant (the ``SignalTakesAll`` norm rule) and GELU's identity
    rule (``Pass``). ``attention="cp"``: ``A`` held constant in ``A·v``
    (``SignalTakesAll``); ``"attnlrp"``: ``UniformProduct`` on ``q·kᵀ`` and ``A·v`` and the
    softmax's gradient (``TaylorAtInput``).
    """
    import dataclasses

    from jaxlrp import composites, rules

    base = {"cp": composites.CPLRP, "attnlrp": composites.AttnLRP}[attention]
    lrp0 = rules.Zero(stabilizer=1e-30)
    return dataclasses.replace(
        base(epsilon=0.0, stabilizer=0.0), default=lrp0, dense=lrp0, conv=lrp0, affine=lrp0,
        name=f"{base.__name__}-as-LXT",
    )  # fmt: skip


def jaxlrp_relevance(
    state: dict[str, np.ndarray], x: np.ndarray, targets: np.ndarray, composite: Any,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """jaxlrp's relevance of the NHWC pixels and the logits, in ``dtype`` (``"float64"`` needs
    ``jax.enable_x64``)."""
    import jax
    import jax.numpy as jnp

    import jaxlrp
    from jaxlrp.models import load

    module, variables = load("vit_tiny", weights=state)
    variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), variables)
    x = jnp.asarray(x, dtype)

    @jax.jit
    def run(variables, x):
        relevance = jaxlrp.explain(module.apply, variables, x, target=jnp.asarray(targets),
                                   composite=composite)  # fmt: skip
        return relevance, module.apply(variables, x)

    relevance, logits = run(variables, x)
    return np.asarray(relevance), np.asarray(logits)


def lxt_relevance(
    state: dict[str, np.ndarray],
    x: np.ndarray,
    targets: np.ndarray,
    dtypes: tuple[str, ...] = ("float64", "float32"),
    timeout: float = 120,
) -> dict[str, np.ndarray]:
    """LXT's relevance in a child process, for each variant and dtype.

    Returns ``{"R_<variant>_<dtype>": (batch, H, W, 3) NHWC, "logits_<dtype>": (batch,
    classes)}``.

    Raises:
        RuntimeError: With the child's output if it fails.
    """
    return run_child(__file__, timeout, x=x, targets=targets, dtypes=np.array(dtypes),
                     **{f"state/{k}": v for k, v in state.items()})  # fmt: skip


def agreement(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Agreement of NHWC relevance ``actual`` with ``expected`` (float64).

    ``pixel_*`` compare the per-pixel relevance ``Σ_channels R``: ``max_rel`` (max abs error /
    max |expected|) and Pearson ``corr``; ``rel_l2`` is ``‖actual − expected‖ / ‖expected‖``
    over every entry; ``sum_rel`` compares ``Σ R`` per image (max abs error / max |Σ expected|).
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    pixels, expected_pixels = actual.sum(-1).ravel(), expected.sum(-1).ravel()
    totals = actual.reshape(len(actual), -1).sum(1)
    expected_totals = expected.reshape(len(expected), -1).sum(1)
    return {
        "pixel_max_rel": float(np.abs(pixels - expected_pixels).max()
                               / np.abs(expected_pixels).max()),  # fmt: skip
        "pixel_corr": float(np.corrcoef(pixels, expected_pixels)[0, 1]),
        "rel_l2": float(np.linalg.norm(actual - expected) / np.linalg.norm(expected)),
        "sum_rel": float(np.abs(totals - expected_totals).max() / np.abs(expected_totals).max()),
    }


def _attnlrp_attention_forward(self, query, key, value, *args, **kwargs):
    """AttnLRP on ``nn.MultiheadAttention`` from LXT's rules: the uniform rule's halving of the
    gradient at ``q·kᵀ`` and at ``A·v``, applied to the attention's inputs (``q`` and ``k`` are
    behind both products: /4; ``v`` behind ``A·v`` only: /2). The projections are linear, so
    dividing before them is dividing after them; the softmax keeps its plain gradient."""
    from lxt.efficient.rules import divide_gradient

    query, key = divide_gradient(query, 4), divide_gradient(key, 4)
    value = divide_gradient(value, 2)
    return self.original_forward(query, key, value, *args, **kwargs)


def _lxt_main(inputs: str, outputs: str) -> None:
    """The child process: patch torchvision's ViT with LXT, load the state dict, explain."""
    import torch
    from lxt.efficient import monkey_patch
    from torchvision.models import vision_transformer

    with np.load(inputs) as data:
        args = {key: data[key] for key in data.files}
    state = {k[len("state/"):]: torch.from_numpy(v) for k, v in args.items()
             if k.startswith("state/")}  # fmt: skip
    monkey_patch(vision_transformer)  # LXT's ViT map: CP-LRP in the attention (before building)
    torch.manual_seed(0)
    model = vision_transformer.VisionTransformer(**TINY).eval().double()
    model.load_state_dict(state, strict=True)  # float32 values, exact in float64
    targets = torch.from_numpy(args["targets"]).long()
    results = {}
    for variant in VARIANTS:
        if variant == "attnlrp":
            torch.nn.MultiheadAttention.forward = _attnlrp_attention_forward
        for dtype_name in args["dtypes"]:
            dtype = getattr(torch, str(dtype_name))
            model = model.to(dtype)
            x = torch.from_numpy(args["x"].transpose(0, 3, 1, 2).copy()).to(dtype)
            x.requires_grad_(True)
            logits = model(x)
            logits.gather(1, targets[:, None]).sum().backward()  # independent examples
            relevance = (x * x.grad).detach().numpy().transpose(0, 2, 3, 1)
            results[f"R_{variant}_{dtype_name}"] = relevance
            results[f"logits_{dtype_name}"] = logits.detach().numpy()
    np.savez(outputs, **results)


if __name__ == "__main__":
    _lxt_main(sys.argv[1], sys.argv[2])
