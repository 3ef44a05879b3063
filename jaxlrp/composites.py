"""Composites: which rule each layer and node gets.

A :class:`Composite` is data. For a dense, conv or affine layer, the rule is the first of these
that applies (highest precedence first):

1. ``select(layer)``: a function of the :class:`~jaxlrp.plan.LayerInfo` returning a rule or None
   (for recipes by depth or index);
2. ``paths``: ``(pattern, rule)`` pairs, the first pattern matching the layer's module path,
   name stack or parameter path wins. Patterns are globs: ``*`` matches within one path
   component, ``**`` across components (``"*/Conv_0"``, ``"backbone/**"``);
3. ``first`` for the layers fed by the input (no layer in between), ``last`` for the layers
   reaching the output;
4. by kind: ``dense``, ``conv`` and ``affine`` (an affine layer without an ``affine`` rule gets
   the ``dense`` rule: it is a dense layer with a diagonal weight);
5. ``default`` (``Epsilon()`` when None).

*Affine layers* (kind ``"affine"``) are element-wise ``z = a ⊙ s + t`` with constants: a batch
norm, or a norm's scale and shift, that no dense/conv layer absorbs (pre-activation batch norm, a
batch norm on the input or after a residual sum). With one input per output, every rule only
splits each output's relevance between the input and the shift: LRP-0/ε give
``R_a = a s / (z + ε·sign z) · R_z``. A batch norm on the input is the first layer: ZBox and
Flat conserve relevance through it (the shift's terms cancel), and the convolution after it
gets the conv rule.
The presets give them their ``dense`` rule, ε; zennit, which only merges a batch norm into the
layer before it, gives an unmerged batch norm ``Pass``, which ignores the shift.

Other nodes get one rule per kind: ``activation`` (default :class:`~jaxlrp.rules.Pass`), ``sum``
(residual adds, sum/average pooling; :class:`~jaxlrp.rules.Norm`), ``maxpool``
(:class:`~jaxlrp.rules.WinnerTakesAll`), ``product`` (:class:`~jaxlrp.rules.UniformProduct`),
``gate`` (products with a sigmoid gate; :class:`~jaxlrp.rules.SignalTakesAll`).

Presets follow zennit's composites (Anders et al., "Software for dataset-wide XAI", 2021) and the
recipe of Montavon et al., "Layer-Wise Relevance Propagation: An Overview" (2019).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jaxlrp import rules
from jaxlrp.plan import RULED_KINDS, LayerInfo, NodeKind
from jaxlrp.rules.base import LayerRule
from jaxlrp.rules.nodes import NodeRule

PathRules = Sequence[tuple[str, LayerRule]] | Mapping[str, LayerRule]


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def path_matches(pattern: str, path: str) -> bool:
    """Whether a glob ``pattern`` matches a module ``path`` (``*`` within, ``**`` across ``/``)."""
    return _glob(pattern).match(path) is not None


@dataclasses.dataclass(frozen=True)
class Composite:
    """Maps every layer and node to a rule. See the module docstring for the precedence.

    Args:
      default: rule for layers nothing else matches (``Epsilon()`` when None).
      dense: rule for dense layers (``dot_general``).
      conv: rule for convolution layers (``conv_general_dilated``).
      affine: rule for element-wise affine layers (unmerged batch norm; ``dense`` when None).
      first: rule for the layers fed by the explained input.
      last: rule for the layers that produce the output.
      paths: ``(glob, rule)`` pairs or a mapping, matched against module/parameter paths.
      select: ``LayerInfo -> rule or None``, highest precedence.
      activation: rule for element-wise activations.
      sum: rule for residual adds and sum/average pooling.
      maxpool: rule for max pooling and ``max`` of activations.
      product: rule for products of activations.
      gate: rule for gating products ``x ⊙ σ(·)`` (squeeze-excite, LSTM gates).
      norm: rule for normalizations ``x · 1/√(var + ε)`` (LayerNorm, RMSNorm, GroupNorm); the
        default holds the normalizer constant (the identity rule of AttnLRP and CP-LRP).
      softmax: rule for softmaxes (one node, e.g. ``jax.nn.softmax``); ``Pass`` by default,
        AttnLRP's ``TaylorAtInput`` in :func:`AttnLRP`.
      attention: rule for products with attention weights ``A·v`` (``A`` a softmax output);
        uniform by default, ``A`` held constant in :func:`CPLRP`.
    """

    default: LayerRule | None = None
    dense: LayerRule | None = None
    conv: LayerRule | None = None
    affine: LayerRule | None = None
    first: LayerRule | None = None
    last: LayerRule | None = None
    paths: PathRules = ()
    select: Callable[[LayerInfo], LayerRule | None] | None = None
    activation: NodeRule = rules.Pass()
    sum: NodeRule = rules.Norm()
    maxpool: NodeRule = rules.WinnerTakesAll()
    product: NodeRule = rules.UniformProduct()
    gate: NodeRule = rules.SignalTakesAll()
    norm: NodeRule = rules.SignalTakesAll()
    softmax: NodeRule = rules.Pass()
    attention: NodeRule = rules.UniformProduct()
    name: str = "Composite"

    def __post_init__(self) -> None:
        paths = self.paths
        if isinstance(paths, Mapping):
            paths = tuple(paths.items())
        object.__setattr__(self, "paths", tuple(tuple(p) for p in paths))
        for pattern, rule in self.paths:
            if not isinstance(pattern, str):
                raise TypeError(f"path patterns must be strings, got {pattern!r}")
            _check_rule(rule, f"paths[{pattern!r}]")
        for field in ("default", "dense", "conv", "affine", "first", "last"):
            value = getattr(self, field)
            if value is not None:
                _check_rule(value, field)

    def layer_rule(self, info: LayerInfo) -> LayerRule:
        """The rule for one layer, by the documented precedence."""
        return self.explain_choice(info)[0]

    def explain_choice(self, info: LayerInfo) -> tuple[LayerRule, str]:
        """The rule for one layer and the reason it was chosen (for printing)."""
        if self.select is not None:
            rule = self.select(info)
            if rule is not None:
                return rule, "select"
        for pattern, rule in self.paths:
            if any(path_matches(pattern, p) for p in info.paths):
                return rule, f"path {pattern!r}"
        if info.is_first and self.first is not None:
            return self.first, "first"
        if info.is_last and self.last is not None:
            return self.last, "last"
        by_kind = {"dense": self.dense, "conv": self.conv, "affine": self.affine}.get(info.kind)
        if by_kind is not None:
            return by_kind, info.kind
        if info.kind == "affine" and self.dense is not None:
            return self.dense, "affine (dense rule)"
        if self.default is not None:
            return self.default, "default"
        return rules.Epsilon(), "default"

    def node_rule(self, kind: NodeKind | str) -> NodeRule:
        """The rule for a node of kind ``activation``, ``sum``, ``max``, ``product``, ``gate``,
        ``norm``, ``softmax`` or ``attention`` (a :class:`~jaxlrp.plan.NodeKind` or its name)."""
        kind = NodeKind(kind)
        if kind not in RULED_KINDS:
            raise ValueError(f"{kind!r} nodes have no rule; ruled kinds: {sorted(RULED_KINDS)}")
        return self.maxpool if kind == NodeKind.MAX else getattr(self, kind.value)


def _check_rule(rule: Any, where: str) -> None:
    if not isinstance(rule, LayerRule):
        raise TypeError(
            f"Composite {where} must be a layer rule (e.g. jaxlrp.rules.Epsilon()), got {rule!r}"
        )


def EpsilonGammaBox(  # noqa: N802 - named like zennit's class
    low: Any,
    high: Any,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
    generalized: bool = True,
) -> Composite:
    """ZBox(low, high) on the first layer, Gamma(γ) on convolutions, Epsilon(ε) on dense and
    affine layers.

    Args:
      low: lower bound of the input domain (after the model's normalization), a scalar or an
        array broadcastable to the input (e.g. per channel).
      high: upper bound of the input domain, like ``low``.
      epsilon: ε of dense layers.
      gamma: γ of convolutions.
      stabilizer: stabilizer of Gamma, ZBox and Norm.
      generalized: the sign-aware Gamma of zennit (default) or, with False, the overview's
        original rule ``a (w + γw⁺)`` (see :class:`~jaxlrp.rules.Gamma`): about a quarter
        less work on convolutions, equal wherever the convolution's input is non-negative and
        its output positive.
    """
    return Composite(
        first=rules.ZBox(low=low, high=high, stabilizer=stabilizer),
        conv=rules.Gamma(gamma=gamma, stabilizer=stabilizer, generalized=generalized),
        dense=rules.Epsilon(epsilon=epsilon),
        affine=rules.Epsilon(epsilon=epsilon),
        sum=rules.Norm(stabilizer),
        name="EpsilonGammaBox",
    )


def EpsilonPlus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:  # noqa: N802
    """ZPlus on convolutions, Epsilon(ε) on dense and affine layers."""
    return Composite(
        conv=rules.ZPlus(stabilizer=stabilizer),
        dense=rules.Epsilon(epsilon=epsilon),
        affine=rules.Epsilon(epsilon=epsilon),
        sum=rules.Norm(stabilizer),
        name="EpsilonPlus",
    )


def EpsilonPlusFlat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:  # noqa: N802
    """Flat on the first layer, ZPlus on convolutions, Epsilon(ε) on dense and affine layers."""
    return dataclasses.replace(
        EpsilonPlus(epsilon, stabilizer), first=rules.Flat(stabilizer), name="EpsilonPlusFlat"
    )


def EpsilonAlpha2Beta1(  # noqa: N802
    epsilon: float = 1e-6, stabilizer: float = 1e-6
) -> Composite:
    """AlphaBeta(2, 1) on convolutions, Epsilon(ε) on dense and affine layers."""
    return Composite(
        conv=rules.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=stabilizer),
        dense=rules.Epsilon(epsilon=epsilon),
        affine=rules.Epsilon(epsilon=epsilon),
        sum=rules.Norm(stabilizer),
        name="EpsilonAlpha2Beta1",
    )


def EpsilonAlpha2Beta1Flat(  # noqa: N802
    epsilon: float = 1e-6, stabilizer: float = 1e-6
) -> Composite:
    """Flat on the first layer, AlphaBeta(2, 1) on convolutions, Epsilon(ε) on dense and affine
    layers."""
    return dataclasses.replace(
        EpsilonAlpha2Beta1(epsilon, stabilizer),
        first=rules.Flat(stabilizer),
        name="EpsilonAlpha2Beta1Flat",
    )


def DepthRecipe(  # noqa: N802
    low: Any,
    high: Any,
    gamma_convs: int = 7,
    gamma: float = 0.25,
    epsilon_factor: float = 0.25,
) -> Composite:
    """The overview's recipe for VGG-16, by depth (Montavon et al. 2019, §10.3).

    z^B on the first layer; LRP-γ (γ = 0.25) on the lower convolutions (the first
    ``gamma_convs``: conv1–conv3 of VGG-16 are 7); LRP-ε with ε = 0.25·std(z) on the upper
    convolutions (conv4–conv5); LRP-0 on the dense layers; LRP-ε on affine layers (unmerged
    batch norm).
    """
    upper = rules.RelativeEpsilon(factor=epsilon_factor)
    lower = rules.Gamma(gamma=gamma)

    def by_depth(layer: LayerInfo) -> LayerRule | None:
        if layer.kind == "conv" and not layer.is_first:
            return lower if layer.kind_index < gamma_convs else upper
        return None

    return Composite(
        select=by_depth,
        first=rules.ZBox(low=low, high=high),
        dense=rules.Zero(),
        affine=rules.Epsilon(),
        name="DepthRecipe",
    )


def AttnLRP(  # noqa: N802 - named like the paper's method
    epsilon: float = 1e-6,
    gamma: float | None = None,
    paths: PathRules = (),
    stabilizer: float = 1e-6,
) -> Composite:
    """AttnLRP (Achtibat et al., ICML 2024) for transformers, chosen from the traced program.

    * linear layers (dense, and the affine scale/shift of norms): ε-rule, or γ-rule with
      ``gamma`` (the paper uses γ for vision transformers);
    * softmax: ``R_x = x ⊙ (R − s Σ R)`` (:class:`~jaxlrp.rules.TaylorAtInput`);
    * LayerNorm/RMSNorm: the identity rule on the normalization (``1/σ`` held constant);
    * products of activations (``q·kᵀ``, ``A·v``, GeGLU/SwiGLU gates): the uniform ε rule
      ``R/N`` (:class:`~jaxlrp.rules.UniformProduct`);
    * element-wise activations (GELU, SiLU, tanh): identity (``Pass``);
    * residual sums: ``Norm``; ``paths`` override the rule per module (glob → rule).

    References:
      Achtibat, Hatefi, Dreyer, Jain, Wiegand, Lapuschkin, Samek, "AttnLRP: Attention-Aware
      Layer-Wise Relevance Propagation for Transformers", ICML 2024.
    """
    linear = rules.Epsilon(epsilon) if gamma is None else rules.Gamma(gamma, stabilizer)
    return Composite(
        default=linear, dense=linear, conv=linear, affine=rules.Epsilon(epsilon), paths=paths,
        sum=rules.Norm(stabilizer), product=rules.UniformProduct(),
        attention=rules.UniformProduct(), softmax=rules.TaylorAtInput(),
        norm=rules.SignalTakesAll(), activation=rules.Pass(), name="AttnLRP",
    )  # fmt: skip


def CPLRP(  # noqa: N802 - named like the paper's method
    epsilon: float = 1e-6,
    gamma: float | None = None,
    paths: PathRules = (),
    stabilizer: float = 1e-6,
) -> Composite:
    """CP-LRP (Ali et al., ICML 2022): conservative propagation through attention and norms.

    As :func:`AttnLRP`, but the attention weights are held constant: in ``A·v`` all relevance
    flows through the values ``v`` and none into the softmax (so ``q·kᵀ`` receives none). The
    activated branch of a gated MLP (``GELU(x W_g) ⊙ x W_u``: GeGLU, SwiGLU) is held constant
    the same way, all relevance going to ``x W_u`` (as LXT's ``cp_LRP`` maps, which detach the
    gate projection); other products of activations are split uniformly.

    References:
      Ali, Schnake, Eberle, Montavon, Müller, Wolf, "XAI for Transformers: Better Explanations
      through Conservative Propagation", ICML 2022.
    """
    return dataclasses.replace(
        AttnLRP(epsilon, gamma, paths, stabilizer), attention=rules.SignalTakesAll(),
        product=rules.SignalTakesAll(), name="CPLRP",
    )  # fmt: skip


def GuidedBackprop() -> Composite:  # noqa: N802
    """Guided backpropagation: gradients with negative cotangents zeroed at activations."""
    return Composite(
        default=rules.LayerGradient(), activation=rules.GuidedBackprop(), sum=rules.Gradient(),
        product=rules.Gradient(), gate=rules.Gradient(), name="GuidedBackprop",
    )


def DeconvNet() -> Composite:  # noqa: N802
    """DeconvNet: the positive part of the cotangent passed backwards through activations."""
    return Composite(
        default=rules.LayerGradient(), activation=rules.DeconvNet(), sum=rules.Gradient(),
        product=rules.Gradient(), gate=rules.Gradient(), name="DeconvNet",
    )


def Gradient() -> Composite:  # noqa: N802
    """The plain gradient everywhere (``explain`` then returns gradient × input)."""
    return Composite(
        default=rules.LayerGradient(), activation=rules.Gradient(), sum=rules.Gradient(),
        product=rules.Gradient(), gate=rules.Gradient(), name="Gradient",
    )


PRESETS: dict[str, Callable[..., Composite]] = {
    "epsilon-gamma-box": EpsilonGammaBox,
    "epsilon-plus": EpsilonPlus,
    "epsilon-plus-flat": EpsilonPlusFlat,
    "epsilon-alpha2-beta1": EpsilonAlpha2Beta1,
    "epsilon-alpha2-beta1-flat": EpsilonAlpha2Beta1Flat,
    "depth-recipe": DepthRecipe,
    "guided-backprop": GuidedBackprop,
    "deconvnet": DeconvNet,
    "gradient": Gradient,
}
"""Composite presets by command-line name. Those needing bounds take ``low`` and ``high``."""


def LSTM(epsilon: float = 1e-3, stabilizer: float | None = None) -> Composite:  # noqa: N802
    """LRP for recurrent networks, LSTMs and GRUs (Arras et al. 2017, 2019): LRP-ε on every
    linear map, signal-take-all on gate ⊙ signal products, identity on the activations.

    An LSTM step (``lax.scan`` bodies are explained as part of the whole program) is

    .. math::
        z = W x_t + U h_{t-1} + b, \\quad i, f, o = σ(z_{i,f,o}), \\quad g = \\tanh(z_g),

        c_t = f ⊙ c_{t-1} + i ⊙ g, \\qquad h_t = o ⊙ \\tanh(c_t),

    and its relevance flows back as (``stab(v) = v + ε·sign(v)``)

    .. math::
        R_{c_t} \\mathrel{+}= R_{h_t} \\quad (o \\text{ gets none, tanh passes}), \\qquad
        R_{c_{t-1}} = \\frac{f c_{t-1}}{stab(c_t)} R_{c_t}, \\qquad
        R_g = \\frac{i g}{stab(c_t)} R_{c_t} \\quad (f, i \\text{ get none}),

        R_{x_t} = x_t ⊙ W_g^T \\frac{R_g}{stab(z_g)}, \\qquad
        R_{h_{t-1}} \\mathrel{+}= h_{t-1} ⊙ U_g^T \\frac{R_g}{stab(z_g)},

    and the gates' pre-activations get no relevance. A GRU step
    ``h_t = (1 − u) ⊙ n + u ⊙ h_{t−1}``, ``n = tanh(W_n x_t + b_n + r ⊙ (U_n h_{t−1} + b'_n))``
    is explained alike: ``1 − u``, ``u`` and ``r`` are gates (``1 − σ(·)`` is recognized as one).
    With zero biases and ε → 0 both conserve relevance: ``Σ R_x`` is the explained logit.

    In jaxlrp these rules are the defaults of the node kinds (``gate``: ``SignalTakesAll``,
    ``activation``: ``Pass``, ``sum``: ``Norm``); the composite sets ε on the layers and on the
    sums. A traced ``W x_t + U h_{t−1} + b`` is two dense layers and a sum node: the sum's ``Norm``
    and each layer are stabilized in turn, ``R_{x_t} = x_t ⊙ W^T (q/stab(q) · R_z/stab(z))`` with
    ``q = W x_t``, which is Arras et al.'s joint ``R_z/stab(z)`` up to the factor ``q/stab(q)``
    (a relative difference of about ``ε/|q|``). Arras et al.'s joint stabilization exactly, for
    cells whose pre-activations are such sums (Flax's): ``dataclasses.replace(LSTM(ε),
    default=rules.Zero(), last=rules.Epsilon(ε))`` (exact layers in the loop, ε on the sums and
    the head).

    Args:
      epsilon: ε of the dense, convolution and affine layers (Arras et al. use 0.001).
      stabilizer: ε of the sum nodes (the gate pre-activations' sums and ``c_t``'s accumulation);
        ``epsilon`` when None.

    Returns:
      A :class:`Composite` named ``"LSTM"``.

    References:
      Arras, Montavon, Müller, Samek, "Explaining recurrent neural network predictions in
      sentiment analysis", WASSA 2017; Arras, Osman, Müller, Samek, "Evaluating recurrent neural
      network explanations", BlackboxNLP 2019.
    """
    return Composite(
        default=rules.Epsilon(epsilon=epsilon),
        sum=rules.Norm(epsilon if stabilizer is None else stabilizer),
        activation=rules.Pass(),
        gate=rules.SignalTakesAll(),
        name="LSTM",
    )


_NAMED: dict[str, Callable[..., Composite]] = {
    **PRESETS, "attn-lrp": AttnLRP, "cp-lrp": CPLRP, "lstm": LSTM,
}  # fmt: skip
"""Every composite :func:`get` knows: the command-line presets and the model-family ones."""


def _squash(name: str) -> str:
    return "".join(c for c in name.lower() if c not in "-_ ")


def canonical_name(name: str) -> str:
    """The preset name ``name`` stands for, ignoring case, ``-``, ``_`` and spaces:
    ``"EpsilonGammaBox"``, ``"epsilon_gamma_box"`` → ``"epsilon-gamma-box"``; an unknown name
    comes back lower-cased and stripped."""
    squashed = _squash(name)
    for key in _NAMED:
        if _squash(key) == squashed:
            return key
    return name.strip().lower()


def names() -> tuple[str, ...]:
    """The names :func:`get` accepts (in their canonical, hyphenated spelling)."""
    return tuple(_NAMED)


def get(name: str, **kwargs: Any) -> Composite:
    """The composite preset called ``name``, built with ``kwargs``.

    Names ignore case, ``-``, ``_`` and spaces: ``get("epsilon-plus")``, ``get("EpsilonPlus")``
    and ``get("epsilon_plus")`` are ``EpsilonPlus()``. Presets with a z^B first layer
    (``epsilon-gamma-box``, ``depth-recipe``) need the input bounds:
    ``get("epsilon-gamma-box", low=-1.0, high=1.0)`` (for a zoo model,
    ``models.info(name).low`` / ``.high``). ``explain(..., composite="epsilon-plus")`` calls this.

    Args:
      name: one of :func:`names`.
      **kwargs: arguments of the preset's function (e.g. ``epsilon``, ``gamma``, ``low``).

    Returns:
      The :class:`Composite`.

    Raises:
      UsageError: for an unknown name (listing the valid ones), missing required arguments or
        arguments the preset does not take (naming them and the preset's signature).
    """
    import inspect

    from jaxlrp.errors import UsageError

    if not isinstance(name, str):
        raise UsageError(f"composites.get takes a preset name (a string), got {name!r}")
    key = canonical_name(name)
    factory = _NAMED.get(key)
    if factory is None:
        raise UsageError(
            f"unknown composite {name!r}; valid names: {', '.join(_NAMED)} (case, '-' and '_' "
            "do not matter), or build one: Composite(default=rules.Epsilon(), ...)"
        )
    signature = inspect.signature(factory)
    params = signature.parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise UsageError(
            f"composite {key!r} takes no argument {', '.join(map(repr, unknown))}; its arguments: "
            f"{factory.__name__}{signature}"
        )
    missing = [p for p, v in params.items()
               if v.default is inspect.Parameter.empty and p not in kwargs]  # fmt: skip
    if missing:
        given = ", ".join(f"{p}=..." for p in missing)
        hint = (" (the bounds of the model's input after its preprocessing, e.g. "
                "low=models.info(name).low, high=models.info(name).high)"
                if "low" in missing or "high" in missing else "")  # fmt: skip
        raise UsageError(
            f"composite {key!r} needs {', '.join(missing)}{hint}: give "
            f"composite=composites.get({key!r}, {given}) or "
            f"composites.{factory.__name__}({given})"
        )
    return factory(**kwargs)
