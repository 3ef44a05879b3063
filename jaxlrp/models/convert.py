"""Convert PyTorch state dicts into Flax linen variables, strictly.

The zoo's modules name each layer after its torch state-dict prefix with ``.`` written ``_``
(``layer1.0.conv1`` ↔ ``layer1_0/conv1``), so the layout follows from the Flax variables:

============================  ==========================================  =====================
Flax layer                    torch keys                                  layout change
============================  ==========================================  =====================
``nn.Conv`` (also depthwise)  ``weight`` (O, I/groups, kh, kw), ``bias``   OIHW → HWIO
``nn.Dense``                  ``weight`` (out, in), ``bias``               transpose
``nn.BatchNorm``              ``weight``, ``bias``, ``running_mean``,      → ``params`` scale,
                              ``running_var`` (``num_batches_tracked``     bias; ``batch_stats``
                              is accepted and ignored)                     mean, var
============================  ==========================================  =====================

A dense layer fed by a flattened feature map (``flatten_layouts``) also has its input axis
permuted from torch's (C, H, W) flatten order to the (H, W, C) order of NHWC arrays.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["convert_state_dict", "torch_prefix"]

_IGNORED_BN_KEYS = ("num_batches_tracked",)


def torch_prefix(path: tuple[str, ...]) -> str:
    """Torch state-dict prefix of a Flax module path.

    ``("layer1_0", "conv1")`` → ``"layer1.0.conv1"``: a trailing ``_<digits>`` of each path
    part is a ``Sequential``/``ModuleList`` index.
    """
    return ".".join(re.sub(r"_(\d+)$", r".\1", part) for part in path)


def _leaf_modules(tree: Mapping, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Mapping]:
    """Modules (by path) that directly own arrays in a ``params`` tree."""
    found: dict[tuple[str, ...], Mapping] = {}
    if any(not isinstance(v, Mapping) for v in tree.values()):
        found[path] = tree
    for name, value in tree.items():
        if isinstance(value, Mapping):
            found.update(_leaf_modules(value, (*path, name)))
    return found


def param_leaves(tree: Mapping, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """The arrays of a nested ``params`` dict, by path (``("encoder", "layer_0", "kernel")``)."""
    found: dict[tuple[str, ...], Any] = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            found.update(param_leaves(value, (*path, name)))
        else:
            found[(*path, name)] = value
    return found


def set_leaf(tree: dict, path: tuple[str, ...], value: Any) -> None:
    """``tree[path[0]][path[1]]… = value``, creating the nested dicts on the way."""
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _dense_weight(layout: tuple[int, int, int] | None) -> Callable[[np.ndarray], np.ndarray]:
    def convert(weight: np.ndarray) -> np.ndarray:
        if layout is not None:  # (out, C*H*W) in torch's order → (out, H*W*C)
            height, width, channels = layout
            weight = weight.reshape(weight.shape[0], channels, height, width)
            weight = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
        return weight.T

    return convert


def _identity(array: np.ndarray) -> np.ndarray:
    return array


def _conv_weight(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)


def _plan(
    template: Mapping, flatten_layouts: Mapping[str, tuple[int, int, int]]
) -> tuple[dict[str, tuple[tuple[int, ...], tuple[str, ...], Callable]], set[str]]:
    """Map each expected torch key to (torch shape, Flax variable path, converter)."""
    plan: dict[str, tuple[tuple[int, ...], tuple[str, ...], Callable]] = {}
    optional: set[str] = set()
    for path, leaves in _leaf_modules(template["params"]).items():
        prefix = torch_prefix(path) + "."
        if "scale" in leaves:  # batch norm
            (channels,) = leaves["scale"].shape
            for torch_name, collection, name in (
                ("weight", "params", "scale"),
                ("bias", "params", "bias"),
                ("running_mean", "batch_stats", "mean"),
                ("running_var", "batch_stats", "var"),
            ):
                plan[prefix + torch_name] = ((channels,), (collection, *path, name), _identity)
            optional.update(prefix + key for key in _IGNORED_BN_KEYS)
            continue
        kernel = leaves["kernel"].shape
        if len(kernel) == 4:
            shape, convert = (kernel[3], kernel[2], kernel[0], kernel[1]), _conv_weight
        elif len(kernel) == 2:
            layout = flatten_layouts.get("/".join(path))
            shape, convert = (kernel[1], kernel[0]), _dense_weight(layout)
        else:
            raise ValueError(f"no torch layout for a kernel of shape {kernel} at {path}")
        plan[prefix + "weight"] = (shape, ("params", *path, "kernel"), convert)
        if "bias" in leaves:
            plan[prefix + "bias"] = (leaves["bias"].shape, ("params", *path, "bias"), _identity)
    return plan, optional


def convert_state_dict(
    state_dict: Mapping[str, Any],
    template: Mapping,
    flatten_layouts: Mapping[str, tuple[int, int, int]] | None = None,
) -> dict[str, dict]:
    """Turn a PyTorch state dict into the Flax variables of a zoo module.

    Args:
        state_dict: Torch key → array in PyTorch layout (numpy arrays, or anything
            ``np.asarray`` accepts, e.g. CPU torch tensors).
        template: The module's variables or their shapes (``jax.eval_shape`` of ``init``);
            only shapes and dtypes are used.
        flatten_layouts: Flax path (``"classifier_0"``) of each dense layer that reads a
            flattened feature map → that map's (H, W, C).

    Returns:
        ``{"params": ..., "batch_stats": ...}`` (the latter only when the model has batch
        norm) as nested dicts of ``jax.Array`` in the template's dtypes.

    Raises:
        ValueError: Naming every missing and unexpected key, or the first key whose shape
            differs, with the state dict's shape and the shape the model expects.
    """
    plan, optional = _plan(template, flatten_layouts or {})
    missing = sorted(set(plan) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(plan) - optional)
    if missing or unexpected:
        raise ValueError(
            f"state dict does not match the model: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    variables: dict[str, dict] = {}
    for key, (shape, target, convert) in plan.items():
        array = np.asarray(state_dict[key])
        if tuple(array.shape) != tuple(shape):
            raise ValueError(
                f"state dict entry {key!r} has shape {tuple(array.shape)}, "
                f"the model expects {tuple(shape)}"
            )
        leaf = template
        for part in target:
            leaf = leaf[part]
        set_leaf(variables, target, jnp.asarray(convert(array), dtype=leaf.dtype))
    return variables
