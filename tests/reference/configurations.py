"""The rule configurations jaxlrp is held to, each stated twice: as a jaxlrp composite and as the
equivalent NumPy reference composite.

The jaxlrp side is a function of the ``rules`` and ``composites`` modules (passed in), so this
table imports nothing from jaxlrp and the reference-only tests can use it before jaxlrp exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import numpy_lrp as ref
from .models import CASES, Case

CNN_CASES = tuple(name for name in CASES if name.startswith("cnn"))


def per_feature_bounds(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Box bounds that differ per input feature (MLP) or per channel (CNN), containing x."""
    n = case.x.shape[-1]
    spread = np.linspace(0.0, 0.5, n, dtype=np.float32)
    return (-1.0 - spread).astype(np.float32), (1.0 + spread[::-1]).astype(np.float32)


@dataclass(frozen=True)
class Configuration:
    name: str
    jaxlrp: Callable  # (rules, composites, case) -> jaxlrp composite
    reference: Callable  # (case) -> numpy_lrp.Composite
    cases: tuple[str, ...] = CASES


CONFIGURATIONS = (
    # one rule on every dense and conv layer
    Configuration(
        "zero_everywhere",
        lambda r, c, case: c.Composite(default=r.Zero()),
        lambda case: ref.Composite(default=ref.Zero()),
    ),
    Configuration(
        "epsilon_everywhere",
        lambda r, c, case: c.Composite(default=r.Epsilon()),
        lambda case: ref.Composite(default=ref.Epsilon()),
    ),
    Configuration(
        "large_epsilon_everywhere",
        lambda r, c, case: c.Composite(default=r.Epsilon(epsilon=0.1)),
        lambda case: ref.Composite(default=ref.Epsilon(0.1)),
    ),
    Configuration(
        "gamma_everywhere",
        lambda r, c, case: c.Composite(default=r.Gamma(gamma=0.25)),
        lambda case: ref.Composite(default=ref.Gamma(0.25)),
    ),
    Configuration(
        "large_gamma_everywhere",
        lambda r, c, case: c.Composite(default=r.Gamma(gamma=1.0)),
        lambda case: ref.Composite(default=ref.Gamma(1.0)),
    ),
    Configuration(  # the overview's gamma is meant for non-negative inputs: not on the input layer
        "zbox_first_original_gamma_elsewhere",
        lambda r, c, case: c.Composite(
            default=r.Gamma(gamma=0.25, generalized=False),
            first=r.ZBox(low=case.low, high=case.high),
        ),
        lambda case: ref.Composite(
            default=ref.OriginalGamma(0.25), first=ref.ZBox(case.low, case.high)
        ),
    ),
    Configuration(
        "zplus_everywhere",
        lambda r, c, case: c.Composite(default=r.ZPlus()),
        lambda case: ref.Composite(default=ref.ZPlus()),
    ),
    Configuration(
        "alpha2beta1_everywhere",
        lambda r, c, case: c.Composite(default=r.AlphaBeta(alpha=2.0, beta=1.0)),
        lambda case: ref.Composite(default=ref.AlphaBeta(2.0, 1.0)),
    ),
    Configuration(
        "alpha1beta0_everywhere",
        lambda r, c, case: c.Composite(default=r.AlphaBeta(alpha=1.0, beta=0.0)),
        lambda case: ref.Composite(default=ref.AlphaBeta(1.0, 0.0)),
    ),
    # first-layer rules, another rule elsewhere
    Configuration(
        "zbox_first_gamma_elsewhere",
        lambda r, c, case: c.Composite(
            default=r.Gamma(gamma=0.25), first=r.ZBox(low=case.low, high=case.high)
        ),
        lambda case: ref.Composite(default=ref.Gamma(0.25), first=ref.ZBox(case.low, case.high)),
    ),
    Configuration(
        "zbox_per_feature_bounds_first_epsilon_elsewhere",
        lambda r, c, case: c.Composite(
            default=r.Epsilon(),
            first=r.ZBox(low=per_feature_bounds(case)[0], high=per_feature_bounds(case)[1]),
        ),
        lambda case: ref.Composite(
            default=ref.Epsilon(), first=ref.ZBox(*per_feature_bounds(case))
        ),
    ),
    Configuration(
        "wsquare_first_epsilon_elsewhere",
        lambda r, c, case: c.Composite(default=r.Epsilon(), first=r.WSquare()),
        lambda case: ref.Composite(default=ref.Epsilon(), first=ref.WSquare()),
    ),
    Configuration(
        "flat_first_zplus_elsewhere",
        lambda r, c, case: c.Composite(default=r.ZPlus(), first=r.Flat()),
        lambda case: ref.Composite(default=ref.ZPlus(), first=ref.Flat()),
    ),
    # presets and pooling options (CNNs only)
    Configuration(
        "epsilon_gamma_box",
        lambda r, c, case: c.EpsilonGammaBox(low=case.low, high=case.high),
        lambda case: ref.EpsilonGammaBox(case.low, case.high),
        CNN_CASES,
    ),
    Configuration(
        "epsilon_gamma_box_original_gamma",
        lambda r, c, case: c.EpsilonGammaBox(low=case.low, high=case.high, generalized=False),
        lambda case: ref.EpsilonGammaBox(case.low, case.high, generalized=False),
        CNN_CASES,
    ),
    Configuration(
        "proportional_maxpool_gamma",
        lambda r, c, case: c.Composite(
            default=r.Gamma(gamma=0.25), maxpool=r.ProportionalMaxPool()
        ),
        lambda case: ref.Composite(default=ref.Gamma(0.25), maxpool="proportional"),
        CNN_CASES,
    ),
    Configuration(
        "proportional_maxpool_epsilon",
        lambda r, c, case: c.Composite(default=r.Epsilon(), maxpool=r.ProportionalMaxPool()),
        lambda case: ref.Composite(default=ref.Epsilon(), maxpool="proportional"),
        CNN_CASES,
    ),
    Configuration(
        "explicit_winner_takes_all_maxpool_zplus",
        lambda r, c, case: c.Composite(default=r.ZPlus(), maxpool=r.WinnerTakesAll()),
        lambda case: ref.Composite(default=ref.ZPlus(), maxpool="winner"),
        CNN_CASES,
    ),
)

BY_NAME = {configuration.name: configuration for configuration in CONFIGURATIONS}

# (configuration name, case name) for every pair that is tested
PAIRS = tuple(
    (configuration.name, case) for configuration in CONFIGURATIONS for case in configuration.cases
)


def targets_for(case: Case) -> np.ndarray:
    """One target class per example, different between examples."""
    return np.array([(3 * i + 1) % 5 for i in range(case.x.shape[0])])


def reference_relevance(configuration: Configuration, case: Case, target=None) -> np.ndarray:
    target = targets_for(case) if target is None else target
    return ref.explain(case.network, case.x, target, configuration.reference(case)).relevance
