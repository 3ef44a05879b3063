"""LRP rules (same names, parameters and defaults as zennit).

Layer rules (dense and convolution layers; batch norm is folded into the layer first):
:class:`Zero`, :class:`Epsilon`, :class:`RelativeEpsilon`, :class:`Gamma`, :class:`ZPlus`,
:class:`AlphaBeta`, :class:`ZBox`, :class:`WSquare`, :class:`Flat`, :class:`LayerGradient`.

Node rules (activations, sums/pooling, max pooling, products): :class:`Pass`, :class:`Norm`,
:class:`WinnerTakesAll`, :class:`ProportionalMaxPool`, :class:`UniformProduct`,
:class:`SignalTakesAll`,
:class:`Gradient`, :class:`GuidedBackprop`, :class:`DeconvNet`.

Writing a new layer rule: subclass :class:`ModifiedRule` and list its :class:`Group` s of
:class:`Term` s (input modifier, weight modifier, bias modifier), or subclass :class:`LayerRule`
and compute the relevance directly. See ``examples/custom_rule.py``. A new node rule
subclasses :class:`NodeRule`; :func:`unbroadcast` sums relevance onto operands that an
element-wise op broadcast.
"""

from jaxlrp.rules.alpha_beta import AlphaBeta, ZPlus
from jaxlrp.rules.base import (
    Group,
    LayerContext,
    LayerRule,
    ModifiedRule,
    Relevance,
    Replaced,
    Scaled,
    Term,
    constant_input,
    identity_input,
    keep,
    negative,
    negative_input,
    ones_input,
    positive,
    positive_input,
    safe_divide,
    sign0,
    stabilize,
    unbroadcast,
)
from jaxlrp.rules.bounded import Flat, WSquare, ZBox
from jaxlrp.rules.epsilon import Epsilon, RelativeEpsilon, Zero
from jaxlrp.rules.gamma import Gamma
from jaxlrp.rules.gradient import LayerGradient
from jaxlrp.rules.nodes import (
    DeconvNet,
    Gradient,
    GuidedBackprop,
    NodeRule,
    Norm,
    Pass,
    ProportionalMaxPool,
    SignalTakesAll,
    TaylorAtInput,
    UniformProduct,
    WinnerTakesAll,
)

__all__ = [
    "AlphaBeta", "DeconvNet", "Epsilon", "Flat", "Gamma", "Gradient", "Group",
    "GuidedBackprop", "LayerContext", "LayerGradient", "LayerRule", "ModifiedRule", "NodeRule",
    "Norm", "Pass", "ProportionalMaxPool", "Relevance", "RelativeEpsilon", "Replaced", "Scaled",
    "SignalTakesAll", "TaylorAtInput", "Term", "UniformProduct", "WSquare", "WinnerTakesAll",
    "ZBox", "ZPlus", "Zero",
    "constant_input", "identity_input", "keep", "negative", "negative_input", "ones_input",
    "positive", "positive_input", "safe_divide", "sign0", "stabilize", "unbroadcast",
]
