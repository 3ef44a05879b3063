"""Element-wise ops that broadcast an operand: every rule returns relevance of the operand's shape.

JAX's element-wise primitives broadcast size-1 dimensions and rank-0 operands implicitly
(``jax.nn.softmax`` divides ``f32[B,N]`` by ``f32[B,1]``; LayerNorm multiplies ``f32[B,1]`` by a
``f32[1,N]`` scale). An operand copied to several output positions receives the relevance of all
of them: its relevance is the output relevance summed over the broadcast axes.

The expected values below are written out by hand in NumPy (float64) from the rules' formulas in
``docs/lrp-notes.md``: ``Norm`` gives ``R_i = x_i / stab(z) · R_z`` (stabilizer 1e-6 with the
sign of ``z``), ``UniformProduct`` gives each of the two factors ``R / 2``, ``Pass`` gives
``R_x = R_y``, and max/min route relevance to the winning operand (ties split equally).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import jaxlrp
from jaxlrp import rules

EPS = 1e-6  # Norm's default stabilizer


def stab(z):
    return z + EPS * np.where(z >= 0, 1.0, -1.0)


def lrp(f, x, r_out, composite=None, **kwargs):
    """Relevance of ``x`` for output relevance ``r_out`` (compiled: one XLA program per call)."""

    def relevance(x, r_out):
        out, relevance_fn = jaxlrp.lrp(f, composite, argnums=0, **kwargs)(x)
        assert out.shape == r_out.shape
        return relevance_fn(r_out.astype(out.dtype))

    return np.asarray(jax.jit(relevance)(x, jnp.asarray(r_out)), np.float64)


def dense_inputs():
    w = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    return w, x


# --- the helper --------------------------------------------------------------------------------


def test_unbroadcast_sums_relevance_over_missing_and_size_one_axes():
    r = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(rules.unbroadcast(r, (2, 1, 4)), r.sum(1, keepdims=True))
    np.testing.assert_array_equal(rules.unbroadcast(r, (3, 4)), r.sum(0))
    np.testing.assert_array_equal(rules.unbroadcast(r, (1, 1)), r.sum((0, 1, 2)).reshape(1, 1))
    np.testing.assert_array_equal(rules.unbroadcast(r, ()), r.sum())
    np.testing.assert_array_equal(rules.unbroadcast(r, (2, 3, 4)), r)


def test_unbroadcast_rejects_shapes_that_do_not_broadcast():
    r = np.ones((2, 3))
    for shape in [(3, 2), (2,), (2, 3, 1), (2, 2)]:
        with pytest.raises(jaxlrp.RuleError, match="does not broadcast"):
            rules.unbroadcast(r, shape)


# --- models that broadcast ---------------------------------------------------------------------


def test_softmax_after_dense_explains_without_error():
    w, x = dense_inputs()
    r = jaxlrp.explain(lambda x: jax.nn.softmax(x @ w), x, target=1)
    assert r.shape == x.shape
    assert np.all(np.isfinite(r))
    jitted = jax.jit(lambda x: jaxlrp.explain(lambda x: jax.nn.softmax(x @ w), x, target=1))(x)
    np.testing.assert_allclose(jitted, r, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "f",
    [
        lambda h: h * jnp.mean(h, -1, keepdims=True),
        lambda h: h / jnp.sum(h, -1, keepdims=True),
        lambda h: jnp.maximum(h, h.mean(-1, keepdims=True)),
        lambda h: h - jnp.mean(h, -1, keepdims=True),
        lambda h: h * h[:1],
        lambda h: h / h[0, 0],
    ],
    ids=["times_mean", "over_sum", "max_mean", "minus_mean", "times_row", "over_scalar"],
)
def test_broadcasting_op_after_dense_explains_without_error(f):
    w, x = dense_inputs()
    r = jaxlrp.explain(lambda x: f(x @ w), x, target=1)
    assert r.shape == x.shape
    assert np.all(np.isfinite(r))


def test_normalizing_the_explained_input_explains_without_error():
    w, x = dense_inputs()
    x = jnp.abs(x) + 0.1
    r = jaxlrp.explain(lambda x: (x / jnp.sum(x, -1, keepdims=True)) @ w, x, target=1)
    assert r.shape == x.shape
    assert np.all(np.isfinite(r))


@pytest.mark.parametrize("norm", [nn.LayerNorm, nn.RMSNorm])
def test_layer_norm_and_rms_norm_with_scale_explain_without_error(norm):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = norm(use_scale=True)(nn.Dense(6)(x))
            return nn.Dense(3)(nn.gelu(x))

    model = Net()
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    r = jaxlrp.explain(model.apply, variables, x, target=2)
    assert r.shape == x.shape
    assert np.all(np.isfinite(r))


# --- hand-computed relevance -------------------------------------------------------------------


def test_broadcast_operand_receives_summed_relevance():
    # f(x) = x * c(x), c = mean over the last axis (B, 1). UniformProduct: x gets R/2 directly;
    # c gets Σ_j R[:, j] / 2, which the mean (Norm) hands on in proportion x_ij / (N stab(c_i)).
    x = np.array([[0.5, 1.0, 2.0], [1.5, 0.7, 0.9]])
    r = np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -0.4]])
    got = lrp(lambda x: x * jnp.mean(x, -1, keepdims=True), jnp.asarray(x, jnp.float32), r)
    c = x.mean(-1, keepdims=True)
    r_c = r.sum(-1, keepdims=True) / 2
    expected = r / 2 + x / (3 * stab(c)) * r_c
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(), r.sum(), rtol=1e-5)


def test_quotient_denominator_receives_summed_half_of_the_relevance():
    # s = e / Σe with e = x²: UniformProduct's quotient branch gives e and Σe R/2 each, Σe's
    # share summed over the broadcast axis, then redistributed by the sum (Norm) as e_j / Σe.
    # (With e = exp(x) the quotient is a softmax, one node: see the next tests.)
    x = np.array([[0.3, -1.2, 0.8, 0.1], [-0.5, 0.4, 1.1, -0.9]])
    r = np.array([[0.0, 1.0, 0.0, 0.0], [0.2, -0.1, 0.7, 0.3]])

    def share(x):
        e = jnp.square(x)
        return e / jnp.sum(e, -1, keepdims=True)

    got = lrp(share, jnp.asarray(x, jnp.float32), r)
    e = np.square(x)
    total = e.sum(-1, keepdims=True)
    expected = r / 2 + e / stab(total) * r.sum(-1, keepdims=True) / 2
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(), r.sum(), rtol=1e-5)


def test_a_written_out_softmax_is_one_node_that_passes_relevance():
    x = np.array([[0.3, -1.2, 0.8, 0.1], [-0.5, 0.4, 1.1, -0.9]])
    r = np.array([[0.0, 1.0, 0.0, 0.0], [0.2, -0.1, 0.7, 0.3]])

    def softmax(x):
        e = jnp.exp(x)
        return e / jnp.sum(e, -1, keepdims=True)

    np.testing.assert_allclose(lrp(softmax, jnp.asarray(x, jnp.float32), r), r, atol=1e-6)


def test_jax_nn_softmax_conserves_relevance():
    # exp(x - max(x)) is one activation node (see test_core_activation_chains.py), so the zero
    # argument at the arg-max does not drop relevance
    x = jnp.array([[0.3, -1.2, 0.8, 0.1], [-0.5, 0.4, 1.1, -0.9]])
    r = np.array([[0.0, 0.0, 1.0, 0.0], [0.2, -0.1, 0.7, 0.3]])
    got = lrp(jax.nn.softmax, x, r)
    np.testing.assert_allclose(got.sum(), r.sum(), rtol=1e-4)


def test_activation_of_a_broadcast_operand_passes_the_summed_relevance():
    # s = Σ_j x_ij (B, 1) times a constant (B, N): the only active operand is broadcast, so Pass
    # gives s the relevance summed over the row, and the sum splits it as x_ij / stab(s_i).
    x = np.array([[0.5, 1.0, 2.0], [1.5, 0.7, 0.9]])
    const = jnp.array([[1.0, -2.0, 3.0], [0.5, 0.5, -1.0]])
    r = np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -0.4]])
    got = lrp(lambda x: jnp.sum(x, -1, keepdims=True) * const, jnp.asarray(x, jnp.float32), r)
    s = x.sum(-1, keepdims=True)
    expected = x / stab(s) * r.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "summed"),
    [((), lambda r: r.sum()), ((1, 3), lambda r: r.sum(0, keepdims=True)),
     ((2, 1), lambda r: r.sum(1, keepdims=True))],
)
def test_explained_input_broadcast_against_a_constant_receives_summed_relevance(shape, summed):
    const = jnp.arange(1.0, 7.0).reshape(2, 3)
    x = jnp.full(shape, 1.5)
    r = np.arange(6.0).reshape(2, 3) - 2.0
    expected = summed(r)
    for f in (lambda x: x * const, lambda x: jnp.tanh(x) * const + 1.0):
        got = lrp(f, x, r)
        assert got.shape == shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_deconvnet_sums_the_positive_cotangent_onto_a_broadcast_operand():
    x = np.array([[0.5, 1.0, 2.0], [1.5, 0.7, 0.9]])
    const = jnp.array([[1.0, -2.0, 3.0], [0.5, 0.5, -1.0]])
    r = np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -0.4]])
    composite = jaxlrp.Composite(activation=rules.DeconvNet())

    def f(x):
        return jnp.sum(x, -1, keepdims=True) * const

    got = lrp(f, jnp.asarray(x, jnp.float32), r, composite, times_input=False)
    s = x.sum(-1, keepdims=True)
    c_out = r / (s * np.asarray(const))
    c_s = np.maximum(c_out, 0).sum(-1, keepdims=True) * s / stab(s)
    np.testing.assert_allclose(got, np.broadcast_to(c_s, x.shape), rtol=1e-5, atol=1e-6)


# --- user-written node rules -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OutputShapedPass(rules.NodeRule):
    """Pass written without regard to broadcasting: returns cotangents of the output's shape."""

    def backward(self, fn, inputs, output, cotangent, info):
        share = cotangent * output / len(inputs)
        return [rules.safe_divide(share, jnp.broadcast_to(x, output.shape)) for x in inputs]


