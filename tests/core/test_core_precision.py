"""Models in bfloat16 explain like the same models in float32 (issue 13, item 3).

The forward pass and the linear maps of a rule run in the model's precision; a rule's sums,
denominators and stabilizers in float32 (``jaxlrp.precision``). The patterns of the traced
program (softmax, norms, attention) are found through the casts a bfloat16 model adds (Flax's
LayerNorm and ``jax.nn.softmax`` sum in float32).

Measured (2 photos or random inputs, Pearson correlation of bf16 with float32 relevance, per
example): ViT (tiny, random weights) AttnLRP 0.9998/0.9999, CP-LRP 0.9998/1.0 — 0.11/0.49
before the softmax matcher looked through casts, the rules silently changed; EfficientNet-Lite0
(pretrained, two photos) EpsilonPlusFlat 0.9991/0.9993, EpsilonGammaBox 0.9966/0.9941; MNIST CNN
(pretrained) ≥ 0.997 under EpsilonPlusFlat/EpsilonGammaBox/EpsilonAlpha2Beta1.
"""

import io
from contextlib import redirect_stdout

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, models, rules
from jaxlrp.rules.base import LayerRule

BF16 = jnp.bfloat16


def to_bf16(tree):
    return jax.tree_util.tree_map(
        lambda v: v.astype(BF16) if jnp.issubdtype(v.dtype, jnp.floating) else v, tree
    )


def correlation(a, b) -> float:
    a, b = (np.asarray(jnp.asarray(v, jnp.float32), np.float64).ravel() for v in (a, b))
    return float(np.corrcoef(a, b)[0, 1])


def node_kinds(fn, *args, composite) -> list[tuple[str, str]]:
    """(kind, rule) of every node print_rules lists, without the structural ones."""
    out = io.StringIO()
    with redirect_stdout(out):
        jaxlrp.print_rules(fn, *args, composite=composite, nodes=True)
    rows = [line.split() for line in out.getvalue().splitlines()[1:]]
    return sorted((r[2], r[-1]) for r in rows
                  if len(r) > 3 and r[2] not in ("structural", "fold"))  # fmt: skip


def test_a_rule_computes_in_float32_for_a_bfloat16_model():
    seen = []

    class Recording(LayerRule):
        def __call__(self, ctx, relevance):
            seen.append((ctx.a.dtype, ctx.w.dtype, ctx.z.dtype, relevance.dtype))
            return rules.Epsilon(1e-6)(ctx, relevance)

    w = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), BF16)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5)), BF16)
    relevance = jaxlrp.explain(lambda w, x: x @ w, w, x, target=1,
                               composite=jaxlrp.Composite(default=Recording()))  # fmt: skip
    assert seen and all(dtype == jnp.float32 for dtype in seen[0])
    assert relevance.dtype == BF16  # the relevance has the input's dtype
    logit = (x.astype(jnp.float32) @ w.astype(jnp.float32))[:, 1]
    np.testing.assert_allclose(relevance.astype(jnp.float32).sum(1), logit, rtol=2e-2)


def test_a_stabilizer_below_bfloat16_resolution_still_acts():
    """``1 + ε`` with ε = 0.01 is 1.0078 in bfloat16 (resolution 2⁻⁷ above 1): the ε-rule's share
    ``z / (z + ε)`` is computed in float32 (0.990099, stored as the nearest bfloat16, 0.98828),
    not in bfloat16 (1 / 1.0078 = 0.99219)."""
    x = jnp.ones((1, 1), BF16)
    w = jnp.ones((1, 1), BF16)
    relevance = jaxlrp.explain(lambda w, x: x @ w, w, x, target=0,
                               composite=jaxlrp.Composite(default=rules.Epsilon(1e-2)))  # fmt: skip
    assert float(relevance[0, 0]) == float(jnp.asarray(1 / 1.01, BF16)) == 0.98828125


@pytest.fixture(scope="module")
def vit_tiny():
    module, variables = models.load("vit_tiny", weights="random")
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *models.info("vit_tiny").input_shape))
    return module, variables, x


def test_transformer_patterns_are_found_through_bfloat16_casts(vit_tiny):
    module, variables, x = vit_tiny
    f32 = node_kinds(module.apply, variables, x, composite=composites.AttnLRP())
    b16 = node_kinds(module.apply, to_bf16(variables), x.astype(BF16),
                     composite=composites.AttnLRP())  # fmt: skip
    assert ("softmax", "TaylorAtInput()") in b16
    assert b16 == f32


@pytest.mark.parametrize("composite", [composites.AttnLRP(), composites.CPLRP()],
                         ids=["attnlrp", "cplrp"])  # fmt: skip
def test_bfloat16_vit_relevance_correlates_with_float32(vit_tiny, composite):
    module, variables, x = vit_tiny
    target = jnp.argmax(module.apply(variables, x), -1)
    r32 = jaxlrp.explain(module.apply, variables, x, target=target, composite=composite)
    r16 = jaxlrp.explain(module.apply, to_bf16(variables), x.astype(BF16), target=target,
                         composite=composite)  # fmt: skip
    assert r16.dtype == BF16
    for i in range(2):
        assert correlation(r32[i], r16[i]) >= 0.999


def test_bfloat16_efficientnet_relevance_on_photos_correlates_with_float32():
    composite = composites.EpsilonGammaBox(low=-1.0, high=1.0)
    skimage = pytest.importorskip("skimage.data", reason="the photos come from scikit-image")
    try:
        module, variables = models.load("efficientnet_lite0", weights="pretrained")
    except ImportError as err:
        pytest.skip(str(err))
    info = models.info("efficientnet_lite0")
    x = jnp.asarray(info.preprocess(skimage.chelsea())).reshape(1, 224, 224, 3)
    target = jnp.argmax(module.apply(variables, x), -1)
    r32 = jaxlrp.explain(module.apply, variables, x, target=target, composite=composite)
    r16 = jaxlrp.explain(module.apply, to_bf16(variables), x.astype(BF16), target=target,
                         composite=composite)  # fmt: skip
    assert correlation(r32[0], r16[0]) >= 0.99


def test_flax_attention_in_bfloat16_keeps_its_softmax_and_attention_nodes():
    """Code we did not write: Flax's own attention layer computing in bfloat16."""
    import flax.linen as nn

    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8))
    kinds = {}
    for dtype in (jnp.float32, BF16):
        layer = nn.MultiHeadDotProductAttention(num_heads=2, dtype=dtype)
        variables = layer.init(jax.random.PRNGKey(1), x)

        def fn(v, x, layer=layer):
            return layer.apply(v, x).mean(1)

        kinds[dtype] = node_kinds(fn, to_bf16(variables) if dtype == BF16 else variables,
                                  x.astype(dtype), composite=composites.AttnLRP())  # fmt: skip
    assert ("softmax", "TaylorAtInput()") in kinds[BF16]
    assert ("attention", "UniformProduct()") in kinds[BF16]
    assert kinds[BF16] == kinds[jnp.float32]
