"""Relevance at any layer (``record=``) and of parameters (``record_params=``).

Independent checks: conservation layer by layer on bias-free ReLU nets with LRP-0; the ledger
(which reads the same probes through its own code path); and *truncated models*: the relevance
recorded at a hidden value equals the explanation of the network's head applied to that value,
computed by a separate ``explain`` call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nets import SmallCNN

import jaxlrp
from jaxlrp import Composite, rules
from jaxlrp.record import Recorded, recordable

RNG = np.random.default_rng(3)


def _params(bias: float) -> dict:
    def dense(n_in, n_out):
        return {"kernel": RNG.normal(size=(n_in, n_out)) / np.sqrt(n_in),
                "bias": bias * RNG.normal(size=n_out)}  # fmt: skip

    return {"enc": {"l1": dense(6, 8), "l2": dense(8, 7)}, "head": dense(7, 4)}


def mlp(params, x):
    p = params["enc"]
    h = jax.nn.relu(x @ p["l1"]["kernel"] + p["l1"]["bias"])
    h = jax.nn.relu(h @ p["l2"]["kernel"] + p["l2"]["bias"])
    return h @ params["head"]["kernel"] + params["head"]["bias"]


def head(params, h):
    """``mlp`` from the input of layer ``enc/l2`` upward."""
    p = params["enc"]["l2"]
    h = jax.nn.relu(h @ p["kernel"] + p["bias"])
    return h @ params["head"]["kernel"] + params["head"]["bias"]


P_FREE = _params(0.0)  # float64 NumPy: float32 (default) or float64 (under enable_x64) in jax
P_BIAS = _params(0.3)
X = RNG.normal(size=(3, 6))
TARGET = 2


def _sum(r) -> float:
    return float(np.asarray(r, np.float64).sum())


@functools.lru_cache(maxsize=2)
def _cnn(use_bias: bool):
    """(model, x, variables) of ``SmallCNN`` on 8x8 images, float64 NumPy weights (built by
    hand: Flax's eager init costs seconds on a busy CPU)."""
    rng = np.random.default_rng(5)
    shapes = {"Conv_0": (3, 3, 3, 8), "Conv_1": (3, 3, 8, 8), "Dense_0": (8, 10),
              "Dense_1": (10, 5)}  # fmt: skip
    params = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1]))
        params[name] = {"kernel": rng.normal(size=shape) / np.sqrt(fan_in)}
        if use_bias:
            params[name]["bias"] = 0.1 * rng.normal(size=shape[-1])
    x = rng.uniform(-1.0, 1.0, size=(2, 8, 8, 3))
    return SmallCNN(use_bias=use_bias), x, {"params": params}


def _x64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def test_recorded_relevance_is_conserved_layer_by_layer_on_a_bias_free_relu_mlp():
    with jax.enable_x64(True):
        params, x = _x64(P_FREE), _x64(X)
        rec = jaxlrp.explain(mlp, params, x, target=TARGET, record="all",
                             composite=Composite(default=rules.Zero()))  # fmt: skip
        logit = float(mlp(params, x)[:, TARGET].sum())
    assert isinstance(rec, Recorded)
    assert set(rec.layers) == set(recordable(mlp, params, x))
    assert {"enc/l1:in", "enc/l2:in", "head:out", "activation#0:in"} <= set(rec.layers)
    errors = {k: abs(_sum(r) - logit) / abs(logit) for k, r in rec.layers.items()}
    assert max(errors.values()) < 1e-12, errors
    assert _sum(rec.input) == pytest.approx(logit, rel=1e-12)
    np.testing.assert_allclose(rec.layers["enc/l1:in"], rec.input, rtol=1e-12, atol=1e-15)