@dataclasses.dataclass(frozen=True)
class WrongShape(rules.NodeRule):
    def backward(self, fn, inputs, output, cotangent, info):
        return [jnp.ones((7,)) for _ in inputs]


@dataclasses.dataclass(frozen=True)
class TooFew(rules.NodeRule):
    def backward(self, fn, inputs, output, cotangent, info):
        return []


class Normed(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm(name="norm")(nn.Dense(5, name="proj")(x))
        return nn.Dense(3, name="head")(h)


@pytest.fixture(scope="module")
def normed():
    model = Normed()
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), x), x


def test_node_rule_returning_output_shaped_cotangents_is_summed_onto_broadcast_operands(normed):
    model, variables, x = normed
    expected = jaxlrp.explain(model.apply, variables, x, target=1)
    composite = jaxlrp.Composite(activation=OutputShapedPass())
    got = jaxlrp.explain(model.apply, variables, x, target=1, composite=composite)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_node_rule_returning_a_wrong_shape_raises_rule_error_naming_rule_node_and_module(normed):
    model, variables, x = normed
    composite = jaxlrp.Composite(activation=WrongShape())
    with pytest.raises(jaxlrp.RuleError) as info:
        jaxlrp.explain(model.apply, variables, x, target=1, composite=composite)
    message = str(info.value)
    assert "WrongShape()" in message
    assert "primitive '" in message
    assert "(7,)" in message
    assert "output shape" in message
    assert "Normed/norm" in message
    assert "Custom VJP" not in message


