"""The Vision Transformers: ``vit_b16`` and ``vit_tiny`` compute what torchvision's
``VisionTransformer`` computes from the same state dict, and jaxlrp finds the transformer's
nodes in them (one softmax and one attention product per block, two LayerNorms per block plus
the final one) with CP-LRP conserving the logit.

Tests that compare against torchvision skip when torch or torchvision is missing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites
from jaxlrp.models import ViT, ViTConfig, info, load
from jaxlrp.models.vit import VIT_B16, VIT_TINY, vit_torch_key

from .conftest import relative_l2

TINY = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
            num_classes=10)  # fmt: skip

# Measured: relative L2 error of the logits against torchvision (float32, every parameter
# random) 2.0e-7 for vit_tiny (4 images) and 7.0e-7 for vit_b16 (1 image), each about
# torchvision's own float32 error against its float64 forward (2.0e-7, 4.5e-7).
TINY_RTOL = 2e-6
B16_RTOL = 5e-6

# Measured: max |Σ R − logit| / max |logit| = 2.5e-5 with CP-LRP's default ε = 1e-6. The gap is
# the stabilizers' (it is the same in float64 and shrinks to 2.5e-9 with ε = 1e-10).
CONSERVATION_RTOL = 1e-4

VIT_B16_PARAMETERS = 86_567_656  # torchvision's vit_b_16, num_classes=1000


@pytest.fixture
def torchvision(torch):
    return pytest.importorskip("torchvision")


def _randomize(torch, model, seed=0):
    """Every parameter random, so that each conversion (biases, layer norms, the class token,
    the position embeddings, the head torchvision zeroes) is exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "token" not in name and "pos_embedding" not in name:
                std = p[0].numel() ** -0.5  # fan-in scaled kernels
            else:
                std = 0.5 if name.endswith("bias") else 0.1
            p.copy_(std * torch.randn(p.shape, generator=generator))
            if name.endswith((".ln_1.weight", ".ln_2.weight", "ln.weight")):
                p.add_(1.0)
    return model.eval()


def _state_dict(model) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def _compare(torch, name, model, shape, tolerance):
    module, variables = load(name, weights=_state_dict(model))
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    actual = np.asarray(jax.jit(module.apply)(variables, jnp.asarray(x)))
    assert actual.shape == expected.shape
    assert relative_l2(actual, expected) < tolerance


def test_vit_tiny_matches_torchvision_vision_transformer(torch, torchvision):
    model = torchvision.models.VisionTransformer(**TINY)
    _compare(torch, "vit_tiny", _randomize(torch, model), (4, 32, 32, 3), TINY_RTOL)


@pytest.mark.slow
def test_vit_b16_matches_torchvision_vit_b_16(torch, torchvision):
    """The full size: 14x14 patches of 16x16, 12 blocks of 12 heads (about 6 s on CPU)."""
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None)
    _compare(torch, "vit_b16", _randomize(torch, model), (1, 224, 224, 3), B16_RTOL)


def test_vit_b16_has_torchvision_keys_shapes_and_parameter_count(torch, torchvision):
    """Built on the meta device (no memory, no init): the same keys with the same shapes."""
    with torch.device("meta"):
        reference = torchvision.models.vit_b_16(weights=None).state_dict()
    module = info("vit_b16").build(1000)
    template = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    ours = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(template["params"])[0]:
        names = tuple(k.key for k in path)
        shape = tuple(leaf.shape)
        if names[-1] == "kernel":  # HWIO → OIHW, (in, out) → (out, in)
            shape = (*shape[-1:], *shape[-2:-1], *shape[:-2]) if len(shape) == 4 else shape[::-1]
        ours[vit_torch_key(names)] = shape
    assert ours == {key: tuple(value.shape) for key, value in reference.items()}
    assert sum(np.prod(s) for s in ours.values()) == VIT_B16_PARAMETERS


def test_vit_b16_has_the_parameter_count_and_gives_logits():
    """Shapes only (``jax.eval_shape``): no weights are drawn and nothing is compiled."""
    module = info("vit_b16").build(1000)
    assert isinstance(module, ViT) and module.config == VIT_B16
    images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    template = jax.eval_shape(module.init, jax.random.PRNGKey(0), images)
    leaves = jax.tree_util.tree_leaves(template)
    assert sum(leaf.size for leaf in leaves) == VIT_B16_PARAMETERS
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    out = jax.eval_shape(module.apply, template, images)
    assert out.shape == (2, 1000) and out.dtype == jnp.float32


