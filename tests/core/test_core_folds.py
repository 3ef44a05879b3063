"""Affine ops with constants after a layer are folded into its weights and bias.

``z ← α z + β`` for ``+ c``, ``- c``, ``c - z``, ``/ c``, ``-z``, ``* scalar`` and ``* s`` per
output feature, so a rule sees the folded layer ``W' = α W``, ``b' = α b + β``. Sign-sensitive
rules (z⁺, αβ, γ split ``W'`` and ``b'`` by sign) give the folded layer's relevance only if the
fold is right; the expectation is the NumPy reference on ``W'``, ``b'`` computed by hand.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from reference import numpy_lrp as ref

import jaxlrp
from jaxlrp import composites, rules

TOLERANCE = 1e-6
"""Relative L2 error against the float64 reference (measured: at most 1e-7)."""
RULES = [
    (rules.ZPlus(), ref.ZPlus()),
    (rules.AlphaBeta(2.0, 1.0), ref.AlphaBeta(2.0, 1.0)),
    (rules.Gamma(0.5), ref.Gamma(0.5)),
]

RNG = np.random.default_rng(0)
W = RNG.normal(size=(5, 4)).astype(np.float32)
B = RNG.normal(size=4).astype(np.float32)
C = RNG.normal(size=4).astype(np.float32)
S = np.array([2.0, -0.5, 4.0, -1.5], np.float32)  # per output feature, both signs
X = RNG.normal(size=(3, 5)).astype(np.float32)
TARGET = np.array([0, 2, 3])

# name: (function of (params, x), folded ops, W' and b' by hand)
FOLDS = {
    "sub_constant": (lambda p, x: x @ p["w"] + p["b"] - p["c"], ("add", "sub"), (W, B - C)),
    "constant_minus_layer": (lambda p, x: p["c"] - (x @ p["w"] + p["b"]), ("add", "sub"),
                             (-W, C - B)),
    "divide_by_constant": (lambda p, x: (x @ p["w"] + p["b"]) / p["s"], ("add", "div"),
                           (W / S, B / S)),
    "negate": (lambda p, x: -(x @ p["w"] + p["b"]), ("add", "neg"), (-W, -B)),
    "times_scalar": (lambda p, x: (x @ p["w"] + p["b"]) * -1.5, ("add", "mul"),
                     (-1.5 * W, -1.5 * B)),
    "per_feature_scale": (lambda p, x: (x @ p["w"]) * p["s"] + p["b"], ("mul", "add"),
                          (W * S, B)),
    "chain": (lambda p, x: ((x @ p["w"] + p["b"]) * p["s"] - p["c"]) / 2.0,
              ("add", "mul", "sub", "div"), (W * S / 2, (B * S - C) / 2)),
}  # fmt: skip
PARAMS = {k: jnp.asarray(v) for k, v in {"w": W, "b": B, "c": C, "s": S}.items()}


def _hand_relevance(w_folded, b_folded, ref_rule):
    layer = ref.Dense(np.asarray(w_folded, np.float64), np.asarray(b_folded, np.float64))
    x = X.astype(np.float64)
    z = layer.linear(x, layer.kernel, layer.bias)
    return z, ref.propagate_linear(layer, ref_rule, x, ref.output_relevance(z, TARGET))


@pytest.mark.parametrize("name", FOLDS)
def test_fold_is_one_layer_with_the_hand_folded_weights(name):
    fn, folded, (w_folded, b_folded) = FOLDS[name]
    (info,) = jaxlrp.layers(fn, PARAMS, jnp.asarray(X))
    assert info.folded == folded
    z, _ = _hand_relevance(w_folded, b_folded, ref.Zero())
    np.testing.assert_allclose(fn(PARAMS, jnp.asarray(X)), z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule, ref_rule", RULES, ids=[r.name for _, r in RULES])
@pytest.mark.parametrize("name", FOLDS)
def test_fold_matches_hand_lrp_of_the_folded_layer(name, rule, ref_rule):
    fn, _, (w_folded, b_folded) = FOLDS[name]
    relevance = jaxlrp.explain(fn, PARAMS, jnp.asarray(X), target=jnp.asarray(TARGET),
                               composite=composites.Composite(default=rule))  # fmt: skip
    _, expected = _hand_relevance(w_folded, b_folded, ref_rule)
    error = ref.relative_error(np.asarray(relevance), expected)
    assert error <= TOLERANCE, f"{name}: relative error {error:.2e}"


def test_sub_fold_matches_hand_lrp_epsilon():
    """LRP-ε on ``z = x W + b − c`` (ε = 1, large enough that the denominator's value matters):
    ``R_j = x_j w_jt / (z_t + sign(z_t)) · z_t`` by hand."""
    fn = FOLDS["sub_constant"][0]
    relevance = jaxlrp.explain(
        fn,
        PARAMS,
        jnp.asarray(X),
        target=jnp.asarray(TARGET),
        composite=composites.Composite(default=rules.Epsilon(1.0)),
    )
    x = X.astype(np.float64)
    z = x @ W + B - C
    z_t = z[np.arange(3), TARGET]
    expected = x * W[:, TARGET].T / (z_t + np.where(z_t >= 0, 1.0, -1.0))[:, None] * z_t[:, None]
    np.testing.assert_allclose(relevance, expected, rtol=1e-5, atol=1e-7)


def test_weights_cast_before_the_dot_keep_their_parameter_path():
    """A weight stored in float16 and cast with ``astype`` (then transposed) is still named by
    its parameter path, so path rules reach it; the relevance is the rule's on the cast weight."""
    params = {"encoder": {"proj": {"kernel": jnp.asarray(W.T, jnp.float16)}}}

    def fn(p, x):
        return x @ p["encoder"]["proj"]["kernel"].astype(jnp.float32).T

    (info,) = jaxlrp.layers(fn, params, jnp.asarray(X))
    assert info.param_path == "0/encoder/proj/kernel"
    assert info.path == "encoder/proj"
    composite = composites.Composite(default=rules.Epsilon(), paths=[("encoder/*", rules.ZPlus())])
    assert "path 'encoder/*'" in jaxlrp.rule_table(fn, params, jnp.asarray(X), composite=composite)
    relevance = jaxlrp.explain(fn, params, jnp.asarray(X), target=jnp.asarray(TARGET),
                               composite=composite)  # fmt: skip
    w16 = np.asarray(W.astype(np.float16), np.float64)  # the weights the model really uses
    layer = ref.Dense(w16, None)
    z = X.astype(np.float64) @ w16
    expected = ref.propagate_linear(layer, ref.ZPlus(), X.astype(np.float64),
                                    ref.output_relevance(z, TARGET))  # fmt: skip
    assert ref.relative_error(np.asarray(relevance), expected) <= TOLERANCE
