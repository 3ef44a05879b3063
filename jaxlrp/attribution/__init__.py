"""Attribution baselines sharing :func:`jaxlrp.explain`'s calling convention.

Every method is ``method(f, *args, target=..., argnums=-1, **options)`` and returns an array of
``args[argnums]``'s shape: the attribution of the target score ``f(*args)[..., target]`` (per
example when ``f`` is batched; a float ``target`` of the output's shape weights the outputs).
All compose with ``jax.jit`` and ``jax.vmap``; SmoothGrad, integrated gradients and occlusion
evaluate their copies with ``lax.map`` in chunks (``chunk_size``), not Python loops::

    from jaxlrp import attribution, composites
    g = attribution.gradient(model.apply, variables, x, target=3)
    ig = attribution.integrated_gradients(model.apply, variables, x, target=3, steps=64)
    r = attribution.method("lrp", composite=composites.EpsilonPlusFlat())(
        model.apply, variables, x, target=3)

Methods: :func:`gradient`, :func:`saliency`, :func:`gradient_x_input`, :func:`smoothgrad`,
:func:`integrated_gradients`, :func:`guided_backprop`, :func:`deconvnet`, :func:`occlusion`,
:func:`lrp`, :func:`random`; by name: :data:`METHODS`, :func:`method`, :func:`available`.
"""

from jaxlrp.attribution.gradient import (
    gradient,
    gradient_x_input,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from jaxlrp.attribution.occlusion import occlusion, random
from jaxlrp.attribution.propagation import deconvnet, guided_backprop, lrp
from jaxlrp.attribution.registry import METHODS, available, method

__all__ = [
    "METHODS",
    "available",
    "deconvnet",
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "integrated_gradients",
    "lrp",
    "method",
    "occlusion",
    "random",
    "saliency",
    "smoothgrad",
]
