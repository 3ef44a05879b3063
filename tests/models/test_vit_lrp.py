"""CP-LRP and AttnLRP on the Vision Transformer, block by block: where relevance is conserved
and where it is absorbed.

The relevance a block receives from above is the relevance at its output, ``R_out(k)``; what it
passes on is the relevance at its input, ``R_in(k)``. Every LRP rule is linear in the relevance
it receives (the forward pass fixes the ratios), so ``R_in(k)`` is the explanation of block
``k`` alone with ``R_out(k)`` as its output relevance (a float ``target``): starting from the
head (``encoder.ln`` and ``heads.head`` on the last block's output) and chaining down gives the
relevance at every block boundary of the whole network's explanation, and one compiled
explainer serves every block (they have the same shapes). ``test_chaining_blocks_equals_
explaining_from_the_block_upward`` checks that the chain is the explanation of the network
from block ``k``'s input upward.

Numbers are per example, relative to the batch's largest ``|Σ R_out(k)|``; measured in float32
on CPU with the composites' default ε = 1e-6 (see each test).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules
from jaxlrp.models import load
from jaxlrp.models.vit import ViT, ViTEncoderBlock

TARGET = 3


def _zero_biases(variables):
    """Every ``bias`` leaf zero (the class token and position embeddings stay: they enter
    before the first block; zeroing them would make the class token's row of block 0 exactly 0,
    where no rule can pass relevance through ``q·kᵀ``)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.zeros_like(v) if "bias" in jax.tree_util.keystr(p) else v, variables
    )


def _random_biases(variables, seed=1):
    """Every ``bias`` leaf N(0, 0.1²) (``random_vit_variables`` draws them zero)."""
    rng = np.random.default_rng(seed)

    def draw(path, value):
        if "bias" not in jax.tree_util.keystr(path):
            return value
        return jnp.asarray(0.1 * rng.standard_normal(value.shape), value.dtype)

    return jax.tree_util.tree_map_with_path(draw, variables)


def _block_fn(config):
    block = ViTEncoderBlock(config)
    return lambda params, h: block.apply({"params": params}, h)


def _head_fn(config):
    """``encoder.ln`` and ``heads.head`` on the class token."""

    def fn(params, h):
        h = nn.LayerNorm(epsilon=config.layer_norm_eps).apply({"params": params["encoder"]["ln"]},
                                                               h)  # fmt: skip
        return nn.Dense(config.num_classes).apply({"params": params["heads"]["head"]}, h[:, 0])

    return fn


@functools.cache
def _compiled(config, composite=None):
    """Jitted functions shared by every ``Blocks`` of one configuration: the hidden states
    entering every block and the logits, the last block's output; per composite, the head's and
    one block's explanation (every block has the same shapes: one compilation)."""
    block_fn, head_fn = _block_fn(config), _head_fn(config)
    if composite is None:
        module = ViT(config)

        def states(params, images):
            inputs = []

            def record(next_fun, args, kwargs, context):
                if isinstance(context.module, ViTEncoderBlock) and \
                        context.method_name == "__call__":  # fmt: skip
                    inputs.append(args[0])
                return next_fun(*args, **kwargs)

            with nn.intercept_methods(record):
                logits = module.apply({"params": params}, images)
            return inputs, logits

        return jax.jit(states), jax.jit(block_fn)
    head = jax.jit(lambda p, h: jaxlrp.explain(head_fn, p, h, target=TARGET,
                                               composite=composite, argnums=1))
    block = jax.jit(lambda p, h, r: jaxlrp.explain(block_fn, p, h, target=r,
                                                   composite=composite, argnums=1))
    return head, block  # fmt: skip


