"""Evaluating explanations: region perturbation (AOPC, LeRF−MoRF area), conservation, and the
model-randomization sanity check — JAX-native, jit-compatible and batched.

    from jaxlrp import attribution, evaluate
    r = attribution.gradient(model.apply, variables, x, target=y)
    run = jax.jit(lambda v, x, r, y, k: evaluate.region_perturbation(
        model.apply, v, x, relevance=r, target=y, key=k, patch=4,
        perturbation=evaluate.UniformNoise(0.0, 1.0)))
    curves = run(variables, x, r, y, jax.random.key(0))
    print(curves.aopc_morf.mean(), curves.area.mean())

References:
  Samek et al., "Evaluating the visualization of what a deep neural network has learned",
  IEEE TNNLS 2017; Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018.
"""

from jaxlrp.evaluate.conservation import (
    Completeness,
    LayerwiseConservation,
    completeness,
    layerwise_conservation,
    sequential_stages,
)
from jaxlrp.evaluate.perturbation import (
    Blur,
    Constant,
    PerturbationCurves,
    UniformNoise,
    aopc,
    area_between,
    perturbation_curve,
    region_perturbation,
    region_scores,
)
from jaxlrp.evaluate.plotting import plot_curves, plot_randomization
from jaxlrp.evaluate.randomization import (
    RandomizationResult,
    cascading_randomization,
    parameter_groups,
    randomize_group,
    spearman,
    ssim,
)

__all__ = [
    "Blur",
    "Completeness",
    "Constant",
    "LayerwiseConservation",
    "PerturbationCurves",
    "RandomizationResult",
    "UniformNoise",
    "aopc",
    "area_between",
    "cascading_randomization",
    "completeness",
    "layerwise_conservation",
    "parameter_groups",
    "perturbation_curve",
    "plot_curves",
    "plot_randomization",
    "randomize_group",
    "region_perturbation",
    "region_scores",
    "sequential_stages",
    "spearman",
    "ssim",
]
