"""jaxlrp against LXT 2.1 on the pretrained Gemma 3 270M: a script (minutes), not a test.

    python tests/parity/compare_lxt_gemma_pretrained.py [--prompts "The capital of France is" ...]

For each prompt, the top next token is explained from the scaled input embeddings (see
``lxt_gemma_harness.py``) with jaxlrp's LXT-matching composites, ``AttnLRP()`` and ``CPLRP()``
(float32), then with LXT's Gemma 3 maps in a child process on the same weights (jaxlrp's
model is freed first: one Gemma in memory at a time). Prints the per-token relevance of each
and the agreement (per-token max error / max |LXT|, rel. L2, Σ R); exits 1 if an
LXT-matching composite is further than ``--tolerance`` (per token, relative) from LXT.

Measured (float32, CPU; "The capital of France is" → " the", "def fibonacci(n):" → "\\n",
"Zürich, 東京 and 2024 —" → " The"), per-token max error / max |LXT|: LXT-matching AttnLRP
3.1e-6, 6.2e-7, 6.0e-6; CP-LRP with the GeGLU gate detached 3.7e-7, 2.2e-7, 3.9e-7;
``AttnLRP()`` defaults 6.4e-4, 5.6e-4, 6.2e-4; ``CPLRP()`` 8.0e-2, 1.1e-1, 1.3e-1 (its uniform
GeGLU rule). Needs the ``llm`` and ``parity`` extras (skips with a message otherwise).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lxt_gemma_harness as harness  # noqa: E402

PROMPTS = ("The capital of France is", "def fibonacci(n):", "Zürich, 東京 and 2024 —")


def _row(tokens: list[str], relevance: np.ndarray) -> str:
    return "  ".join(f"{t!r}:{r:+.3f}" for t, r in zip(tokens, relevance, strict=True))


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; 0 if the LXT-matching composites agree, 1 if not, 2 if skipped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=list(PROMPTS))
    parser.add_argument("--tolerance", type=float, default=3e-5)
    args = parser.parse_args(argv)
    try:
        import lxt.efficient.models.gemma3  # noqa: F401
        import torch  # noqa: F401

        from jaxlrp import composites
        from jaxlrp.models import info, load

        module, variables = load("gemma3-270m", weights="pretrained")
        tokenizer = info("gemma3-270m").tokenizer
    except ImportError as err:
        print(f"skipped: {err} (install the 'llm' and 'parity' extras)")
        return 2
    methods = {
        "AttnLRP-as-LXT": ("attnlrp", harness.lxt_matching_composite("attnlrp")),
        "CPLRP-as-LXT": ("cp", harness.lxt_matching_composite("cp")),
        "AttnLRP()": ("attnlrp", composites.AttnLRP()),
        "CPLRP()": ("cp", composites.CPLRP()),
    }
    ours = {}
    for prompt in args.prompts:
        ids = np.asarray([tokenizer.encode(prompt)], np.int32)
        *_, logits = harness.jaxlrp_relevance(module, variables, ids, 0, methods["AttnLRP()"][1])
        target = int(logits.argmax())
        results = {name: harness.jaxlrp_relevance(module, variables, ids, target, composite)
                   for name, (_, composite) in methods.items()}  # fmt: skip
        embeds = next(iter(results.values()))[1]
        ours[prompt] = ids, target, embeds, logits, {k: v[0] for k, v in results.items()}
    state, kwargs = harness.hf_state_dict(variables), harness.hf_config_kwargs(module.config)
    del module, variables
    gc.collect()
    failed = False
    for prompt, (ids, target, embeds, logits, relevance) in ours.items():
        tokens = [tokenizer.decode([int(i)]) for i in ids[0]]
        print(f"\n{prompt!r} → {tokenizer.decode([target])!r} (logit {logits[0, target]:.4f})")
        lxt = {variant: harness.lxt_relevance(variant, kwargs, state, embeds.astype(np.float64),
                                              target, dtypes=("float32",))
               for variant in harness.VARIANTS}  # fmt: skip
        for variant in harness.VARIANTS:
            expected = lxt[variant]["R_float32"]
            error = np.abs(lxt[variant]["logits_float32"] - logits).max()
            print(f"  LXT {variant:8s} {_row(tokens, expected[0].sum(-1))}  (logits ±{error:.1e})")
        for name, (variant, _) in methods.items():
            measured = harness.agreement(relevance[name], lxt[variant]["R_float32"])
            print(f"  {name:15s}{_row(tokens, relevance[name][0].sum(-1))}")
            print(f"  {'':15s}vs LXT {variant}: per token {measured['token_max_rel']:.1e}, "
                  f"rel L2 {measured['rel_l2']:.1e}, Σ R {measured['sum_rel']:.1e}")  # fmt: skip
            if name.endswith("as-LXT") and measured["token_max_rel"] > args.tolerance:
                failed = True
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
