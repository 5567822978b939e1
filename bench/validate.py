"""Benchmark the dataset validator against plain ``json.loads`` over the same file.

Generates a deterministic labeled dataset near the service's limits (10,000 examples, ~300 MB,
inputs close to 7,168 estimated tokens with instruction markers, outputs close to 1,024), then in
one run measures:

1. the baseline: reading the file line by line and ``json.loads`` on each line;
2. ``validate_jsonl`` over the same file;
3. the validator's peak RSS, in a fresh child process that only imports and validates.

Targets: validator throughput at least 0.5x the baseline, peak RSS under 200 MB.
Usage: ``python bench/validate.py [--examples N] [--size-mb M] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

THROUGHPUT_TARGET = 0.5
RSS_TARGET_MB = 200.0
SEED = 20240607

_VOCABULARY = (
    "market revenue growth quarter analyst forecast company shares investor report "
    "customer product launch service cloud model data training network energy policy "
    "government city river mountain history museum season team player coach match result "
    "score café naïve über résumé study research patient treatment climate rainfall "
    "harvest supply demand price engineer software release feature update security "
    "incident response review decision"
)
_WORDS = tuple(_VOCABULARY.split())


def _sentences(rng: random.Random, count: int) -> list[str]:
    """A pool of varied sentences to assemble texts from (fast to sample)."""
    pool = []
    for _ in range(count):
        words = rng.choices(_WORDS, k=rng.randint(8, 22))
        pool.append(" ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!")))
    return pool


def _text(rng: random.Random, pool: list[str], chars: int) -> str:
    """About ``chars`` characters of prose in paragraphs."""
    parts: list[str] = []
    size = 0
    while size < chars:
        sentence = rng.choice(pool)
        parts.append(sentence)
        size += len(sentence) + 1
        if rng.random() < 0.08:
            parts.append("\n\n")
    return " ".join(parts)[:chars]


def generate(path: Path, examples: int, size_mb: float) -> None:
    """Write the benchmark dataset to ``path`` (deterministic for a given size)."""
    rng = random.Random(SEED)
    pool = _sentences(rng, 4000)
    per_example = size_mb * 1_000_000 / examples
    # About 88 % input and 12 % output, as in summarization data near both token limits.
    output_chars = max(20, min(4_000, int(per_example * 0.12)))
    input_chars = max(40, int(per_example) - output_chars - 120)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for _ in range(examples):
            title = _text(rng, pool, 80)
            jitter = rng.randint(-input_chars // 20, input_chars // 50)
            article = _text(rng, pool, input_chars + jitter)
            prompt = f"Summarize the following article.\n\nTitle: {title}\n\nArticle: {article}"
            answer = _text(rng, pool, output_chars + rng.randint(-output_chars // 10, 0))
            record = {"input_text": prompt, "output_text": answer}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def baseline(path: Path) -> int:
    """Plain line-by-line ``json.loads``; returns the number of lines parsed."""
    count = 0
    with path.open("rb") as stream:
        for line in stream:
            json.loads(line)
            count += 1
    return count


def validate(path: Path) -> int:
    """``validate_jsonl`` over the file; returns the number of examples."""
    from distillery.validation import DatasetKind, validate_jsonl

    with path.open("rb") as stream:
        result = validate_jsonl(stream, kind=DatasetKind.TRAINING, source=str(path))
    return result.report.examples


def best_time(run: Callable[[Path], int], path: Path, repeat: int) -> tuple[float, int]:
    """The fastest of ``repeat`` runs (seconds) and what the run returned."""
    best = float("inf")
    result = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = run(path)
        best = min(best, time.perf_counter() - started)
    return best, result


def child_peak_rss_mb(path: Path) -> tuple[float, float]:
    """Peak RSS (MB) of a fresh process that imports the validator, before and after validating."""
    completed = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    before, after = completed.stdout.split()
    return float(before), float(after)


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(path: Path) -> None:
    import distillery.validation  # noqa: F401  (count the imports in "before")

    before = _rss_mb()
    validate(path)
    print(f"{before:.1f} {_rss_mb():.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples to generate")
    parser.add_argument("--size-mb", type=float, default=300.0, help="approximate file size")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs each; the best counts")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child)
        return 0

    with tempfile.TemporaryDirectory(prefix="distillery-bench-") as folder:
        path = Path(folder) / "bench.jsonl"
        started = time.perf_counter()
        generate(path, args.examples, args.size_mb)
        size = path.stat().st_size
        print(
            f"dataset: {args.examples:,} examples, {size / 1e6:,.1f} MB "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )
        base_seconds, lines = best_time(baseline, path, args.repeat)
        validator_seconds, examples = best_time(validate, path, args.repeat)
        rss_before, rss_after = child_peak_rss_mb(path)

    megabytes = size / 1e6
    rows = [
        ("json.loads baseline", base_seconds, lines),
        ("validate_jsonl", validator_seconds, examples),
    ]
    print(f"{'':22}{'seconds':>10}{'MB/s':>10}{'examples/s':>13}")
    for name, seconds, count in rows:
        print(f"{name:22}{seconds:>10.2f}{megabytes / seconds:>10.1f}{count / seconds:>13,.0f}")
    ratio = base_seconds / validator_seconds
    print(
        f"throughput ratio (validator / baseline): {ratio:.2f}  "
        f"[target ≥ {THROUGHPUT_TARGET}: {'met' if ratio >= THROUGHPUT_TARGET else 'MISSED'}]"
    )
    print(
        f"validator peak RSS: {rss_after:.1f} MB (after imports: {rss_before:.1f} MB)  "
        f"[target < {RSS_TARGET_MB:.0f} MB: {'met' if rss_after < RSS_TARGET_MB else 'MISSED'}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
