"""``jaxlrp.explain_continuation``: every generated token of a causal LM explained in one call.

Checked on a tiny random Gemma 3 (no package needed): each row is the single-target
``jaxlrp.explain`` of that token, it is zero at and after the target's position and equals the
explanation computed on the prefix alone (causality), CP-LRP rows sum to their logits. The
pretrained Gemma 3 270M test needs the ``llm`` extra and skips without it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites
from jaxlrp.generation import ContinuationExplanation, explain_continuation, greedy_continuation
from jaxlrp.models import Gemma3Config, LanguageModelInfo, greedy_generate, info, load

TINY = Gemma3Config(
    vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
    sliding_window_pattern=2,
)  # fmt: skip
PROMPT = np.asarray([2, 5, 9, 11, 17], np.int32)


@functools.cache
def _tiny():
    return LanguageModelInfo("tiny", TINY).load(seed=0)


@functools.cache
def _explained(composite_name: str) -> ContinuationExplanation:
    module, variables = _tiny()
    composite = {"AttnLRP": composites.AttnLRP(), "CPLRP": composites.CPLRP()}[composite_name]
    return explain_continuation(module.apply, variables, PROMPT, steps=4, composite=composite,
                                decode=lambda i: f"<{i}>")  # fmt: skip


def _single(fn, variables, ids, target, composite):
    """``jaxlrp.explain`` of one target, compiled (the suite runs eager calls op by op)."""
    run = jax.jit(lambda v, x: jaxlrp.explain(fn, v, x, target=target, composite=composite))
    return np.asarray(run(variables, ids))[0]


def test_explanation_has_one_row_per_generated_token_over_the_whole_sequence():
    result = _explained("AttnLRP")
    assert result.prompt_length == 5 and result.generated.shape == (4,)
    assert result.token_ids.shape == (9,) and result.token_ids[:5].tolist() == PROMPT.tolist()
    assert result.relevance.shape == (4, 9) and result.relevance.dtype == np.float32
    assert result.logits.shape == (4,) and np.isfinite(result.relevance).all()
    assert result.tokens == tuple(f"<{i}>" for i in result.token_ids)
    np.testing.assert_array_equal(result.next_token, result.relevance[0, :5])


def test_greedy_continuation_is_the_argmax_continuation():
    module, variables = _tiny()
    ours = greedy_continuation(module.apply, variables, PROMPT, 4)
    np.testing.assert_array_equal(ours, greedy_generate(module, variables, PROMPT, 4, eos_id=None))
    np.testing.assert_array_equal(_explained("AttnLRP").generated, ours)


def test_each_row_equals_explain_of_that_single_target():
    module, variables = _tiny()
    result = _explained("AttnLRP")
    ids = jnp.asarray(result.token_ids[None])
    logits = np.asarray(module.apply(variables, ids))[0]
    for k in (0, 3):  # the first and the last generated token (each single one compiles)
        target = int(result.generated[k])
        position = 5 + k - 1

        def fn(v, x, position=position):
            return module.apply(v, x)[:, position]

        single = _single(fn, variables, ids, target, composites.AttnLRP())
        np.testing.assert_allclose(result.relevance[k], single, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(result.logits[k], logits[position, target], rtol=1e-5)


def test_rows_are_zero_from_the_target_on_and_equal_the_prefix_explanation():
    """Causality: the later tokens get no relevance, and removing them changes nothing."""
    module, variables = _tiny()
    result = _explained("AttnLRP")

    def last(v, x):
        return module.apply(v, x)[:, -1]

    for k, target in enumerate(result.generated.tolist()):
        end = 5 + k  # the target's position
        assert np.all(result.relevance[k, end:] == 0.0)
        if k not in (1, 3):
            continue  # two prefix lengths suffice (each compiles)
        prefix = jnp.asarray(result.token_ids[None, :end])
        single = _single(last, variables, prefix, target, composites.AttnLRP())
        np.testing.assert_allclose(result.relevance[k, :end], single, rtol=1e-5, atol=1e-5)


def test_cplrp_rows_sum_to_their_logits():
    result = _explained("CPLRP")
    # conservative up to the ε stabilizers (~0.2% with these small random weights)
    np.testing.assert_allclose(result.relevance.sum(-1), result.logits, rtol=1e-2)


def test_a_given_continuation_is_explained_as_given():
    module, variables = _tiny()
    result = explain_continuation(module.apply, variables, PROMPT, generated=[7, 3])
    assert result.generated.tolist() == [7, 3] and result.relevance.shape == (2, 7)
    assert result.tokens is None


def test_arguments_are_checked():
    module, variables = _tiny()
    with pytest.raises(ValueError, match="exactly one of steps"):
        explain_continuation(module.apply, variables, PROMPT)
    with pytest.raises(ValueError, match="exactly one of steps"):
        explain_continuation(module.apply, variables, PROMPT, 2, generated=[1])
    with pytest.raises(ValueError, match="at least 1"):
        explain_continuation(module.apply, variables, PROMPT, 0)
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        explain_continuation(module.apply, variables, [], generated=[1])
    with pytest.raises(ValueError, match="continuation is empty"):
        explain_continuation(module.apply, variables, PROMPT, generated=[])


@pytest.mark.slow  # ~60-90 s on 2 CPU cores: loads the 270M model and compiles its LRP
def test_gemma3_270m_continuation_of_the_capital_of_france():
    for name in ("gguf", "safetensors", "tokenizers"):
        pytest.importorskip(name, reason=f"the pretrained Gemma 3 needs {name} (the llm extra)")
    try:
        tokenizer = info("gemma3-270m").tokenizer
        module, variables = load("gemma3-270m", weights="pretrained")
    except ImportError as err:
        pytest.skip(str(err))
    ids = tokenizer.encode("The capital of France is")
    result = explain_continuation(
        module.apply, variables, ids, steps=4, eos_id=tokenizer.eos_id,
        decode=lambda i: tokenizer.decode([i], skip_special_tokens=False),
    )  # fmt: skip
    # transformers' greedy continuation: " the capital of the"
    assert result.generated.tolist() == [506, 5279, 529, 506]
    assert result.relevance.shape == (4, 10) and np.isfinite(result.relevance).all()
    for k in range(4):  # causal: nothing at or after the target's position
        assert np.all(result.relevance[k, result.prompt_length + k :] == 0.0)
    # as tests/models/test_gemma3.py measured: AttnLRP explains " the" mostly by " is"
    assert result.tokens[int(np.argmax(result.next_token))] == " is"
    assert (result.relevance.sum(-1) > 0).all()