def test_recorded_relevance_is_conserved_layer_by_layer_on_a_bias_free_relu_cnn():
    with jax.enable_x64(True):
        model, x, variables = _cnn(False)
        x, variables = _x64((x, variables))
        rec = jaxlrp.explain(model.apply, variables, x, target=1, record="all",
                             composite=Composite(default=rules.Zero()))  # fmt: skip
        logit = float(jax.jit(model.apply)(variables, x)[:, 1].sum())
    for key in ("Conv_0:out", "Conv_1:in", "max:out", "Dense_0:in", "Dense_1:out"):
        assert key in rec.layers
    # above the average pooling (its Norm rule has a 1e-6 stabilizer) every value carries the
    # logit; below it every value carries the input's relevance
    above = [k for k in rec.layers if k.startswith(("Dense", "activation#2")) or k == "sum:out"]
    below = [k for k in rec.layers if k not in above]
    total = _sum(rec.input)
    assert len(above) == 7 and len(below) == 11
    assert max(abs(_sum(rec.layers[k]) - logit) / abs(logit) for k in above) < 1e-12
    assert max(abs(_sum(rec.layers[k]) - total) / abs(total) for k in below) < 1e-12
    assert abs(total - logit) / abs(logit) < 1e-5


def test_first_layer_input_relevance_includes_what_zbox_assigns_independently_of_the_input():
    comp = Composite(default=rules.Zero(), first=rules.ZBox(-3.0, 3.0))
    x = X.copy()
    x[0, 0] = 0.0  # relevance here comes only from the bounds (the input tap), not from a ⊙ c
    rec = jaxlrp.explain(mlp, P_FREE, x, target=TARGET, composite=comp, record="enc/l1:in")
    np.testing.assert_allclose(rec.layers["enc/l1:in"], rec.input, rtol=1e-5, atol=1e-7)
    assert abs(float(rec.layers["enc/l1:in"][0, 0])) > 1e-3


def test_recorded_relevance_at_a_hidden_layer_equals_the_explanation_of_the_head():
    """Truncated model: R at the input of ``enc/l2`` = explain(head, h), elementwise (biases and
    ε = 0.1 included, so nothing is conserved and every rule's detail matters)."""
    with jax.enable_x64(True):
        params, x = _x64(P_BIAS), _x64(X)
        comp = Composite(default=rules.Epsilon(0.1))
        rec = jaxlrp.explain(mlp, params, x, target=TARGET, composite=comp,
                             record=["enc/l2", "head:out"])  # fmt: skip
        p1 = params["enc"]["l1"]
        h = jax.nn.relu(x @ p1["kernel"] + p1["bias"])
        expected = jaxlrp.explain(head, params, h, target=TARGET, composite=comp)
        out = np.asarray(mlp(params, x))
    assert set(rec.layers) == {"enc/l2:in", "enc/l2:out", "head:out"}
    np.testing.assert_allclose(rec.layers["enc/l2:in"], expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rec.layers["head:out"], out * np.eye(4)[TARGET],
                               rtol=1e-12)  # fmt: skip


def test_recorded_relevance_in_a_cnn_equals_the_explanation_of_its_dense_head():
    with jax.enable_x64(True):
        model, x, variables = _cnn(True)
        x, variables = _x64((x, variables))
        comp = Composite(default=rules.Epsilon(0.05))
        rec = jaxlrp.explain(model.apply, variables, x, target=3, composite=comp,
                             record="Dense_0:in")  # fmt: skip
        _, state = model.apply(variables, x, capture_intermediates=True,
                               mutable=["intermediates"])  # fmt: skip
        conv1 = state["intermediates"]["Conv_1"]["__call__"][0]
        flat = nn_avg_flat(jax.nn.relu(conv1))
        p = variables["params"]

        def dense_head(p, f):
            f = jax.nn.relu(f @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
            return f @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]

        expected = jaxlrp.explain(dense_head, p, flat, target=3, composite=comp)
    assert list(rec.layers) == ["Dense_0:in"]
    np.testing.assert_allclose(rec.layers["Dense_0:in"], expected, rtol=1e-10, atol=1e-14)


def nn_avg_flat(y):
    import flax.linen as nn

    y = nn.avg_pool(y, (2, 2), (2, 2))
    return y.reshape(y.shape[0], -1)


