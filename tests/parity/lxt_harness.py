"""Shared code of the LXT parity test: explain all-MiniLM-L6-v2 with LXT's efficient AttnLRP
(PyTorch) and with jaxlrp on the same weights, and compare the relevance of the word embeddings.

The explained function is the same on both sides: word embeddings ``e`` (``(batch, seq, 384)``)
→ BERT (position and token-type embeddings, embedding LayerNorm, 6 post-LN blocks) → last
hidden states ``h`` → masked mean over the real tokens → dot product with a fixed probe ``p``::

    y = (Σ_t m_t h_t / Σ_t m_t) · p,        relevance R_e = e ⊙ ∂̃y/∂e   (LXT, Σ over features
                                                                        for a token's relevance)

LXT's side runs in a child process (``python tests/parity/lxt_harness.py IN OUT``):
``lxt.efficient.monkey_patch(modeling_bert)`` patches ``torch.nn.LayerNorm.forward`` and
``torch.nn.Dropout.forward`` for the whole process and swaps the classes of
``transformers.models.bert.modeling_bert``, which would leak into every other test that builds a
``BertModel`` or a ``LayerNorm``. The child needs only torch, transformers, lxt and safetensors.

LXT is BSD-3-Clause; nothing here is taken from its code, it is only called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

# The second sentence is shorter: the batch is padded and the attention mask matters.
SENTENCES = (
    "A man is eating a piece of bread.",
    "The quick brown fox.",
)
PROBE_SEED = 0


def probe_vector(hidden_size: int = 384, seed: int = PROBE_SEED) -> np.ndarray:
    """The fixed probe ``p`` (float64, unit-variance entries / √hidden): ``y = pooled · p``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(hidden_size) / np.sqrt(hidden_size)


def lxt_matching_composite() -> Any:
    """jaxlrp's composite that computes what LXT's efficient BERT patches compute.

    LXT's efficient mode is gradient × input with a modified gradient, so every operation it
    does not patch is LRP-0 *without* a stabilizer: ε = 0 on the linear layers (query, key,
    value, the dense layers, the LayerNorm scale/shift) and on the sums (residual adds, the
    embedding sum, the pooling), the plain softmax gradient (= ``TaylorAtInput``), ``1/σ``
    detached in LayerNorm (= the ``SignalTakesAll`` norm rule), the gradient halved at ``q·kᵀ``
    and ``A·v`` (= ``UniformProduct``), GELU's gradient replaced by ``GELU(x)/(x + 1e-10)``
    (= ``Pass``). That is ``AttnLRP(epsilon=0, stabilizer=0)`` with LRP-0 on the layers:
    ``Zero`` with a denominator clipped at 1e-30 instead of ``Epsilon(0)``, whose ``0/0`` is NaN
    where a layer's output is exactly zero (the padded positions of ``hidden * mask``, which
    jaxlrp folds into the last LayerNorm's affine layer).
    """
    import dataclasses

    from jaxlrp import composites, rules

    lrp0 = rules.Zero(stabilizer=1e-30)
    return dataclasses.replace(
        composites.AttnLRP(epsilon=0.0, stabilizer=0.0),
        default=lrp0, dense=lrp0, conv=lrp0, affine=lrp0, name="AttnLRP-as-LXT",
    )  # fmt: skip


def jaxlrp_relevance(
    module: Any, variables: Any, ids: Any, mask: Any, probe: Any, composite: Any
) -> tuple[np.ndarray, np.ndarray]:
    """jaxlrp's relevance of the word embeddings ``(batch, seq, hidden)`` and ``y`` ``(batch,)``.

    ``variables`` and ``probe`` are used in their own dtype (cast them for float64). The
    explanation is jitted (one XLA compilation; op by op it is several times slower here).
    """
    import jax
    import jax.numpy as jnp

    import jaxlrp
    from jaxlrp.models import mean_pool

    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    probe = jnp.asarray(probe)[:, None]

    def explained(variables, e):
        hidden = module.apply(variables, e, mask, method="from_embeddings")
        return mean_pool(hidden, mask) @ probe  # (batch, 1)

    @jax.jit
    def run(variables):
        embeds = module.apply(variables, ids, method="embed_tokens")
        relevance = jaxlrp.explain(explained, variables, embeds, target=0, composite=composite)
        return relevance, explained(variables, embeds)[:, 0]

    relevance, y = run(variables)
    return np.asarray(relevance), np.asarray(y)


