"""The primitive table is the one place that knows primitives: supporting a new primitive is one
entry, and each of its fields is what the analysis and the interpreter read."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core
from jax.interpreters import ad, mlir

import jaxlrp
from jaxlrp import composites, rules
from jaxlrp.primitives import PRIMITIVES, PrimitiveInfo, PrimitiveKind


def _primitive(name, impl, jvp=None, linear=False):
    """A new JAX primitive, unknown to jaxlrp, with an implementation and a derivative."""
    p = core.Primitive(name)
    p.def_impl(impl)
    p.def_abstract_eval(lambda x: x)
    mlir.register_lowering(p, mlir.lower_fun(impl, multiple_results=False))
    if linear:
        ad.deflinear2(p, lambda ct, x: [p.bind(ct)])
    else:
        ad.defjvp(p, jvp)
    return p


RELU = _primitive("test_relu", lambda x: jnp.maximum(x, 0), jvp=lambda g, x: g * (x > 0))
FLIP = _primitive("test_flip", lambda x: jnp.flip(x, -1), linear=True)


@pytest.fixture
def entry():
    """Register table entries for the duration of a test."""
    added = []

    def register(name, info):
        PRIMITIVES[name] = info
        added.append(name)

    yield register
    for name in added:
        PRIMITIVES.pop(name, None)


W1, W2 = (jax.random.normal(jax.random.PRNGKey(k), s) for k, s in ((0, (4, 6)), (1, (6, 3))))


def _net(relu, flip):
    return lambda x: relu(flip(x) @ W1) @ W2


def test_an_unknown_primitive_is_refused_by_name():
    with pytest.raises(jaxlrp.UnsupportedPrimitiveError, match="test_relu"):
        jaxlrp.explain(_net(RELU.bind, jnp.asarray), jnp.ones((1, 4)), target=0)


def test_one_entry_makes_a_new_activation_work_with_its_non_negativity(entry):
    """``nonneg="always"`` is all it takes for the next layer to know its input is ``>= 0``."""
    entry("test_relu", PrimitiveInfo(PrimitiveKind.ELEMENTWISE, nonneg="always"))
    seen = []

    class Recording(rules.Epsilon):
        def __call__(self, ctx, relevance):
            seen.append(ctx.input_nonneg)
            return super().__call__(ctx, relevance)

    x = jax.random.normal(jax.random.PRNGKey(2), (2, 4))
    composite = composites.Composite(Recording(1e-6))
    new = jaxlrp.explain(_net(RELU.bind, jnp.asarray), x, target=1, composite=composite)
    assert seen == [True, False]  # backward order: the second layer (after the ReLU) first
    known = jaxlrp.explain(_net(jax.nn.relu, jnp.asarray), x, target=1, composite=composite)
    np.testing.assert_allclose(new, known, rtol=1e-6, atol=1e-7)


def test_one_entry_makes_a_new_data_movement_carry_the_input_tap(entry):
    """With ``tap=True`` the first layer's input-independent relevance (Flat) reaches the input
    through the new op exactly, zeros of the input included."""
    entry("test_flip", PrimitiveInfo(PrimitiveKind.STRUCTURAL, nonneg="first", tap=True))
    x = jnp.array([[0.0, 1.0, -2.0, 0.0], [0.5, 0.0, 1.5, -1.0]])
    flat = composites.Composite(rules.Epsilon(1e-6), first=rules.Flat())
    new = jaxlrp.explain(_net(jax.nn.relu, FLIP.bind), x, target=0, composite=flat)
    known = jaxlrp.explain(_net(jax.nn.relu, lambda v: jnp.flip(v, -1)), x, target=0,
                           composite=flat)  # fmt: skip
    np.testing.assert_allclose(new, known, rtol=1e-6, atol=1e-7)
    assert np.all(np.abs(new[x == 0]) > 1e-4)  # Flat gives relevance to zero inputs too
    # without the field, the relevance of zero inputs is lost (divided by the input value)
    entry("test_flip", dataclasses.replace(PRIMITIVES["test_flip"], tap=False))
    lost = jaxlrp.explain(_net(jax.nn.relu, FLIP.bind), x, target=0, composite=flat)
    np.testing.assert_allclose(lost[x == 0], 0.0)


def test_node_kinds_are_an_enum_that_composites_accept_by_name():
    composite = composites.Composite(gate=rules.Gradient())
    assert jaxlrp.NodeKind("gate") is jaxlrp.NodeKind.GATE
    assert composite.node_rule(jaxlrp.NodeKind.GATE) == composite.node_rule("gate")
    assert composite.node_rule(jaxlrp.NodeKind.MAX) is composite.maxpool


def test_every_entry_is_consistent():
    for name, info in PRIMITIVES.items():
        assert isinstance(info.kind, PrimitiveKind), name
        assert (info.body is not None) <= (info.kind == PrimitiveKind.CALL), name
        assert (info.sum_twin is not None) <= (info.kind == PrimitiveKind.MAX), name
        assert (info.multi is not None or info.routes) <= (
            info.kind == PrimitiveKind.ELEMENTWISE), name  # fmt: skip
        structural = info.kind == PrimitiveKind.STRUCTURAL
        assert (info.moves is not None or info.shape_only or info.tap) <= structural, name
        assert info.affine <= (info.kind == PrimitiveKind.ELEMENTWISE), name
        assert info.gate <= (info.nonneg == "always"), name
