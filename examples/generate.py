"""Write the example datasets: a labeled training set, its eval set, and an unlabeled variant.

    python examples/generate.py [OUT_DIR] [--train N] [--eval N] [--seed S] [--rationales]

Produces OUT_DIR/news.jsonl, OUT_DIR/news.eval.jsonl and OUT_DIR/news-unlabeled.jsonl, named
by the bucket conventions so they can be dropped under datasets/ as they are (the unlabeled set,
on the gemini backend, is labeled by the teacher with rationales before tuning). With
``--rationales`` it also writes OUT_DIR/rationales/news.jsonl and rumours.jsonl: labeled
examples that carry a ``rationale`` (the data a local teacher that explains is trained on, see
``distillery.local.teachers``; not for datasets/, whose lines have no such field).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distillery.local.example_data import generate, generate_rumours, write_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="examples/data", type=Path)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--eval", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rationales", action="store_true", help="also write rationales/")
    args = parser.parse_args()
    train, evaluation = generate(args.train, args.eval, seed=args.seed)
    unlabeled, _ = generate(args.train, args.eval, seed=args.seed, labeled=False)
    outputs = [
        ("news.jsonl", train),
        ("news.eval.jsonl", evaluation),
        ("news-unlabeled.jsonl", unlabeled),
    ]
    if args.rationales:
        explained, _ = generate(args.train, args.eval, seed=args.seed, rationales=True)
        rumours, _ = generate_rumours(args.train, args.eval, seed=args.seed, rationales=True)
        outputs += [("rationales/news.jsonl", explained), ("rationales/rumours.jsonl", rumours)]
    for name, examples in outputs:
        path = write_jsonl(args.out_dir / name, examples)
        print(f"wrote {len(examples):>5} examples to {path}")


if __name__ == "__main__":
    main()
