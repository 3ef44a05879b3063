"""Transformer patterns found in the traced program — softmax, normalizations, attention — and
the AttnLRP / CP-LRP rules on them, each checked against a hand-written NumPy float64 LRP."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules

LRP0 = dict(default=rules.Zero(), sum=rules.Norm(0.0))


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _w(seed, *shape):
    return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), shape), np.float64) / np.sqrt(
        shape[0])


def _kinds(fn, *args):
    table = jaxlrp.rule_table(fn, *args, nodes=True)
    return [line.split()[2] for line in table.splitlines()[1:]]


def _softmax_by_hand(z):
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=-1, keepdims=True)


@pytest.mark.parametrize("softmax", [jax.nn.softmax, _softmax_by_hand],
                         ids=["jax.nn.softmax", "hand-written"])  # fmt: skip
def test_softmax_is_one_node_with_attnlrp_rule(softmax, x64):
    """``R_z = z ⊙ (R_s − s Σ R_s)`` at the softmax input (AttnLRP), LRP-0 on the layers."""
    w, v = _w(0, 4, 5), _w(1, 5, 3)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (2, 4)), np.float64)

    def f(x):
        return softmax(x @ w) @ v

    assert _kinds(f, x).count("softmax") == 1
    composite = composites.Composite(**LRP0, softmax=rules.TaylorAtInput())
    relevance = jaxlrp.explain(f, x, target=1, composite=composite)
    # NumPy reference
    z = x @ w
    s = np.exp(z - z.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    out = s @ v
    r_out = np.zeros_like(out)
    r_out[:, 1] = out[:, 1]
    r_s = s * ((r_out / out) @ v.T)
    r_z = z * (r_s - s * r_s.sum(-1, keepdims=True))
    r_x = x * ((r_z / z) @ w.T)
    np.testing.assert_allclose(relevance, r_x, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("make", [nn.LayerNorm, nn.RMSNorm], ids=["LayerNorm", "RMSNorm"])
def test_norms_hold_the_normalizer_constant(make, x64):
    """The identity rule on the normalization: ``R`` at the centred input ``x − μ`` (LayerNorm)
    or at ``x`` (RMSNorm) equals ``R`` at the normalized output; LayerNorm's centring is the
    linear map ``C = I − 11ᵀ/N`` with LRP-0. The scale is a constant factor; zero bias."""
    v = _w(3, 6, 2)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (3, 6)), np.float64) + 0.3
    norm = make(use_bias=False) if make is nn.LayerNorm else make()
    params = norm.init(jax.random.PRNGKey(0), x)
    scale = np.asarray(jax.random.uniform(jax.random.PRNGKey(5), (6,), minval=0.5, maxval=2.0))
    params = {"params": {"scale": scale}}

    def f(x):
        return norm.apply(params, x) @ v

    assert _kinds(f, x).count("norm") == 1
    relevance = jaxlrp.explain(f, x, target=0, composite=composites.Composite(**LRP0))
    y = np.asarray(norm.apply(params, x))
    out = y @ v
    r_y = y * v[:, 0] * (out[:, :1] / out[:, :1])  # LRP-0 of the head for target 0
    if make is nn.LayerNorm:
        centred = x - x.mean(-1, keepdims=True)
        c = np.eye(6) - 1.0 / 6
        expected = x * ((r_y / centred) @ c.T)
    else:
        expected = r_y
    np.testing.assert_allclose(relevance, expected, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(relevance.sum(-1), out[:, 0], rtol=1e-8)


def _attention(detach: bool = False):
    """Single-head self-attention ``softmax(q kᵀ/√d) v`` with projections, then a head."""
    wq, wk, wv, wo = _w(6, 4, 8), _w(7, 4, 8), _w(8, 4, 8), _w(9, 8, 2)

    def f(x):  # x: (batch, seq, 4)
        q, k, v = x @ wq, x @ wk, x @ wv
        a = jax.nn.softmax(jnp.einsum("bqd,bkd->bqk", q, k) / np.sqrt(8.0))
        if detach:
            a = jax.lax.stop_gradient(a)
        return jnp.einsum("bqk,bkd->bqd", a, v).mean(1) @ wo

    return f


def test_attention_weights_times_values_is_an_attention_node():
    x = jnp.ones((1, 3, 4))
    kinds = _kinds(_attention(), x)
    assert kinds.count("attention") == 1  # A·v
    assert kinds.count("product") == 1  # q·kᵀ
    assert kinds.count("softmax") == 1


def test_cplrp_equals_explaining_the_model_with_detached_attention(x64):
    """CP-LRP holds ``A`` constant: the same as LRP of the model with ``stop_gradient(A)``,
    where ``A·v`` is then a linear layer in ``v`` (LRP-0 on it is exact)."""
    x = jax.random.normal(jax.random.PRNGKey(10), (2, 3, 4), jnp.float64)
    cp = composites.CPLRP(epsilon=1e-12, stabilizer=1e-12)
    relevance = jaxlrp.explain(_attention(), x, target=0, composite=cp)
    reference = jaxlrp.explain(_attention(detach=True), x, target=0, composite=cp)
    np.testing.assert_allclose(relevance, reference, rtol=1e-8, atol=1e-12)
    out = _attention()(x)[:, 0]
    np.testing.assert_allclose(relevance.sum((1, 2)), out, rtol=1e-8)  # bias-free: conserved


def test_attnlrp_splits_attention_products_uniformly_and_uses_the_softmax_rule(x64):
    x = jax.random.normal(jax.random.PRNGKey(11), (2, 3, 4), jnp.float64)
    attn = composites.AttnLRP(epsilon=1e-12, stabilizer=1e-12)
    cp = composites.CPLRP(epsilon=1e-12, stabilizer=1e-12)
    r_attn = jaxlrp.explain(_attention(), x, target=0, composite=attn)
    r_cp = jaxlrp.explain(_attention(), x, target=0, composite=cp)
    assert np.all(np.isfinite(r_attn))
    assert not np.allclose(r_attn, r_cp)  # relevance also flows through q and k
    # ledger: A·v gives half of its relevance to A (uniform), none under CP-LRP
    for composite in (attn, cp):
        entry = next(e for e in jaxlrp.ledger(_attention(), x, target=0, composite=composite)
                     .entries if e.kind == "attention")  # fmt: skip
        assert entry.relevance_in == pytest.approx(entry.relevance_out, rel=1e-9)

