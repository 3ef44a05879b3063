"""Former single-model benchmark, now ``python -m benchmarks.run`` (kept for old command lines).

``python benchmarks/bench_explain.py --model vgg16 --batch 1 --size 224 [--repeats K]
[--composites a b] [--json FILE]`` runs ``python -m benchmarks.run --models vgg16 …`` with the
image composites (see :mod:`benchmarks.run`).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--composites", nargs="*", default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    argv = ["--models", args.model, "--batch", str(args.batch), "--size", str(args.size),
            "--repeats", str(args.repeats)]  # fmt: skip
    if args.composites:
        argv += ["--composites", ",".join(args.composites)]
    if args.json:
        argv += ["--json", args.json]
    run.main(argv)


if __name__ == "__main__":
    main()