def test_recorded_sums_agree_with_the_ledger_on_a_biased_net():
    comp = Composite(default=rules.Epsilon(0.5))
    with jax.enable_x64(True):
        params, x = _x64(P_BIAS), _x64(X)
        rec = jaxlrp.explain(mlp, params, x, target=TARGET, composite=comp, record="all")
        book = jaxlrp.ledger(mlp, params, x, target=TARGET, composite=comp)
    layers = [e for e in book.entries if e.kind.startswith("layer/")]
    assert [e.module for e in layers] == ["enc/l1", "enc/l2", "head"]
    for e in layers:
        assert _sum(rec.layers[f"{e.module}:out"]) == pytest.approx(e.relevance_out,
                                                                           rel=1e-12)
        assert _sum(rec.layers[f"{e.module}:in"]) == pytest.approx(e.relevance_in,
                                                                          rel=1e-12)
    assert abs(layers[-1].absorbed) > 1e-3  # the check is not vacuous


def test_glob_selects_modules_their_contents_and_one_side():
    def key_set(record):
        return set(recordable(mlp, P_FREE, X, record=record))

    assert key_set("enc/*") == {"enc/l1:in", "enc/l1:out", "enc/l2:in", "enc/l2:out"}
    assert key_set("enc") == key_set("enc/*")  # a module selects what is inside it
    assert key_set("**:out") == {k for k in recordable(mlp, P_FREE, X) if k.endswith(":out")}
    assert key_set("enc/l?:in") == {"enc/l1:in", "enc/l2:in"}
    assert key_set(["head", "activation#1"]) == {"head:in", "head:out", "activation#1:in",
                                                 "activation#1:out"}  # fmt: skip
    infos = jaxlrp.layers(mlp, P_FREE, X)
    assert key_set(infos[1]) == key_set(1) == key_set(-2) == {"enc/l2:in", "enc/l2:out"}
    rec = jaxlrp.explain(mlp, P_FREE, X, target=0, record=["enc/*", "**:out"])
    assert set(rec.layers) == key_set(["enc/*", "**:out"])


def test_shared_names_get_their_program_position():
    w = jnp.asarray(RNG.normal(size=(5, 5)))

    def twice(params, x):
        return jnp.tanh(jnp.tanh(x @ params["shared"]["kernel"]) @ params["shared"]["kernel"])

    keys = recordable(twice, {"shared": {"kernel": w}}, X[:, :5])
    assert keys == ["shared#0:out", "shared#0:in", "activation#0:out", "activation#0:in",
                    "shared#1:out", "shared#1:in", "activation#1:out", "activation#1:in"]


def test_bad_selector_raises_listing_the_available_names():
    with pytest.raises(ValueError, match=r"selects nothing.*'enc/l1:out'.*'head:in'"):
        jaxlrp.explain(mlp, P_FREE, X, target=0, record="decoder/*")
    with pytest.raises(ValueError, match="':out' or ':in'"):
        jaxlrp.explain(mlp, P_FREE, X, target=0, record="enc/l1:output")
    with pytest.raises(ValueError, match="3 layers"):
        jaxlrp.explain(mlp, P_FREE, X, target=0, record=7)
    with pytest.raises(TypeError, match="not a selector"):
        jaxlrp.explain(mlp, P_FREE, X, target=0, record=[1.5])
    with pytest.raises(TypeError, match="record selectors are"):
        jaxlrp.explain(mlp, P_FREE, X, target=0, record={"enc": 1})