def test_node_rule_returning_too_few_cotangents_raises_rule_error(normed):
    model, variables, x = normed
    composite = jaxlrp.Composite(activation=TooFew())
    with pytest.raises(jaxlrp.RuleError, match=r"TooFew\(\) on primitive .* returned 0 cotangent"):
        jaxlrp.explain(model.apply, variables, x, target=1, composite=composite)


def test_pass_as_the_sum_rule_of_a_reduction_raises_rule_error():
    composite = jaxlrp.Composite(sum=rules.Pass())
    x = jnp.ones((2, 3))
    with pytest.raises(jaxlrp.RuleError, match=r"Pass\(\) failed on primitive 'reduce_sum'"):
        lrp(lambda x: jnp.sum(x, -1, keepdims=True) * x, x, np.ones((2, 3)), composite)


# --- property: random shapes, every multi-operand kind -----------------------------------------
#
# Each case maps (x, axis) to (f, expected) where expected(x, r) is the hand-computed input
# relevance in NumPy (None: conservation only). Inputs are positive (in [0.5, 2]) so that every
# sum is far from zero and every rule below conserves relevance up to its stabilizer.


def _mean_share(x, axis, r_mean, scale=1.0):
    """Relevance reaching x through ``scale * mean(x, axis, keepdims=True)`` (Norm)."""
    n = x.shape[axis]
    return x * scale / n / stab(scale * x.sum(axis, keepdims=True) / n) * r_mean


