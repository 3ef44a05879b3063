"""The conventions where jaxlrp and zennit differ (or could), each checked on a tiny network.

Every test states what each side does; ``docs/zennit-parity.md`` explains why and what the
difference amounts to on real architectures. Where both sides agree, the bound is about 5x the
error measured in float32 (noted next to it; zennit runs in float64, jaxlrp in float32).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need the 'parity' extra (torch)")
pytest.importorskip("zennit", reason="parity tests need the 'parity' extra (zennit)")

from zennit import composites as zennit_composites  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit_parity_harness import relative_l2, zennit_batchnorm_variables  # noqa: E402

import jaxlrp  # noqa: E402
from jaxlrp import composites, rules  # noqa: E402

pytestmark = pytest.mark.parity


def _zennit(model, composite, x_nhwc, output_relevance):
    """zennit's input relevance (NHWC); ``output_relevance`` is the relevance itself."""
    x = torch.tensor(np.asarray(x_nhwc).transpose(0, 3, 1, 2).copy())
    relevance_out = torch.tensor(np.asarray(output_relevance))
    with Gradient(model, composite) as attributor:
        out, relevance = attributor(x, attr_output=relevance_out)
    return relevance.detach().numpy().transpose(0, 2, 3, 1), out.detach().numpy()


def _conv_kernel(conv):
    return jnp.asarray(conv.weight.detach().numpy().transpose(2, 3, 1, 0))


def _vector(parameter):
    return jnp.asarray(parameter.detach().numpy())


class TwoStems(nn.Module):
    """Two 3x3 convolutions read the input; their ReLUs are summed, pooled and classified."""

    @nn.compact
    def __call__(self, x):
        pad = ((1, 1), (1, 1))
        a = nn.relu(nn.Conv(4, (3, 3), padding=pad, name="a")(x))
        b = nn.relu(nn.Conv(4, (3, 3), padding=pad, name="b")(x))
        return nn.Dense(3, name="fc")(jnp.mean(a + b, axis=(1, 2)))


class TorchTwoStems(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu_a = torch.nn.ReLU()
        self.relu_b = torch.nn.ReLU()
        self.sum = Sum()  # a module, so that zennit's Norm rule applies to the sum
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        both = torch.stack([self.relu_a(self.a(x)), self.relu_b(self.b(x))], dim=-1)
        return self.fc(self.pool(self.sum(both)).flatten(1))

    def variables(self):
        def layer(module, conv=True):
            kernel = _conv_kernel(module) if conv else _vector(module.weight).T
            return {"kernel": kernel, "bias": _vector(module.bias)}

        return {"params": {"a": layer(self.a), "b": layer(self.b), "fc": layer(self.fc, False)}}


def test_first_layer_is_every_layer_fed_by_the_input_in_jaxlrp_and_one_module_in_zennit():
    """zennit's ``first_map`` takes the first matching module in registration order; jaxlrp's
    ``first`` is every layer fed by the input. With two convolutions on the input, zennit gives
    ZBox to ``a`` and Gamma to ``b``; jaxlrp ZBox to both, and reproduces zennit with a path rule.
    """
    torch.manual_seed(0)
    model = TorchTwoStems().double().eval()
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 8, 8, 3))
    variables = model.variables()
    logits = np.asarray(TwoStems().apply(variables, jnp.asarray(x, jnp.float32)))
    relevance_out = logits * np.eye(3)[[0, 2]]
    expected, out = _zennit(
        model, zennit_composites.EpsilonGammaBox(low=-1.0, high=1.0), x,
        relevance_out,
    )
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-6)

    preset = composites.EpsilonGammaBox(low=-1.0, high=1.0)
    zennit_like = dataclasses.replace(preset, paths=(("b", rules.Gamma()),))
    fn = TwoStems().apply
    ours = jaxlrp.explain(fn, variables, jnp.asarray(x, jnp.float32),
                          target=jnp.asarray(relevance_out, jnp.float32), composite=preset)
    like = jaxlrp.explain(fn, variables, jnp.asarray(x, jnp.float32),
                          target=jnp.asarray(relevance_out, jnp.float32), composite=zennit_like)
    assert relative_l2(like, expected) < 8e-7  # measured 1.7e-7 (float32)
    assert relative_l2(ours, expected) > 1e-2