def lxt_relevance(
    ids: np.ndarray,
    mask: np.ndarray,
    probe: np.ndarray,
    dtypes: tuple[str, ...] = ("float64", "float32"),
    attn_implementation: str = "eager",
    timeout: float = 120,
) -> dict[str, np.ndarray]:
    """LXT's relevance in a child process, for each of ``dtypes``.

    Returns ``{"R_<dtype>": (batch, seq, hidden), "y_<dtype>": (batch,)}``.

    Raises:
        RuntimeError: With the child's output if it fails.
    """
    from jaxlrp.models import minilm

    model_dir = minilm.minilm_dir()
    return run_child(__file__, timeout, ids=ids, mask=mask, probe=probe, dtypes=np.array(dtypes),
                     weights=str(model_dir / "model.safetensors"),
                     config=str(model_dir / "config.json"),
                     attn_implementation=attn_implementation)  # fmt: skip


def run_child(script: str, timeout: float, **arrays: Any) -> dict[str, np.ndarray]:
    """Run ``python script IN.npz OUT.npz`` on ``arrays`` and return what it wrote to OUT.

    Raises:
        RuntimeError: With the child's output if it fails.
    """
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(inputs, **arrays)
        # The child needs transformers' PyTorch classes, whatever backend switches this process has.
        env = {k: v for k, v in os.environ.items() if k not in ("USE_TORCH", "USE_TF", "USE_FLAX")}
        done = subprocess.run(
            [sys.executable, os.path.abspath(script), inputs, outputs],
            capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"LXT child process failed:\n{done.stdout}\n{done.stderr}")
        with np.load(outputs) as data:
            return {key: data[key] for key in data.files}


def agreement(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Per-token and per-feature agreement of embedding relevance ``actual`` with ``expected``
    (float64), for the BERT and Gemma comparisons.

    ``token_*`` compare the per-token relevance ``Σ_features R``: ``max_abs``, ``max_rel`` (max
    abs error / max |expected|) and Pearson ``corr``; ``rel_l2`` is
    ``‖actual − expected‖ / ‖expected‖`` over every entry; ``sum_rel`` compares ``Σ R``
    (abs error / |Σ expected|).
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    tokens, expected_tokens = actual.sum(-1).ravel(), expected.sum(-1).ravel()
    error = np.abs(tokens - expected_tokens).max()
    return {
        "token_max_abs": float(error),
        "token_max_rel": float(error / np.abs(expected_tokens).max()),
        "token_corr": float(np.corrcoef(tokens, expected_tokens)[0, 1]),
        "rel_l2": float(np.linalg.norm(actual - expected) / np.linalg.norm(expected)),
        "sum_rel": float(abs(actual.sum() - expected.sum()) / abs(expected.sum())),
    }


def _lxt_main(inputs: str, outputs: str) -> None:
    """The child process: patch ``modeling_bert`` with LXT, build ``BertModel``, explain."""
    import torch
    import transformers.models.bert.modeling_bert as modeling_bert
    from lxt.efficient import monkey_patch
    from safetensors.numpy import load_file

    monkey_patch(modeling_bert)  # before building the model: it replaces the module's classes
    with np.load(inputs) as data:
        args = {key: data[key] for key in data.files}
    config = json.loads(open(str(args["config"]), encoding="utf-8").read())
    config = modeling_bert.BertConfig(**config)
    config._attn_implementation = str(args["attn_implementation"])
    torch.manual_seed(0)
    model = modeling_bert.BertModel(config, add_pooling_layer=False).eval()
    weights = {
        key: torch.from_numpy(value)
        for key, value in load_file(str(args["weights"])).items()
        if not key.startswith(("pooler.", "embeddings.position_ids"))
    }
    model.load_state_dict(weights, strict=True)
    results = {}
    for dtype_name in args["dtypes"]:
        dtype = getattr(torch, str(dtype_name))
        model = model.to(dtype)
        ids = torch.from_numpy(args["ids"]).long()
        mask = torch.from_numpy(args["mask"]).to(dtype)
        probe = torch.from_numpy(args["probe"]).to(dtype)
        embeds = model.embeddings.word_embeddings(ids).detach().requires_grad_(True)
        hidden = model(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1e-9)
        y = pooled @ probe
        y.sum().backward()  # the examples are independent: one backward for the batch
        results[f"R_{dtype_name}"] = (embeds * embeds.grad).detach().numpy()
        results[f"y_{dtype_name}"] = y.detach().numpy()
    np.savez(outputs, **results)


if __name__ == "__main__":
    _lxt_main(sys.argv[1], sys.argv[2])