def _case_add_mean(x, axis):
    def f(x):
        return x + jnp.mean(x, axis, keepdims=True)

    def expected(x, r):
        m = x.mean(axis, keepdims=True)
        out = x + m
        r_m = (m / stab(out) * r).sum(axis, keepdims=True)
        return x / stab(out) * r + _mean_share(x, axis, r_m)

    return f, expected


def _case_sub_scaled_mean(x, axis):
    def f(x):
        return x - 0.25 * jnp.mean(x, axis, keepdims=True)

    def expected(x, r):
        c = 0.25 * x.mean(axis, keepdims=True)
        out = x - c
        r_c = (-c / stab(out) * r).sum(axis, keepdims=True)
        return x / stab(out) * r + _mean_share(x, axis, r_c, 0.25)

    return f, expected


def _case_mul_mean(x, axis):
    def f(x):
        return x * jnp.mean(x, axis, keepdims=True)

    def expected(x, r):
        return r / 2 + _mean_share(x, axis, r.sum(axis, keepdims=True) / 2)

    return f, expected


def _case_mul_explicit_broadcast(x, axis):
    dims = [d for d in range(x.ndim) if d != axis]

    def f(x):
        return x * lax.broadcast_in_dim(jnp.mean(x, axis), x.shape, dims)

    return f, _case_mul_mean(x, axis)[1]


def _case_div_sum(x, axis):
    def f(x):
        return x / jnp.sum(x, axis, keepdims=True)

    def expected(x, r):
        total = x.sum(axis, keepdims=True)
        return r / 2 + x / stab(total) * r.sum(axis, keepdims=True) / 2

    return f, expected


def _case_div_traced_scalar(x, axis):
    def f(x):
        return x / jnp.sum(x)  # rank-0 active operand

    def expected(x, r):
        return r / 2 + x / stab(x.sum()) * r.sum() / 2

    return f, expected


def _case_mul_traced_scalar(x, axis):
    def f(x):
        return x * x.reshape(-1)[0]

    def expected(x, r):
        out = (r / 2).reshape(-1).copy()
        out[0] += r.sum() / 2
        return out.reshape(x.shape)

    return f, expected


def _case_mul_first_slice(x, axis):
    def f(x):
        return x * lax.slice_in_dim(x, 0, 1, axis=axis)  # size 1 along axis

    def expected(x, r):
        out = r / 2
        first = [slice(None)] * x.ndim
        first[axis] = slice(0, 1)
        out[tuple(first)] += r.sum(axis, keepdims=True) / 2
        return out

    return f, expected


