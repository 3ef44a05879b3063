"""Models we did not write: equinox, dm-haiku, keras 3 (jax backend), transformers' Flax models,
Flax's own layers and hand-written ``jnp`` idioms (lax control flow, checkpointing, top-k routing),
from tiny configurations with random weights (``tests/foreign/models.py``).

For every model: the explanation under two composites is finite and non-zero with the input's
shape, ``jax.jit`` of it equals the eager one, and it is not amplified by orders of magnitude
beyond gradient × input. For ReLU networks (biases, inference batch norm,
max pooling): LRP-0 equals gradient × input in float64. An equinox MLP and its linen rewrite with
the same weights get the same relevance. Unsupported primitives raise
:class:`jaxlrp.UnsupportedPrimitiveError`. Each foreign library is skipped when not installed (the
``foreign`` extra); ``python tests/foreign/report.py`` prints the measured numbers.
"""

from __future__ import annotations

import contextlib
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from foreign import models
from jaxlrp import composites, rules

COMPOSITES = {
    "epsilon": None,  # explain's default: LRP-ε everywhere
    "epsilon_plus_flat": composites.EpsilonPlusFlat(),
}
LRP0 = composites.Composite(default=rules.Zero(), sum=rules.Norm(0.0))

def _param(name: str):
    marks = [pytest.mark.slow] if name in models.SLOW else []
    return pytest.param(name, marks=marks, id=name)


ALL = [_param(name) for name in models.LIBRARY]
RELU = [_param(name) for name in models.LIBRARY if name in models.RELU]


def _require(name: str) -> None:
    library = models.LIBRARY[name]
    pytest.importorskip(library, reason=f"{library} is not installed (the 'foreign' extra)")
    if library == "keras":
        import keras

        if keras.backend.backend() != "jax":
            pytest.skip(f"keras was imported with backend {keras.backend.backend()!r}, not jax")


@functools.cache
def _case(name: str) -> tuple[models.Case, jax.Array, jax.Array]:
    """The float32 model, its logits and the explained targets (top class of each example)."""
    case = models.build(name)
    logits = jax.jit(case.fn)(*case.args)
    return case, logits, jnp.argmax(logits, axis=-1)


def case(name: str) -> tuple[models.Case, jax.Array, jax.Array]:
    _require(name)
    return _case(name)


@contextlib.contextmanager
def compiled_eager(enabled: bool):
    """Eager ``explain`` calls compiled (``explain``'s default) or op by op (this suite's)."""
    module = importlib.import_module("jaxlrp.explain")
    previous = module.COMPILE_EAGER_CALLS
    module.COMPILE_EAGER_CALLS = enabled
    try:
        yield
    finally:
        module.COMPILE_EAGER_CALLS = previous


@functools.cache
def _eager(name: str, composite: str) -> np.ndarray:
    c, _, target = case(name)
    with compiled_eager(name not in models.OP_BY_OP):
        relevance = jaxlrp.explain(
            c.fn, *c.args, target=target, composite=COMPOSITES[composite], argnums=c.argnum
        )
    return np.asarray(relevance)


@pytest.fixture
def x64():
    """float64 for the duration of one test."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def amplification(c: models.Case, logits, target, relevance) -> np.ndarray:
    """Per example ``Σ|R| / (Σ|x ⊙ ∇f_t| + |f_t|)``."""
    x = c.args[c.argnum]

    def score(x):
        args = list(c.args)
        args[c.argnum] = x
        return jnp.take_along_axis(c.fn(*args), target[:, None], axis=-1).sum()

    gradient_x_input = np.asarray(x * jax.jit(jax.grad(score))(x), np.float64)
    picked = np.abs(np.asarray(jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0]))
    batch = relevance.shape[0]
    total = np.abs(np.asarray(relevance, np.float64)).reshape(batch, -1).sum(axis=1)
    return total / (np.abs(gradient_x_input).reshape(batch, -1).sum(axis=1) + picked)


def max_relative(actual, expected) -> float:
    """``max |actual - expected| / max |expected|``."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("composite", list(COMPOSITES))
@pytest.mark.parametrize("name", ALL)
def test_relevance_is_finite_and_nonzero(name, composite):
    c, _, _ = case(name)
    relevance = _eager(name, composite)
    assert relevance.shape == c.args[c.argnum].shape
    assert np.all(np.isfinite(relevance)), f"{name}: non-finite relevance"
    per_example = np.abs(relevance.reshape(relevance.shape[0], -1)).max(axis=1)
    assert np.all(per_example > 0), f"{name}: an example got all-zero relevance"


@pytest.mark.parametrize("name", ALL)
def test_jit_equals_eager(name):
    """``jax.jit`` of ``explain`` (a traced target) equals the eager call: op by op for the models
    in ``models.OP_BY_OP``, ``explain``'s own compiled eager path for the others."""
    c, _, target = case(name)

    @jax.jit
    def explain(args, target):
        return jaxlrp.explain(c.fn, *args, target=target, argnums=c.argnum)

    eager = _eager(name, "epsilon")
    jitted = np.asarray(explain(c.args, target))
    # measured: 0 on the compiled path, ≤ 1e-7 of max |R| op by op (float32)
    np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-6 * np.abs(eager).max())


@pytest.mark.parametrize("name", ALL)
def test_relevance_is_not_amplified(name):
    """A sanity bound, not a theorem: LRP-ε never multiplies relevance by orders of magnitude.

    For ReLU networks LRP-ε(1e-6) is gradient × input up to the stabilizer; for the others the
    measured ``Σ|R| / (Σ|x ⊙ ∇f| + |f_t|)`` is at most 6 (Llama; tests/foreign/report.py). A ratio
    of 1e3 means a rule amplifies relevance, compounding from block to block (e.g. a gate that
    is handed relevance its value does not carry, redistributed by ``R / z`` over cancelling
    contributions).
    """
    c, logits, target = case(name)
    relevance = _eager(name, "epsilon")
    assert amplification(c, logits, target, relevance).max() < 1e3