def test_vit_tiny_shapes_dtypes_and_seeded_random_weights():
    module, variables = load("vit_tiny")
    assert module.config == ViTConfig(**TINY) == VIT_TINY
    assert info("vit_tiny").input_shape == (32, 32, 3) and info("vit-tiny").num_classes == 10
    params = variables["params"]
    assert params["class_token"].shape == (1, 1, 64)
    assert params["conv_proj"]["kernel"].shape == (8, 8, 3, 64)
    assert params["encoder"]["pos_embedding"].shape == (1, 17, 64)
    block = params["encoder"]["layers"]["encoder_layer_1"]
    assert block["self_attention"]["in_proj"]["kernel"].shape == (64, 192)
    assert block["mlp_0"]["kernel"].shape == (64, 128) and block["mlp_3"]["bias"].shape == (64,)
    assert "encoder_layer_2" not in params["encoder"]["layers"]
    logits = jax.jit(module.apply)(variables, jnp.ones((3, 32, 32, 3), jnp.float32))
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert np.isfinite(logits).all() and np.ptp(np.asarray(logits)) > 0
    _, same = load("vit_tiny", weights="random")
    _, other = load("vit_tiny", seed=1)
    leaves = jax.tree_util.tree_leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(variables), leaves(same), strict=True))
    assert not np.array_equal(params["heads"]["head"]["kernel"],
                              other["params"]["heads"]["head"]["kernel"])  # fmt: skip
    five, fewer = load("vit_tiny", num_classes=5)
    assert fewer["params"]["heads"]["head"]["kernel"].shape == (64, 5)
    assert jax.eval_shape(five.apply, fewer, jnp.zeros((1, 32, 32, 3))).shape == (1, 5)


def test_vit_rejects_images_of_another_size():
    module, variables = load("vit_tiny")
    with pytest.raises(ValueError, match=r"expects \(batch, 32, 32, C\) images, got \(1, 64, 64"):
        jax.eval_shape(module.apply, variables, jnp.zeros((1, 64, 64, 3)))


def test_a_torch_save_file_loads_like_the_state_dict(torch, torchvision, tmp_path):
    model = _randomize(torch, torchvision.models.VisionTransformer(**TINY), seed=1)
    path = tmp_path / "vit_tiny.pt"
    torch.save(model.state_dict(), path)
    _, from_file = load("vit_tiny", weights=path)
    _, from_dict = load("vit_tiny", weights=_state_dict(model))
    leaves = jax.tree_util.tree_leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(from_file), leaves(from_dict),
                                                    strict=True))  # fmt: skip


def test_conversion_names_missing_unexpected_and_misshapen_keys():
    module, variables = load("vit_tiny")
    state = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
        names = tuple(k.key for k in path)
        array = np.asarray(leaf)
        if names[-1] == "kernel":
            array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
        state[vit_torch_key(names)] = array
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in state
    assert "encoder.layers.encoder_layer_1.mlp.3.bias" in state
    _, again = load("vit_tiny", weights=state)
    leaves = jax.tree_util.tree_leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(variables), leaves(again), strict=True))
    broken = dict(state)
    del broken["class_token"]
    broken["encoder.layers.encoder_layer_2.ln_1.weight"] = np.ones(64, np.float32)
    with pytest.raises(ValueError, match=r"missing keys \['class_token'\], unexpected keys "
                       r"\['encoder\.layers\.encoder_layer_2\.ln_1\.weight'\]"):  # fmt: skip
        load("vit_tiny", weights=broken)
    broken = dict(state, **{"heads.head.weight": np.zeros((10, 32), np.float32)})
    with pytest.raises(ValueError, match=r"'heads\.head\.weight' has shape \(10, 32\), the model "
                       r"expects \(10, 64\)"):  # fmt: skip
        load("vit_tiny", weights=broken)


@pytest.fixture(scope="module")
def tiny():
    """vit_tiny, two images and one CP-LRP instance (``explain`` compiles once per composite
    object and reuses that for the same shapes)."""
    module, variables = load("vit_tiny", seed=0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    return module, variables, x, composites.CPLRP()


def test_rule_table_finds_softmax_attention_and_norm_nodes(tiny):
    module, variables, x, cplrp = tiny
    table = jaxlrp.rule_table(module.apply, variables, x, composite=cplrp)
    # 2 blocks: one softmax and one A·v each; 5 LayerNorms (ln_1, ln_2 per block, encoder.ln).
    assert "2 softmax node(s): TaylorAtInput()" in table
    assert "2 attention node(s): SignalTakesAll()" in table
    assert "5 norm node(s): SignalTakesAll()" in table
    assert "conv_proj (first)" in table and "heads/head (last)" in table
    dense = [line for line in table.splitlines() if " dense +add " in line]
    assert len(dense) == 2 * 4 + 1  # in_proj, out_proj, mlp_0, mlp_3 per block; the head


def test_cplrp_relevance_is_finite_and_has_the_image_shape(tiny):
    module, variables, x, cplrp = tiny
    relevance = jaxlrp.explain(module.apply, variables, x, target=3, composite=cplrp)
    assert relevance.shape == x.shape and relevance.dtype == jnp.float32
    assert np.all(np.isfinite(relevance)) and np.abs(np.asarray(relevance)).max() > 0


def test_cplrp_conserves_the_logit_without_biases(tiny):
    """Biases, the class token and the position embeddings are additive constants that absorb
    relevance by design; with them set to zero Σ R equals the target logit."""
    module, variables, x, cplrp = tiny

    def zero_constants(path, value):
        name = jax.tree_util.keystr(path)
        constant = any(part in name for part in ("bias", "class_token", "pos_embedding"))
        return jnp.zeros_like(value) if constant else value

    unbiased = jax.tree_util.tree_map_with_path(zero_constants, variables)
    relevance = jaxlrp.explain(module.apply, unbiased, x, target=3, composite=cplrp)
    logit = np.asarray(jax.jit(module.apply)(unbiased, x)[:, 3])
    totals = np.asarray(relevance).reshape(len(x), -1).sum(1)
    assert np.abs(totals - logit).max() / np.abs(logit).max() < CONSERVATION_RTOL, (totals, logit)