def test_epsilon_gamma_box_on_a_dense_first_layer():
    """zennit's EpsilonGammaBox gives ZBox only to a *convolution*: an MLP gets Epsilon on its
    first layer. jaxlrp's ``first`` applies to any layer kind (ZBox on the first dense layer);
    ``first=None`` reproduces zennit."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double().eval()

    def fn(params, x):
        return jax.nn.relu(x @ params[0] + params[1]) @ params[2] + params[3]

    params = [_vector(model[0].weight).T, _vector(model[0].bias),
              _vector(model[2].weight).T, _vector(model[2].bias)]
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, 12))
    logits = np.asarray(fn(params, jnp.asarray(x, jnp.float32)))
    relevance_out = logits * np.eye(3)[[1, 1]]
    zennit_rules = zennit_composites.EpsilonGammaBox(low=-1.0, high=1.0)
    with Gradient(model, zennit_rules) as attributor:
        _, expected = attributor(torch.tensor(x), attr_output=torch.tensor(relevance_out))
    target = jnp.asarray(relevance_out, jnp.float32)
    preset = composites.EpsilonGammaBox(low=-1.0, high=1.0)
    ours = jaxlrp.explain(fn, params, jnp.asarray(x, jnp.float32), target=target,
                          composite=preset)
    like = jaxlrp.explain(fn, params, jnp.asarray(x, jnp.float32), target=target,
                          composite=dataclasses.replace(preset, first=None))
    assert relative_l2(like, expected.numpy()) < 4e-7  # measured 9.0e-8
    assert relative_l2(ours, expected.numpy()) > 1e-2


def test_zennit_batch_norm_merge_leaves_a_scaling_by_one_over_sqrt_one_plus_eps():
    """After zennit's merge the batch norm has mean 0, var 1, γ 1, β 0 but still divides by
    ``sqrt(1 + eps)``: zennit explains the model with γ and β scaled by that factor. jaxlrp folds
    exactly (its forward is the model's); ``zennit_batchnorm_variables`` reproduces zennit."""
    torch.manual_seed(0)
    conv, norm = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 0.1)
        norm.running_mean.normal_(0, 0.1)
        norm.running_var.uniform_(0.5, 1.5)
    model = torch.nn.Sequential(
        conv, norm, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).double().eval()

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x)
            h = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn")(h))
            return nn.Dense(3, name="fc")(jnp.mean(h, axis=(1, 2)))

    variables = {
        "params": {
            "conv": {"kernel": _conv_kernel(conv), "bias": _vector(conv.bias)},
            "bn": {"scale": _vector(norm.weight), "bias": _vector(norm.bias)},
            "fc": {"kernel": _vector(model[5].weight).T, "bias": _vector(model[5].bias)},
        },
        "batch_stats": {"bn": {"mean": _vector(norm.running_mean),
                               "var": _vector(norm.running_var)}},
    }
    x = np.random.default_rng(2).uniform(-1, 1, size=(1, 6, 6, 3))
    with torch.no_grad():
        logits = model(torch.tensor(x.transpose(0, 3, 1, 2).copy())).numpy()
    relevance_out = logits * np.eye(3)[[0]]
    zennit_rules = zennit_composites.EpsilonPlus(
        canonizers=[SequentialMergeBatchNorm()]
    )
    expected, canonized_logits = _zennit(model, zennit_rules, x, relevance_out)
    # the canonized model is not the model; it is the model with γ, β / sqrt(1 + eps)
    merged = zennit_batchnorm_variables(variables)
    merged_logits = np.asarray(Net().apply(merged, jnp.asarray(x, jnp.float32)))
    assert relative_l2(canonized_logits, logits) > 1e-6
    assert relative_l2(canonized_logits, merged_logits) < 2.5e-7  # measured 4.8e-8
    np.testing.assert_allclose(Net().apply(variables, jnp.asarray(x, jnp.float32)), logits,
                               rtol=1e-5, atol=1e-6)
    # on the same model, the relevance agrees
    relevance = jaxlrp.explain(Net().apply, merged, jnp.asarray(x, jnp.float32),
                               target=jnp.asarray(relevance_out, jnp.float32),
                               composite=composites.EpsilonPlus())
    assert relative_l2(relevance, expected) < 8e-7  # measured 1.6e-7