class Blocks:
    """A ViT cut at its block boundaries: the hidden states entering every block, the head on
    the last block's output, and the per-block explanations."""

    def __init__(self, module, variables, images):
        self.config = config = module.config
        self.params = variables["params"]
        self.block_fn, self.head_fn = _block_fn(config), _head_fn(config)
        self.layers = [self.params["encoder"]["layers"][f"encoder_layer_{k}"]
                       for k in range(config.num_layers)]  # fmt: skip
        states, block = _compiled(config)
        self.inputs, self.logits = states(self.params, images)
        self.output = block(self.layers[-1], self.inputs[-1])

    def upward_fn(self, k):
        """The network from block ``k``'s input to the logits."""

        def fn(params, h):
            for layer in self.layers[k:]:
                h = self.block_fn(layer, h)
            return self.head_fn(params, h)

        return fn

    def boundaries(self, composite):
        """``R`` at every block boundary, top down: ``[R_out(L-1), R_in(L-1) = R_out(L-2), …,
        R_in(0)]`` (``L + 1`` arrays of the hidden states' shape)."""
        head, block = _compiled(self.config, composite)
        relevance = [head(self.params, self.output)]
        for k in reversed(range(self.config.num_layers)):
            relevance.append(block(self.layers[k], self.inputs[k], relevance[-1]))
        return relevance

    def sums(self, composite):
        """``Σ R`` per example at every boundary, top down, float64 ``(L + 1, batch)``."""
        return np.stack([np.asarray(r, np.float64).reshape(r.shape[0], -1).sum(1)
                         for r in self.boundaries(composite)])  # fmt: skip


