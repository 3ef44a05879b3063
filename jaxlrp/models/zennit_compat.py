"""Reproducing zennit's batch-norm canonization exactly, as an explicit opt-in.

zennit's ``MergeBatchNorm`` canonizer folds ``γ/√(var + ε)`` and the shift into the preceding
layer and then "resets" the batch norm to mean 0, variance 1, γ = 1, β = 0. That reset layer is
not the identity: it still divides by ``√(1 + ε)``. zennit therefore explains a slightly different
model, the original with every batch norm's ``γ`` and ``β`` divided by ``√(1 + ε)`` (logits move by
~5e-5 to 1.5e-4 relative on ResNet-18/50 and VGG-16-BN).

jaxlrp folds batch norm exactly (ε included) and explains the model it is given; that is the
default and it is correct. To compare with zennit number for number, explain the variables this
function returns instead::

    variables_z = jaxlrp.models.zennit_batchnorm_variables(variables, eps=1e-5)
    jaxlrp.explain(module.apply, variables_z, x, target=t, composite=c)

See ``docs/zennit-parity.md`` for the measurements.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def zennit_batchnorm_variables(variables: Any, eps: float = 1e-5) -> Any:
    """The variables of the model zennit's batch-norm canonizers actually explain.

    Every batch-norm parameter dict (one holding both ``scale`` and ``bias``) under
    ``variables["params"]`` gets ``scale / √(1 + eps)`` and ``bias / √(1 + eps)``.

    Args:
      variables: linen variables ``{"params": ..., "batch_stats": ...}``.
      eps: the batch norms' ε (torch's default 1e-5).

    Returns:
      New variables; the input is not modified.
    """
    factor = 1.0 / np.sqrt(1.0 + eps)

    def walk(tree: Any) -> Any:
        if not hasattr(tree, "items"):
            return tree
        if "scale" in tree and "bias" in tree:
            return {**tree, "scale": tree["scale"] * factor, "bias": tree["bias"] * factor}
        return {key: walk(value) for key, value in tree.items()}

    return {**variables, "params": walk(variables["params"])}