@pytest.mark.parametrize("name", RELU)
def test_lrp0_of_relu_network_is_gradient_times_input(name, x64):
    _require(name)
    c = models.build(name, jnp.float64)
    assert c.relu
    x = c.args[c.argnum]
    assert x.dtype == jnp.float64
    logits = jax.jit(c.fn)(*c.args)
    assert logits.dtype == jnp.float64, "the model does not compute in float64"
    target = jnp.argmax(logits, axis=-1)

    @jax.jit
    def lrp0_and_gradient(args):
        relevance = jaxlrp.explain(c.fn, *args, target=target, composite=LRP0, argnums=c.argnum)

        def picked(*args):
            return jnp.take_along_axis(c.fn(*args), target[:, None], axis=-1).sum()

        return relevance, jax.grad(picked, argnums=c.argnum)(*args)

    relevance, gradient = lrp0_and_gradient(c.args)
    assert max_relative(relevance, x * gradient) <= 1e-4


def _eqx_mlp_and_linen_rewrite():
    _require("eqx_mlp")
    import flax.linen as nn

    c = models.build("eqx_mlp")
    params, x = c.args
    linears = params.layers  # eqx.nn.MLP's Linear layers (their arrays)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for i, linear in enumerate(linears):
                x = nn.Dense(linear.weight.shape[0], name=f"Dense_{i}")(x)
                if i < len(linears) - 1:
                    x = nn.relu(x)
            return x

    variables = {"params": {
        f"Dense_{i}": {"kernel": linear.weight.T, "bias": linear.bias}
        for i, linear in enumerate(linears)
    }}
    return c, MLP(), variables, x


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus_flat", "lrp0"])
def test_linen_rewrite_of_equinox_mlp_gives_the_same_relevance(composite):
    c, linen, variables, x = _eqx_mlp_and_linen_rewrite()
    np.testing.assert_allclose(linen.apply(variables, x), c.fn(*c.args), rtol=1e-5, atol=1e-6)
    chosen = LRP0 if composite == "lrp0" else COMPOSITES[composite]
    target = jnp.argmax(c.fn(*c.args), axis=-1)
    expected = jaxlrp.explain(linen.apply, variables, x, target=target, composite=chosen)
    actual = jaxlrp.explain(c.fn, *c.args, target=target, composite=chosen, argnums=1)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def _eqx_eigh():
    eqx = pytest.importorskip("equinox", reason="equinox is not installed (the 'foreign' extra)")
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    linear, head = eqx.nn.Linear(3, 4, key=k1), eqx.nn.Linear(4, 2, key=k2)

    def f(x):
        h = linear(x)
        return head(jnp.linalg.eigh(jnp.outer(h, h) + jnp.eye(4))[0])

    return jax.vmap(f), (jnp.ones((2, 3)),), "'eigh'", "float32[2, 4, 4]", None


def _hk_fft():
    hk = pytest.importorskip("haiku", reason="dm-haiku is not installed (the 'foreign' extra)")

    def forward(x):
        return hk.Linear(2)(jnp.abs(jnp.fft.rfft(hk.Linear(8)(x))))

    f = hk.without_apply_rng(hk.transform(forward))
    x = jnp.ones((2, 3))
    return f.apply, (f.init(jax.random.PRNGKey(0), x), x), "'fft'", "float32[2, 8]", None


def _linen_fft():
    import flax.linen as nn

    class Spectral(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(8)(x)
            return nn.Dense(2)(jnp.abs(jnp.fft.fft(x)))

    x = jnp.ones((2, 3))
    module = Spectral()
    return module.apply, (module.init(jax.random.PRNGKey(0), x), x), "'fft'", "[2, 8]", "Spectral"


def _while_loop():
    """A loop whose trip count is a traced value (``fori_loop`` with a traced bound is a
    ``while``): not reverse-differentiable, refused with a pointer to ``lax.scan``."""
    w = jnp.eye(3) * 0.5

    def fn(n, x):
        return jax.lax.fori_loop(0, n, lambda i, h: jax.nn.relu(h @ w), x)

    return fn, (jnp.int32(2), jnp.ones((2, 3))), "'while'", "float32[2, 3]", None


@pytest.mark.parametrize("build", [_eqx_eigh, _hk_fft, _linen_fft, _while_loop],
                         ids=["eqx_eigh", "hk_fft", "linen_fft", "while_loop"])
def test_unsupported_primitive_raises_jaxlrp_error(build):
    fn, args, primitive, shape, module = build()
    fn(*args)  # the model itself runs
    with pytest.raises(jaxlrp.UnsupportedPrimitiveError) as info:
        jaxlrp.explain(fn, *args, target=0)
    message = str(info.value)
    assert primitive in message
    assert shape in message
    if primitive == "'while'":
        assert "lax.scan" in message
    if module is not None:
        assert module in message


def test_debug_print_inside_a_model_changes_nothing(capfd):
    """``jax.debug.print`` of an activation (a side effect, no result) runs and leaves the
    relevance as it is without it."""
    w = jax.random.normal(jax.random.PRNGKey(0), (5, 5)) / np.sqrt(5)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5))

    def fn(x, show):
        h = jax.nn.relu(x @ w)
        if show:
            jax.debug.print("hidden sum {}", h.sum())
        return h @ w

    printed = jaxlrp.explain(lambda x: fn(x, True), x, target=0)
    assert "hidden sum" in capfd.readouterr().out
    np.testing.assert_array_equal(printed, jaxlrp.explain(lambda x: fn(x, False), x, target=0))
