"""Affine chains: folded into layers across data movement, or element-wise "affine" layers.

On a ReLU network with biases and batch norms anywhere, LRP-0 (with an unstabilized ``Norm`` on
sums) is exactly gradient × input; every test below checks that identity in float64, so that a
bias or a batch norm that a rule ignores shows up as a large error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules

LRP0 = composites.Composite(default=rules.Zero(), sum=rules.Norm(0.0))


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _normal(key, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.PRNGKey(key), shape, jnp.float64)


def _uniform(key, shape, low, high):
    return jax.random.uniform(jax.random.PRNGKey(key), shape, jnp.float64, low, high)


def _lrp0_error(fn, *args, target=1):
    """||LRP-0 - x ⊙ ∇f|| / ||x ⊙ ∇f|| for the last argument."""
    relevance = jaxlrp.explain(fn, *args, target=target, composite=LRP0)
    x = args[-1]
    grad = jax.grad(lambda x_: fn(*args[:-1], x_)[:, target].sum())(x)
    expected = x * grad
    error = jnp.linalg.norm((relevance - expected).ravel())
    return float(error / jnp.linalg.norm(expected.ravel()))


def _batch_norm(x, stats, axis=-1):
    shape = [1] * x.ndim
    shape[axis] = -1
    mean, var, scale, bias = (stats[k].reshape(shape) for k in ("mean", "var", "scale", "bias"))
    return (x - mean) / jnp.sqrt(var + 1e-5) * scale + bias


def _stats(key, channels):
    return {
        "mean": _normal(key, (channels,), 0.3),
        "var": _uniform(key + 1, (channels,), 0.5, 2.0),
        "scale": _normal(key + 2, (channels,)),  # negative scales too
        "bias": _normal(key + 3, (channels,), 0.3),
    }


def test_vmapped_equinox_style_linear_bias_is_folded():
    # a per-example W @ x + b under vmap traces to dot_general -> transpose -> add
    w1, b1 = _normal(0, (16, 8)), _normal(1, (16,))
    w2, b2 = _normal(2, (12, 16), 0.5), _normal(3, (12,))
    w3, b3 = _normal(4, (5, 12), 0.5), _normal(5, (5,))

    def one(v):
        h = jax.nn.relu(w1 @ v + b1)
        h = jax.nn.relu((w2 @ h + b2).reshape(3, 4)).reshape(12)
        return w3 @ h + b3

    fn = jax.vmap(one)
    x = _normal(6, (4, 8))
    assert _lrp0_error(fn, x, target=2) < 1e-6
    found = jaxlrp.layers(fn, x)
    assert [(info.kind, info.folded) for info in found] == [("dense", ("add",))] * 3
    assert found[0].output_shape == (4, 16)  # the unit ends after the transpose and the add


def test_vmapped_conv_with_transposed_bias_is_folded():
    # a per-example convolution with a (C, 1, 1) bias under vmap: conv -> reshape -> squeeze ->
    # add; here also a per-channel scaling after a transpose to channels-last
    k1, c1 = _normal(10, (6, 3, 3, 3), 0.4), _normal(11, (6, 1, 1))
    k2, c2 = _normal(12, (4, 6, 3, 3), 0.3), _normal(13, (4, 1, 1))
    gamma, beta = _normal(14, (4,)), _normal(15, (4,))

    def conv(v, kernel, bias):
        return jax.lax.conv_general_dilated(v[None], kernel, (1, 1), "SAME")[0] + bias

    def one(v):
        h = jax.nn.relu(conv(v, k1, c1))
        h = jnp.transpose(conv(h, k2, c2), (1, 2, 0)) * gamma + beta  # HWC
        return jax.nn.relu(h).mean(axis=(0, 1))

    fn = jax.vmap(one)
    x = _normal(16, (3, 3, 8, 8))
    assert _lrp0_error(fn, x, target=1) < 1e-6
    found = jaxlrp.layers(fn, x)
    assert [info.kind for info in found] == ["conv", "conv"]
    assert found[1].folded == ("add", "mul", "add")
    assert found[1].output_shape == (3, 8, 8, 4)


def _pre_activation(params, x):
    """BN at the input, BN -> ReLU -> conv, BN after a residual add (NHWC)."""

    def conv(h, kernel):
        return jax.lax.conv_general_dilated(
            h, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    h = jax.nn.relu(_batch_norm(x, params["bn0"]))
    h = conv(h, params["k0"]) + params["c0"]
    y = conv(jax.nn.relu(_batch_norm(h, params["bn1"])), params["k1"])
    h = jax.nn.relu(_batch_norm(h + y, params["bn2"]))
    return jnp.mean(h, axis=(1, 2)) @ params["w"] + params["b"]


def _pre_activation_params():
    return {
        "bn0": _stats(20, 3), "bn1": _stats(30, 6), "bn2": _stats(40, 6),
        "k0": _normal(50, (3, 3, 3, 6), 0.4), "c0": _normal(51, (6,), 0.3),
        "k1": _normal(52, (3, 3, 6, 6), 0.3),
        "w": _normal(53, (6, 4)), "b": _normal(54, (4,)),
    }


def test_pre_activation_batch_norm_network_lrp0_is_gradient_times_input():
    params = _pre_activation_params()
    x = _normal(55, (2, 6, 6, 3))
    assert _lrp0_error(_pre_activation, params, x, target=3) < 1e-6


def test_layers_lists_affine_layers_with_kind_affine():
    params = _pre_activation_params()
    x = _normal(55, (2, 6, 6, 3))
    found = jaxlrp.layers(_pre_activation, params, x)
    assert [info.kind for info in found] == ["affine", "conv", "affine", "conv", "affine", "dense"]
    bn = found[0]
    assert bn.folded == ("sub", "div", "mul", "add")
    assert bn.is_first and not found[1].is_first
    assert bn.weight_shape == (1, 1, 1, 3)
    assert bn.input_shape == bn.output_shape == (2, 6, 6, 3)
    assert bn.path == "bn0"  # named after its shift's parameter path
    assert [info.kind_index for info in found if info.kind == "affine"] == [0, 1, 2]
    table = jaxlrp.rule_table(_pre_activation, params, x, composite=composites.EpsilonPlus())
    row = table.splitlines()[1]
    assert "affine +sub+div+mul+add" in row and "Epsilon(epsilon=1e-06)" in row
    assert row.split()[-1] == "affine"  # chosen by kind


def test_affine_rule_is_selectable_and_falls_back_to_the_dense_rule():
    params = _pre_activation_params()
    x = _normal(55, (2, 6, 6, 3))
    table = jaxlrp.rule_table(
        _pre_activation, params, x, composite=composites.Composite(dense=rules.Zero())
    )
    assert table.splitlines()[1].endswith("affine (dense rule)")
    composite = composites.Composite(affine=rules.Epsilon(0.5), conv=rules.ZPlus())
    kinds = {info.kind: composite.layer_rule(info)
             for info in jaxlrp.layers(_pre_activation, params, x)}
    assert kinds["affine"] == rules.Epsilon(0.5)
    assert kinds["conv"] == rules.ZPlus()


def _affine(x, s, t):
    return x * s + t


def _relevance(fn, composite, x, r_out, *consts):
    out, relevance_fn = jaxlrp.lrp(lambda *a: fn(*a), composite)(*consts, x)
    return out, relevance_fn(r_out)


def test_epsilon_on_an_affine_layer_matches_a_numpy_hand_computation():
    x = _normal(60, (3, 5))
    s, t = _normal(61, (5,)), _normal(62, (5,))
    r_out = _normal(63, (3, 5))
    eps = 0.1
    fn = lambda s_, t_, x_: _affine(x_, s_, t_)  # noqa: E731
    z, relevance = _relevance(fn, composites.Composite(affine=rules.Epsilon(eps)), x, r_out, s, t)
    xn, sn, tn, rn = (np.asarray(v) for v in (x, s, t, r_out))
    zn = xn * sn + tn
    np.testing.assert_allclose(z, zn, rtol=1e-12)
    # diagonal weight: R_i = a_i s_i / (z_i + ε sign z_i) · R_i
    expected = xn * sn / (zn + eps * np.where(zn >= 0, 1.0, -1.0)) * rn
    np.testing.assert_allclose(relevance, expected, rtol=1e-10, atol=1e-12)


def test_z_plus_gamma_and_z_box_on_an_affine_layer_match_numpy():
    x = _normal(70, (4, 6))
    s, t = _normal(71, (6,)), _normal(72, (6,))
    r_out = _normal(73, (4, 6))
    fn = lambda s_, t_, x_: _affine(x_, s_, t_)  # noqa: E731
    xn, sn, tn, rn = (np.asarray(v) for v in (x, s, t, r_out))
    pos, neg = np.maximum, np.minimum
    # z+: numerator a⁺s⁺ + a⁻s⁻, the shift only in the positive part
    numerator = pos(xn, 0) * pos(sn, 0) + neg(xn, 0) * neg(sn, 0)
    denominator = numerator + pos(tn, 0)
    denominator = denominator + 1e-6 * np.where(denominator >= 0, 1.0, -1.0)
    _, relevance = _relevance(fn, composites.Composite(affine=rules.ZPlus()), x, r_out, s, t)
    np.testing.assert_allclose(relevance, numerator / denominator * rn, rtol=1e-9, atol=1e-12)
    # generalized γ: W + γW⁺ on contributions of the output's sign, W + γW⁻ on the others
    g = 0.25
    up, down = (lambda p: p + g * pos(p, 0)), (lambda p: p + g * neg(p, 0))
    zn = xn * sn + tn
    expected = np.zeros_like(xn)
    for mask, same, other in ((zn > 0, up, down), (zn < 0, down, up)):
        numerator = pos(xn, 0) * same(sn) + neg(xn, 0) * other(sn)
        denominator = numerator + same(tn)
        denominator = denominator + 1e-6 * np.where(denominator >= 0, 1.0, -1.0)
        expected += np.where(mask, numerator / denominator * rn, 0.0)
    gamma = composites.Composite(affine=rules.Gamma(g))
    _, relevance = _relevance(fn, gamma, x, r_out, s, t)
    np.testing.assert_allclose(relevance, expected, rtol=1e-9, atol=1e-12)
    # z^B on a first (diagonal) layer: the shift's terms cancel (t - t⁺ - t⁻ = 0), so numerator
    # and denominator coincide up to the stabilizer: relevance is conserved
    box = composites.Composite(first=rules.ZBox(low=-3.0, high=3.0))
    _, relevance = _relevance(fn, box, x, r_out, s, t)
    numerator = xn * sn + 3.0 * pos(sn, 0) - 3.0 * neg(sn, 0)
    denominator = numerator + 1e-6 * np.where(numerator >= 0, 1.0, -1.0)
    np.testing.assert_allclose(relevance, numerator / denominator * rn, rtol=1e-9, atol=1e-12)


def test_only_parameter_shifts_become_affine_layers():
    w1, w2 = _normal(80, (6, 6)), _normal(81, (6, 3))
    cases = {
        "gelu": lambda x: jax.nn.gelu(x @ w1, approximate=False) @ w2,
        "tanh-gelu": lambda x: jax.nn.gelu(x @ w1, approximate=True) @ w2,
        "softmax": lambda x: jax.nn.softmax(x @ w1) @ w2,  # x - stop_gradient(max x)
        "scaling": lambda x: jax.nn.relu(x @ w1) * _normal(82, (6,)) @ w2,  # Pass is exact
        "gate": lambda x: (1.0 - jax.nn.sigmoid(x @ w1)) * (x @ w1) @ w2,
    }
    x = _normal(83, (2, 6))
    for name, fn in cases.items():
        kinds = [info.kind for info in jaxlrp.layers(fn, x)]
        assert "affine" not in kinds, name


def test_a_shift_after_pooling_and_on_a_layer_used_twice_become_affine_layers():
    w, w2, w3 = _normal(90, (6, 6)), _normal(94, (6, 6)), _normal(95, (6, 6))
    t, u = _normal(91, (6,)), _normal(92, (6,))

    def fn(x):
        z = x @ w  # used twice: the shift cannot be folded into the layer
        h = jax.nn.relu(z + t) @ w2 + z @ w3
        return jnp.mean(h.reshape(2, 3, 2), axis=-1) * 2.0 + u[:3]

    x = _normal(93, (2, 6))
    kinds = [info.kind for info in jaxlrp.layers(fn, x)]
    assert kinds == ["dense", "affine", "dense", "dense", "affine"]
    assert _lrp0_error(fn, x, target=1) < 1e-6


def test_a_shift_inside_an_activation_formula_stays_part_of_it():
    # relu(z + t) + relu(z) is one element-wise function of z (like GELU): one activation node
    w, t = _normal(96, (6, 6)), _normal(97, (6,))

    def fn(x):
        z = x @ w
        return jax.nn.relu(z + t) + jax.nn.relu(z)

    assert [info.kind for info in jaxlrp.layers(fn, _normal(98, (2, 6)))] == ["dense"]


def test_guided_backprop_treats_an_affine_layer_as_linear():
    params = _pre_activation_params()
    x = _normal(55, (2, 6, 6, 3))
    gradient = jaxlrp.explain(
        _pre_activation, params, x, target=0, composite=composites.Gradient()
    )
    grad = jax.grad(lambda x_: _pre_activation(params, x_)[:, 0].sum())(x)
    np.testing.assert_allclose(gradient, x * grad, rtol=1e-9, atol=1e-12)


def test_equinox_vmapped_network_with_batch_norm_lrp0_is_gradient_times_input():
    eqx = pytest.importorskip("equinox")
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    kw = {"dtype": jnp.float64}
    conv1 = eqx.nn.Conv2d(3, 6, 3, padding=1, key=keys[0], **kw)
    conv2 = eqx.nn.Conv2d(6, 4, 3, key=keys[1], **kw)
    lin1 = eqx.nn.Linear(4 * 6 * 6, 10, key=keys[2], **kw)
    lin2 = eqx.nn.Linear(10, 5, key=keys[3], **kw)
    bn = _stats(100, 6)

    def one(v):
        h = jax.nn.relu(conv1(v))
        h = jax.nn.relu(_batch_norm(h, bn, axis=0))  # a batch norm after the ReLU: affine
        h = jax.nn.relu(conv2(h))
        return lin2(jax.nn.relu(lin1(h.reshape(-1))))

    # non-zero biases everywhere
    conv1, conv2, lin1, lin2 = (
        eqx.tree_at(lambda m: m.bias, m, m.bias + _normal(110 + i, m.bias.shape, 0.3))
        for i, m in enumerate((conv1, conv2, lin1, lin2))
    )
    fn = jax.vmap(one)
    x = _normal(120, (3, 3, 8, 8))
    assert _lrp0_error(fn, x, target=2) < 1e-6
    found = jaxlrp.layers(fn, x)
    assert [info.kind for info in found] == ["conv", "affine", "conv", "dense", "dense"]
    assert all(info.folded[:1] == ("add",) for info in found if info.kind != "affine")


def test_haiku_pre_activation_resnet_lrp0_is_gradient_times_input():
    hk = pytest.importorskip("haiku")

    def net(x, is_training):
        model = hk.nets.ResNet(
            blocks_per_group=(1, 1, 1, 1), num_classes=3, resnet_v2=True, bottleneck=False,
            channels_per_group=(4, 4, 6, 6),
        )
        return model(x, is_training=is_training)

    transformed = hk.transform_with_state(net)
    x = _normal(130, (2, 16, 16, 3))
    params, state = transformed.init(jax.random.PRNGKey(1), x, True)
    keys = iter(range(200, 400))

    def randomize(path, leaf):
        name = jax.tree_util.keystr(path)
        if "var_ema" in name and "average" in name:
            return _uniform(next(keys), leaf.shape, 0.5, 2.0)
        if name.endswith("['average']") or name.endswith("['offset']") or name.endswith("['b']"):
            return _normal(next(keys), leaf.shape, 0.3)
        if "logits" in name:  # haiku initializes the logits layer to zero
            return _normal(next(keys), leaf.shape)
        return leaf

    params = jax.tree_util.tree_map_with_path(randomize, params)
    state = jax.tree_util.tree_map_with_path(randomize, state)

    def fn(p, s, x_):
        return transformed.apply(p, s, None, x_, False)[0]

    assert _lrp0_error(fn, params, state, x, target=1) < 1e-6
    kinds = [info.kind for info in jaxlrp.layers(fn, params, state, x)]
    assert kinds.count("affine") >= 4  # the pre-activation batch norms