def absorbed_fractions(sums):
    """Per block (bottom up, ``(L, batch)``): ``(Σ R_out(k) − Σ R_in(k)) / max |Σ R_out(k)|``,
    the maximum over the batch (an example whose logit is near 0 would otherwise magnify the
    ε-sized absolute gap)."""
    out, into = sums[:-1][::-1], sums[1:][::-1]
    return (out - into) / np.abs(out).max(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tiny():
    """vit_tiny (2 blocks, random weights), biases zero, two images."""
    module, variables = load("vit_tiny", seed=0)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    return module, variables, images, Blocks(module, _zero_biases(variables), images)


# Measured (vit_tiny, zero biases, float32): largest |absorbed fraction| of a block 1.2e-5 with
# CP-LRP, 1.1e-5 in float64 and 9e-8 with ε = stabilizer = 1e-10 (the gap is the stabilizers',
# not rounding); ViT-B/16: 5.1e-6. AttnLRP with softmax=Pass: 4.7e-5.
CONSERVATION_RTOL = 1e-4
PASS_RTOL = 2e-4


def test_chaining_blocks_equals_explaining_from_the_block_upward(tiny):
    """The relevance at block 0's input from the chain (head, block 1, block 0) equals
    ``explain`` of the network from block 0's input upward (measured: bit for bit the same
    in float32; the assertion allows 1e-6 of max |R| for other XLA fusions)."""
    _, _, _, blocks = tiny
    cp = composites.CPLRP()
    chained = blocks.boundaries(cp)[-1]
    direct = jax.jit(lambda p, h: jaxlrp.explain(blocks.upward_fn(0), p, h, target=TARGET,
                                                 composite=cp, argnums=1))  # fmt: skip
    direct = np.asarray(direct(blocks.params, blocks.inputs[0]))
    scale = np.abs(direct).max()
    np.testing.assert_allclose(chained, direct, rtol=0, atol=1e-6 * scale)


def test_cplrp_conserves_relevance_in_every_block_without_biases(tiny):
    """Σ R_in(k) = Σ R_out(k) for both blocks; the head passes on the logit (``encoder.ln`` and
    the head have zero biases too)."""
    _, _, _, blocks = tiny
    sums = blocks.sums(composites.CPLRP())
    logit = np.asarray(blocks.logits, np.float64)[:, TARGET]
    assert np.abs(sums[0] - logit).max() < CONSERVATION_RTOL * np.abs(logit).max()
    assert np.abs(absorbed_fractions(sums)).max() < CONSERVATION_RTOL, sums


def test_cplrp_with_biases_absorbs_exactly_at_the_biased_layers(tiny):
    """With random biases N(0, 0.1²) the blocks are not conservative: measured absorbed
    fraction (image 0 / image 1) −0.121 / −0.185 in block 0 and +0.097 / +0.047 in block 1 (the
    sign is that of ``Σ R_out − Σ R_in``: biases absorb or inject). The ledger puts all of it on
    the layers that carry a bias (``in_proj``, ``out_proj``, ``mlp_0``, ``mlp_3``, the
    LayerNorms' shifts); every other node (norms, sums, the attention product, GELU) conserves
    to ε."""
    module, variables, images, _ = tiny
    biased = Blocks(module, _random_biases(_zero_biases(variables)), images)
    cp = composites.CPLRP()
    fractions = absorbed_fractions(biased.sums(cp))
    assert np.abs(fractions).min() > 0.01, fractions  # biases absorb percents, not ε
    relevance = biased.boundaries(cp)[::-1]  # R_in(0), R_in(1), R_out(1)
    for k in range(biased.config.num_layers):
        book = jaxlrp.ledger(biased.block_fn, biased.layers[k], biased.inputs[k],
                             target=relevance[k + 1], composite=cp, argnums=1)  # fmt: skip
        scale = abs(book.output_relevance)
        layers = sum(e.absorbed for e in book.entries if e.kind.startswith("layer/"))
        nodes = [e for e in book.entries if not e.kind.startswith("layer/")]
        gap = book.output_relevance - book.input_relevance
        assert abs(gap - layers) < CONSERVATION_RTOL * scale, (gap, layers)
        assert max(abs(e.absorbed) for e in nodes) < CONSERVATION_RTOL * scale
        np.testing.assert_allclose(book.input_relevance, float(relevance[k].sum()), rtol=1e-5)


def test_attnlrp_loses_relevance_only_at_the_softmax(tiny):
    """AttnLRP's softmax rule ``R_x = x ⊙ (R − s Σ R)`` is not conservative (Achtibat et al.
    2024, by design): with zero biases the block's whole gap is the softmax node's, and every
    other node of the block conserves to ε (ledger). Measured absorbed fractions (image 0 /
    image 1): −0.081 / +0.177 in block 0, −0.154 / −0.052 in block 1; summed over the batch,
    block 1 receives −2.306 and passes on −1.813: a gap of −0.49345, the softmax node's
    −0.49344 (the rest is the other nodes' ε)."""
    _, _, _, blocks = tiny
    attn = composites.AttnLRP()
    relevance = blocks.boundaries(attn)[::-1]
    fractions = absorbed_fractions(blocks.sums(attn))
    assert np.abs(fractions).max() > 0.05, fractions  # the softmax's share is not ε-sized
    for k in range(blocks.config.num_layers):
        book = jaxlrp.ledger(blocks.block_fn, blocks.layers[k], blocks.inputs[k],
                             target=relevance[k + 1], composite=attn, argnums=1)  # fmt: skip
        scale = abs(book.output_relevance)
        softmax = [e for e in book.entries if e.kind == "softmax"]
        others = [e for e in book.entries if e.kind != "softmax"]
        assert len(softmax) == 1 and softmax[0].rule == "TaylorAtInput()"
        gap = book.output_relevance - book.input_relevance
        assert abs(gap - softmax[0].absorbed) < CONSERVATION_RTOL * scale, (gap, softmax)
        assert max(abs(e.absorbed) for e in others) < CONSERVATION_RTOL * scale
        assert abs(softmax[0].absorbed) > 0.05 * scale


def test_attnlrp_with_a_conservative_softmax_conserves_every_block(tiny):
    """The same composite with ``softmax=Pass()`` (relevance passed through the softmax
    unchanged; q·kᵀ and A·v keep the uniform rule) conserves each block to ε: the softmax rule is
    the only non-conservative part of AttnLRP. Measured: largest fraction 4.7e-5."""
    _, _, _, blocks = tiny
    passing = dataclasses.replace(composites.AttnLRP(), softmax=rules.Pass())
    sums = blocks.sums(passing)
    assert np.abs(absorbed_fractions(sums)).max() < PASS_RTOL, sums


@pytest.mark.slow(reason="ViT-B/16 at 224×224, 12 blocks: about 10 s on two CPU cores")
def test_cplrp_conserves_every_block_of_vit_b16_without_biases():
    """ViT-B/16 with random weights (torchvision's layout), zero biases, one image: CP-LRP
    conserves each of the 12 blocks (measured: largest fraction 5.1e-6) while AttnLRP's softmax
    moves 2.6–19 % per block (measured: 0.026 to 0.19 in magnitude, both signs)."""
    module, variables = load("vit_b16", seed=0)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(1, 224, 224, 3)), jnp.float32)
    blocks = Blocks(module, _zero_biases(variables), images)
    sums = blocks.sums(composites.CPLRP())
    logit = np.asarray(blocks.logits, np.float64)[:, TARGET]
    assert np.abs(sums[0] - logit).max() < CONSERVATION_RTOL * np.abs(logit).max()
    assert np.abs(absorbed_fractions(sums)).max() < CONSERVATION_RTOL, sums
    attn = np.abs(absorbed_fractions(blocks.sums(composites.AttnLRP())))
    assert attn.max() > 0.05 and attn.min() > 1e-3, attn