@pytest.mark.parametrize("keepdims", [False, True])  # keepdims: sum -> broadcast -> div
def test_average_pool_stabilizer_is_applied_to_the_mean(keepdims):
    """``Norm`` on an average pool stabilizes the pooled mean on both sides:
    ``R_i = x_i m / (n (m + ε))``, not ``x_i m / (S + ε)`` with the window sum ``S``. The two
    differ by ``(n - 1) ε / S`` (relative); ε = 1 here makes it visible."""
    x = np.array([1.0, 2.0, 3.0, 4.0])
    n = x.size
    mean = x.mean()
    zennit_formula = x * mean / (n * (mean + 1.0))
    pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).double()
    expected, _ = _zennit(
        pool, zennit_composites.EpsilonPlus(stabilizer=1.0), x.reshape(1, 1, 4, 1),
        np.array([[mean]]),
    )
    np.testing.assert_allclose(expected.ravel(), zennit_formula, rtol=1e-12)

    def fn(v):
        out = jnp.mean(v, axis=(1, 2), keepdims=keepdims)
        return out.reshape(out.shape[0], -1)

    ours = jaxlrp.explain(fn, jnp.asarray(x.reshape(1, 1, 4, 1), jnp.float32), target=0,
                          composite=composites.EpsilonPlus(stabilizer=1.0))
    np.testing.assert_allclose(np.ravel(ours), zennit_formula, rtol=2e-7)  # measured 3.2e-8


def test_max_pool_ties_go_to_the_first_element_on_both_sides():
    """Max pooling is winner-take-all (the gradient) on both sides; a tie goes to the first
    element of the window (row-major) in PyTorch and in XLA alike."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.abs_()
        conv.bias.fill_(0.1)
    fc = torch.nn.Linear(2 * 2 * 2, 3)
    model = torch.nn.Sequential(
        conv, torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2), torch.nn.Flatten(), fc
    ).double().eval()
    pixels = np.random.default_rng(3).uniform(0, 1, size=(1, 2, 2, 3))
    x = np.repeat(np.repeat(pixels, 2, axis=1), 2, axis=2)  # every 2x2 window is a tie

    def fn(params, v):
        h = jax.nn.relu(jax.lax.conv_general_dilated(
            v, params[0], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        ) + params[1])
        h = nn.max_pool(h, (2, 2), (2, 2))
        h = jnp.transpose(h, (0, 3, 1, 2)).reshape(1, -1)  # torch's (C, H, W) flatten order
        return h @ params[2] + params[3]

    params = [_conv_kernel(conv), _vector(conv.bias), _vector(fc.weight).T, _vector(fc.bias)]
    logits = np.asarray(fn(params, jnp.asarray(x, jnp.float32)))
    relevance_out = logits * np.eye(3)[[int(logits.argmax())]]
    expected, _ = _zennit(model, zennit_composites.EpsilonPlus(), x, relevance_out)
    ours = jaxlrp.explain(fn, params, jnp.asarray(x, jnp.float32),
                          target=jnp.asarray(relevance_out, jnp.float32),
                          composite=composites.EpsilonPlus())
    winners = np.zeros((4, 4), bool)
    winners[::2, ::2] = True
    assert np.all(expected[0][~winners] == 0)
    assert np.all(np.asarray(ours)[0][~winners] == 0)
    assert relative_l2(ours, expected) < 4e-7  # measured 7.6e-8


def test_zbox_relevance_does_not_depend_on_the_bias():
    """In ZBox the bias enters the three forward passes as ``b``, ``b⁺`` and ``b⁻``, which cancel
    in the denominator ``z - z_low - z_high``: for a given output relevance the input relevance
    is independent of the bias, on both sides."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1).double()
    x = np.random.default_rng(4).uniform(-1, 1, size=(1, 4, 4, 3))
    relevance_out = np.random.default_rng(5).uniform(0, 1, size=(1, 2, 4, 4))
    results = []
    for bias in (0.0, 3.0, -3.0):
        with torch.no_grad():
            conv.bias.fill_(bias)
        model = torch.nn.Sequential(conv)
        zennit_rules = zennit_composites.EpsilonGammaBox(low=-1.0, high=1.0)
        expected, _ = _zennit(model, zennit_rules, x, relevance_out)

        def fn(params, v):
            return jax.lax.conv_general_dilated(
                v, params[0], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
            ) + params[1]

        params = [_conv_kernel(conv), _vector(conv.bias)]
        ours = jaxlrp.explain(fn, params, jnp.asarray(x, jnp.float32),
                              target=jnp.asarray(relevance_out.transpose(0, 2, 3, 1), jnp.float32),
                              composite=composites.EpsilonGammaBox(low=-1.0, high=1.0))
        assert relative_l2(ours, expected) < 4e-7  # measured 8.1e-8
        results.append(expected)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-10)
