"""Benchmark the local trainer: throughput against a bare PyTorch loop, and time to quality.

In one run, on the example task (``generate(1000, 100)``), with the SPEC's defaults for a GPU job
(batch 8, learning-rate multiplier 1.0):

1. throughput: ``train`` (no eval data, so every step is a training step) against a bare loop
   over the same built-in model, the same initial weights and the same batches, pre-collated
   (forward with ``labels``, backward, AdamW step: nothing else). Both are timed over the same
   steps after a short warm-up; ``train`` is timed between two of its own progress reports, so
   its setup (tokenizer, model, saving) is excluded. Best of ``--repeat`` alternating runs.
2. time to quality: full ``train`` runs (300 steps, eval every 20, early stopping on) per seed:
   CPU and wall seconds, the first evaluation with token accuracy >= 0.95, steps run, and the
   generated exact match on the eval set of the saved model.

Targets: throughput at least 0.8x the bare loop; exact match >= 0.95 within 180 s of CPU time.
Usage: ``python bench/trainer.py [--steps N] [--repeat R] [--seeds S]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distillery.local.example_data import generate
from distillery.local.trainer import ProgressEvent, TrainingConfig, TrainingExample, train
from distillery.local.trainer._data import BatchSampler, TextEncoder, step_batch, task_texts
from distillery.local.trainer._loop import available_cores
from distillery.local.trainer._model import build_student
from distillery.local.trainer._tokenizer import build_tokenizer

THROUGHPUT_TARGET = 0.8
QUALITY_TARGET = 0.95
CPU_SECONDS_TARGET = 180.0
WARMUP_STEPS = 10


def _examples() -> tuple[list[TrainingExample], list[TrainingExample]]:
    train_set, eval_set = generate(1000, 100)
    return (
        [TrainingExample(e.input_text, e.output_text) for e in train_set],
        [TrainingExample(e.input_text, e.output_text) for e in eval_set],
    )


def _train_throughput(examples: list[TrainingExample], config: TrainingConfig) -> float:
    """Examples per second of ``train`` between its report at the warm-up step and the last."""
    stamps: dict[int, float] = {}

    def progress(event: ProgressEvent) -> None:
        if event.phase == "train":
            stamps[event.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        train(config, examples, None, Path(out), progress=progress)
    steps = config.train_steps - WARMUP_STEPS
    return steps * config.batch_size / (stamps[config.train_steps] - stamps[WARMUP_STEPS])


def _bare_throughput(examples: list[TrainingExample], config: TrainingConfig) -> float:
    """Examples per second of a plain PyTorch loop over the same model and batches."""
    import torch

    torch.set_num_threads(available_cores())
    texts = [t for e in examples for pair in task_texts(e) for t in (pair.source, pair.target)]
    tokenizer = build_tokenizer(texts)
    model = build_student(tokenizer, seed=config.seed)
    encoder = TextEncoder(
        tokenizer,
        max_input_tokens=config.max_input_tokens,
        max_output_tokens=config.max_output_tokens,
    )
    encoded = encoder.encode_examples(examples)
    sampler = BatchSampler(len(encoded), config.batch_size, config.seed)
    batches = [
        step_batch([encoded[i] for i in next(sampler)], tokenizer.pad_token_id).predict
        for _ in range(config.train_steps)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    model.train()
    started = 0.0
    for step, batch in enumerate(batches, start=1):
        loss = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
        ).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == WARMUP_STEPS:
            started = time.perf_counter()
    steps = config.train_steps - WARMUP_STEPS
    return steps * config.batch_size / (time.perf_counter() - started)


def _quality_run(
    examples: list[TrainingExample], evaluation: list[TrainingExample], seed: int
) -> dict[str, Any]:
    config = TrainingConfig(evaluation_interval=20, seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    first_good: list[tuple[int, float]] = []

    def progress(event: ProgressEvent) -> None:
        accuracy = event.eval_fraction_of_correct_next_step_preds
        reached = accuracy is not None and accuracy >= QUALITY_TARGET
        if event.phase == "eval" and reached and not first_good:
            first_good.append((event.step, time.process_time() - cpu))

    with tempfile.TemporaryDirectory() as out:
        result = train(config, examples, evaluation, Path(out), progress=progress)
    return {
        "seed": seed,
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "first_good": first_good[0] if first_good else None,
        "steps": result.steps_run,
        "exact_match": result.eval_exact_match or 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; returns 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=110, help="steps per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="alternating throughput runs")
    parser.add_argument("--seeds", type=int, default=3, help="time-to-quality runs")
    args = parser.parse_args(argv)

    examples, evaluation = _examples()
    config = TrainingConfig(train_steps=args.steps, log_interval=WARMUP_STEPS)
    print(
        f"cores: {available_cores()}; example task: {len(examples)} train, {len(evaluation)} eval"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes skew wall times)")

    bare: list[float] = []
    ours: list[float] = []
    for _ in range(args.repeat):
        bare.append(_bare_throughput(examples, config))
        ours.append(_train_throughput(examples, config))
    ratio = max(ours) / max(bare)
    print(f"\nthroughput, batch {config.batch_size}, {args.steps - WARMUP_STEPS} timed steps")
    print(f"{'loop':<12}{'best ex/s':>12}{'median ex/s':>14}")
    print(f"{'bare torch':<12}{max(bare):>12.1f}{statistics.median(bare):>14.1f}")
    print(f"{'train()':<12}{max(ours):>12.1f}{statistics.median(ours):>14.1f}")
    print(f"ratio train/bare: {ratio:.2f} (target >= {THROUGHPUT_TARGET})")

    print("\ntime to quality (300 steps, batch 8, lr x1.0, eval every 20, early stopping)")
    print(
        f"{'seed':>4}{'acc>=0.95 at':>14}{'cpu s':>8}{'steps run':>11}{'cpu s':>8}{'wall s':>8}"
        f"{'exact match':>13}"
    )
    runs = [_quality_run(examples, evaluation, seed) for seed in range(args.seeds)]
    for run in runs:
        step, seconds = run["first_good"] or ("-", float("nan"))
        print(
            f"{run['seed']:>4}{step!s:>14}{seconds:>8.1f}{run['steps']:>11}{run['cpu']:>8.1f}"
            f"{run['wall']:>8.1f}{run['exact_match']:>13.2f}"
        )
    quality_ok = all(
        r["exact_match"] >= QUALITY_TARGET and r["cpu"] <= CPU_SECONDS_TARGET for r in runs
    )
    print(
        f"exact match >= {QUALITY_TARGET} within {CPU_SECONDS_TARGET:.0f} CPU s: "
        + ("yes" if quality_ok else "NO")
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if ratio >= THROUGHPUT_TARGET and quality_ok else 1


if __name__ == "__main__":
    sys.exit(main())
