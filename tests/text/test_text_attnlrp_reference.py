"""AttnLRP and CP-LRP on one transformer block against an independent float64 NumPy LRP.

The block is a post-LN attention block with two heads and a linear probe of the mean-pooled
output, ``f = mean_t LayerNorm(x + Wo·Attention(x)) · w``. The reference below imports nothing
from jaxlrp: it writes out, layer by layer, the rules of AttnLRP (Achtibat et al., ICML 2024):

* dense layers (``q``, ``k``, ``v``, ``Wo``, the probe): LRP-ε, ``R_a = a ⊙ Wᵀ(R / stab(z))``
  with ``z`` including the bias and ``stab(z) = z + ε·sign(z)``;
* the mean over tokens and the residual sum ``x + o``: the proportional split
  ``R_i = x_i / stab(z) · R_z``;
* LayerNorm, identity rule: ``1/σ`` is held constant, so ``y = γ (r − μ)/σ + β`` is linear
  in ``r``: LRP-ε on the scale and shift (bias ``β``), ``R`` unchanged through ``1/σ``, and the
  centring ``c = r − μ``, ``μ = Σ_j r_j / D`` split proportionally, sum by sum (at ε = 0 this is
  LRP-0 on the affine map ``diag(γ/σ)·C``, ``C = I − 11ᵀ/D``; with ε = 1e-6 writing it as that
  one map instead moves the result by 8e-6 of its largest value, so the sums are kept);
* softmax: ``R_z = z ⊙ (R_A − A·Σ_s R_A)``;
* the bilinear products ``q·kᵀ`` and ``A·v``: the uniform rule, each factor gets half of each
  term's share, ``R_q = ½ Σ_s (q k / stab(z)) R_z``, ``R_k`` likewise. jaxlrp's
  ``UniformProduct`` is AttnLRP's modified-gradient form, which has no stabilizer there, so the
  reference uses ε = 0 for the products; the 1/√d scaling of the scores passes ``R`` unchanged.

CP-LRP (Ali et al., ICML 2022) is the same with ``A`` held constant: ``A·v`` gives all of its
relevance to ``v``, none to ``A`` (so ``q``, ``k`` and the softmax get none).

Measured: largest |jaxlrp − NumPy| / max|R| is 4e-16 (AttnLRP) and 3e-16 (CP-LRP) with
ε = 1e-6; tolerance 1e-9 (float64), and the two rules differ by 0.56 of max|R| here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites

T, D, HEADS = 5, 8, 2
DH = D // HEADS
EPS = 1e-6


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _params(seed=0):
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.standard_normal(shape) / np.sqrt(shape[0])

    return {
        "wq": w(D, D), "bq": 0.1 * rng.standard_normal(D),
        "wk": w(D, D), "bk": 0.1 * rng.standard_normal(D),
        "wv": w(D, D), "bv": 0.1 * rng.standard_normal(D),
        "wo": w(D, D), "bo": 0.1 * rng.standard_normal(D),
        "gamma": rng.uniform(0.5, 1.5, D), "beta": 0.1 * rng.standard_normal(D),
        "probe": w(D, 2),
    }  # fmt: skip


def _block(p):
    """The block in JAX (what jaxlrp traces): x ``(T, D)`` -> two probe outputs ``(2,)``."""

    def f(x):
        q = (x @ p["wq"] + p["bq"]).reshape(T, HEADS, DH)
        k = (x @ p["wk"] + p["bk"]).reshape(T, HEADS, DH)
        v = (x @ p["wv"] + p["bv"]).reshape(T, HEADS, DH)
        scores = jnp.einsum("the,she->hts", q, k) / np.sqrt(DH)
        a = jax.nn.softmax(scores, axis=-1)
        context = jnp.einsum("hts,she->the", a, v).reshape(T, D)
        r = x + (context @ p["wo"] + p["bo"])
        mu = r.mean(-1, keepdims=True)
        var = ((r - mu) ** 2).mean(-1, keepdims=True)
        y = (r - mu) / jnp.sqrt(var + 1e-6) * p["gamma"] + p["beta"]
        return y.mean(0) @ p["probe"]

    return f


# --- the NumPy reference (float64, no jaxlrp) -------------------------------------------------


def _stab(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def _dense(a, w, b, r_out):
    """LRP-ε for ``z = a @ w + b`` (rows of ``a`` are tokens)."""
    z = a @ w + b
    return a * ((r_out / _stab(z, EPS)) @ w.T)


def numpy_lrp(p, x, target, cp=False):
    """Relevance of ``x`` for output ``target`` under AttnLRP (or CP-LRP with ``cp``)."""
    # forward
    q = (x @ p["wq"] + p["bq"]).reshape(T, HEADS, DH)
    k = (x @ p["wk"] + p["bk"]).reshape(T, HEADS, DH)
    v = (x @ p["wv"] + p["bv"]).reshape(T, HEADS, DH)
    raw = np.einsum("the,she->hts", q, k)
    z = raw / np.sqrt(DH)
    e = np.exp(z - z.max(-1, keepdims=True))
    a = e / e.sum(-1, keepdims=True)
    context = np.einsum("hts,she->the", a, v)
    c_flat = context.reshape(T, D)
    o = c_flat @ p["wo"] + p["bo"]
    r = x + o
    centred = r - r.mean(-1, keepdims=True)
    sigma = np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-6)
    y = centred / sigma * p["gamma"] + p["beta"]
    m = y.mean(0)
    out = m @ p["probe"]
    # backward: the probe (LRP-ε), the mean over tokens (proportional)
    r_out = np.zeros(2)
    r_out[target] = out[target]
    r_m = m * (p["probe"] @ (r_out / _stab(out, EPS)))
    r_y = (y / T) * (r_m / _stab(m, EPS))
    # LayerNorm, identity rule: the scale/shift y = n γ + β (LRP-ε), n = c / σ with 1/σ
    # constant (R_c = R_n), the centring c = r − μ and μ = Σ_j r_j / D (proportional splits)
    mu = r.mean(-1, keepdims=True)
    n = centred / sigma
    r_c = n * p["gamma"] * r_y / _stab(y, EPS)
    r_mu = (-mu * r_c / _stab(centred, EPS)).sum(-1, keepdims=True)
    r_r = r * r_c / _stab(centred, EPS) + (r / D) * r_mu / _stab(mu, EPS)
    # residual x + o (proportional), the output projection (LRP-ε)
    r_x = x * r_r / _stab(r, EPS)
    r_o = o * r_r / _stab(r, EPS)
    r_ctx = _dense(c_flat, p["wo"], p["bo"], r_o).reshape(T, HEADS, DH)
    # A·v: share of each term a[h,t,s] v[s,h,e] in context[t,h,e]
    share = np.einsum("hts,she->htse", a, v) / context.transpose(1, 0, 2)[:, :, None, :]
    per_term = share * r_ctx.transpose(1, 0, 2)[:, :, None, :]  # (h, t, s, e)
    if cp:
        r_a = np.zeros_like(a)
        r_v = np.einsum("htse->she", per_term)
    else:
        r_a = 0.5 * per_term.sum(-1)
        r_v = 0.5 * np.einsum("htse->she", per_term)
    # softmax: R_z = z ⊙ (R_A − A Σ_s R_A); the scaling z = raw / √d passes R unchanged
    r_z = z * (r_a - a * r_a.sum(-1, keepdims=True))
    r_raw = r_z
    # q·kᵀ: uniform rule, ε = 0 (see the module docstring)
    terms = np.einsum("the,she->htse", q, k) / raw[..., None] * r_raw[..., None]
    r_q = 0.5 * np.einsum("htse->the", terms).reshape(T, D)
    r_k = 0.5 * np.einsum("htse->she", terms).reshape(T, D)
    for w, b, rel in (("wq", "bq", r_q), ("wk", "bk", r_k), ("wv", "bv", r_v.reshape(T, D))):
        r_x = r_x + _dense(x, p[w], p[b], rel)
    return r_x, out


@pytest.mark.parametrize("name", ["AttnLRP", "CPLRP"])
def test_attention_block_matches_the_numpy_reference(name, x64):
    p = _params()
    x = np.random.default_rng(1).standard_normal((T, D))
    composite = getattr(composites, name)(epsilon=EPS, stabilizer=EPS)
    explain = jax.jit(lambda x: jaxlrp.explain(_block(p), x, target=1, composite=composite))
    got = np.asarray(explain(jnp.asarray(x)))
    expected, out = numpy_lrp(p, x, target=1, cp=name == "CPLRP")
    np.testing.assert_allclose(np.asarray(_block(p)(x)), out, rtol=1e-12)
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error <= 1e-9, error


def test_the_reference_discriminates_attnlrp_from_cplrp(x64):
    """The two rules differ by far more than the tolerance on this block, so the comparison
    above checks the relevance through ``q·kᵀ`` and the softmax, not only through ``v``."""
    p = _params()
    x = np.random.default_rng(1).standard_normal((T, D))
    attn, _ = numpy_lrp(p, x, target=1)
    cp, _ = numpy_lrp(p, x, target=1, cp=True)
    assert np.abs(attn - cp).max() / np.abs(attn).max() > 1e-2