def test_record_works_under_jit_and_vmap_and_keys_the_compile_cache():
    comp = Composite(default=rules.Epsilon(0.1))
    eager = jaxlrp.explain(mlp, P_BIAS, X, target=TARGET, composite=comp, record="all",
                           record_params=True)  # fmt: skip
    plain = jaxlrp.explain(mlp, P_BIAS, X, target=TARGET, composite=comp)  # cache: no record
    assert not isinstance(plain, Recorded)
    np.testing.assert_allclose(plain, eager.input, rtol=1e-6)

    @jax.jit
    def jitted(params, x):
        return jaxlrp.explain(mlp, params, x, target=TARGET, composite=comp, record="all",
                              record_params=True)  # fmt: skip

    inside = jitted(P_BIAS, X)
    for a, b in zip(jax.tree.leaves(inside), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    def one(x):
        return jaxlrp.explain(mlp, P_BIAS, x, target=TARGET, composite=comp, record="all",
                              record_params=True)  # fmt: skip

    mapped = jax.vmap(one)(X)
    for key, r in eager.layers.items():
        np.testing.assert_allclose(mapped.layers[key], r, rtol=1e-5, atol=1e-7, err_msg=key)
    for key, r in eager.params.items():  # per example under vmap; their sum is the batch's
        np.testing.assert_allclose(mapped.params[key].sum(0), r, rtol=1e-5, atol=1e-6)


def test_lrp_relevance_fn_returns_recorded_for_any_output_relevance():
    comp = Composite(default=rules.Zero())
    out, relevance_fn = jaxlrp.lrp(mlp, comp, record="head:out")(P_FREE, X)
    r_out = jnp.ones_like(out)
    rec = relevance_fn(r_out)
    np.testing.assert_allclose(rec.layers["head:out"], r_out, rtol=1e-6)
    assert rec.params == {}


def test_weight_relevance_is_the_batch_sum_of_the_contributions_a_w_s():
    """R_w[i, j] = Σ_b a_bi w_ij R_bj / (z_bj + ε sign z_bj), by hand in NumPy; its row sums are
    the layer's input relevance summed over the batch."""
    eps = 0.1
    comp = Composite(default=rules.Epsilon(eps))
    with jax.enable_x64(True):
        params, x = _x64(P_BIAS), _x64(X)
        rec = jaxlrp.explain(mlp, params, x, target=TARGET, composite=comp,
                             record="enc/l2", record_params="enc/l2")  # fmt: skip
        p1, p2 = params["enc"]["l1"], params["enc"]["l2"]
        a = np.asarray(jax.nn.relu(x @ p1["kernel"] + p1["bias"]))
    w, b = np.asarray(p2["kernel"]), np.asarray(p2["bias"])
    z = a @ w + b
    s = np.asarray(rec.layers["enc/l2:out"]) / (z + eps * np.where(z >= 0, 1.0, -1.0))
    expected = np.einsum("bi,ij,bj->ij", a, w, s)
    assert list(rec.params) == ["enc/l2"]
    np.testing.assert_allclose(rec.params["enc/l2"], expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(rec.params["enc/l2"]).sum(1),
                               np.asarray(rec.layers["enc/l2:in"]).sum(0), rtol=1e-12)


def test_conv_weight_relevance_sums_to_the_layers_input_relevance():
    with jax.enable_x64(True):
        model, x, variables = _cnn(False)
        x, variables = _x64((x, variables))
        rec = jaxlrp.explain(model.apply, variables, x, target=1, record=["Conv_0", "Conv_1"],
                             record_params=True, composite=Composite(default=rules.Zero()))
    assert set(rec.params) == {"Conv_0", "Conv_1", "Dense_0", "Dense_1"}
    assert rec.params["Conv_1"].shape == variables["params"]["Conv_1"]["kernel"].shape
    for name in ("Conv_0", "Conv_1"):
        assert _sum(rec.params[name]) == pytest.approx(
            _sum(rec.layers[f"{name}:in"]), rel=1e-12)


def test_weight_relevance_refuses_rules_outside_the_epsilon_family():
    comp = Composite(default=rules.Epsilon(), paths={"enc/l1": rules.Gamma(0.25)})
    with pytest.raises(ValueError, match=r"'enc/l1' has rule Gamma.*ε-rule family"):
        jaxlrp.explain(mlp, P_FREE, X, target=0, composite=comp, record_params=True)
    rec = jaxlrp.explain(mlp, P_FREE, X, target=0, composite=comp, record_params="head")
    assert list(rec.params) == ["head"] and rec.layers == {}