def _case_both_operands_broadcast(x, axis):
    other = (axis + 1) % x.ndim

    def f(x):
        return jnp.mean(x, axis, keepdims=True) * jnp.mean(x, other, keepdims=True)

    def expected(x, r):
        # operand a has size 1 at `axis` and receives R/2 summed there; b likewise at `other`
        r_a = r / 2 if other == axis else (r / 2).sum(axis, keepdims=True)
        r_b = r / 2 if other == axis else (r / 2).sum(other, keepdims=True)
        return _mean_share(x, axis, r_a) + _mean_share(x, other, r_b)

    return f, expected


def _case_max_mean(x, axis):
    def f(x):
        return jnp.maximum(x, jnp.mean(x, axis, keepdims=True))

    def expected(x, r):
        # the gradient routes R to the larger operand and splits ties; the winner is decided on
        # the float32 values jaxlrp computed with
        x32 = x.astype(np.float32)
        m32 = np.asarray(jnp.mean(x32, axis, keepdims=True))
        r_x = np.where(x32 > m32, r, np.where(x32 == m32, r / 2, 0.0))
        r_m = (r - r_x).sum(axis, keepdims=True)
        return r_x + _mean_share(x, axis, r_m)

    return f, expected


def _case_min_traced_scalar(x, axis):
    def f(x):
        return jnp.minimum(x, jnp.mean(x))

    return f, None  # conservation only


def _case_activation_times_constant(x, axis):
    shape = list(x.shape)
    shape[axis] = 1
    const = jnp.linspace(-2.0, 2.0, int(np.prod(shape))).reshape(shape) + 0.1

    def f(x):
        return jnp.tanh(x) * const  # constant of size 1 along axis, output of x's shape

    return f, lambda x, r: r


def _case_activation_with_literals(x, axis):
    def f(x):
        return jnp.exp(x) * 2.0 + 1.0  # rank-0 literals

    return f, lambda x, r: r


def _case_broadcast_operand_times_constant(x, axis):
    const = jnp.linspace(-2.0, 2.0, x.size).reshape(x.shape) + 0.05

    def f(x):
        return jnp.sum(x, axis, keepdims=True) * const  # the only active operand is broadcast

    def expected(x, r):
        return x / stab(x.sum(axis, keepdims=True)) * r.sum(axis, keepdims=True)

    return f, expected


CASES = {  # by the kind of node the broadcasting op forms, i.e. the rule it gets
    "sum (Norm)": [_case_add_mean, _case_sub_scaled_mean],
    "product (UniformProduct)": [
        _case_mul_mean, _case_mul_explicit_broadcast, _case_div_sum, _case_div_traced_scalar,
        _case_mul_traced_scalar, _case_mul_first_slice, _case_both_operands_broadcast,
    ],
    "route (WinnerTakesAll)": [_case_max_mean, _case_min_traced_scalar],
    "activation (Pass)": [
        _case_activation_times_constant, _case_activation_with_literals,
        _case_broadcast_operand_times_constant,
    ],
}


@st.composite
def problems(draw, kind):
    case = draw(st.sampled_from(CASES[kind]))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    axis = draw(st.integers(0, len(shape) - 1))
    seed = draw(st.integers(0, 2**31 - 1))
    return case, shape, axis, seed


@pytest.mark.parametrize("kind", list(CASES))
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_broadcasting_ops_keep_input_shape_finiteness_and_conservation(kind, data):
    case, shape, axis, seed = data.draw(problems(kind))
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    f, expected = case(x, axis)
    out_shape = jax.eval_shape(f, x).shape
    r = rng.normal(size=out_shape).astype(np.float32)

    got = lrp(f, jnp.asarray(x), r)

    assert got.shape == x.shape
    assert np.all(np.isfinite(got))
    scale = np.abs(r).sum() + 1e-3
    assert abs(got.sum() - r.sum()) <= 1e-4 * scale
    if expected is not None:
        want = expected(x.astype(np.float64), r.astype(np.float64))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
