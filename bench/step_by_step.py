"""Benchmark distilling step-by-step against label-only training, on a task where a rationale
can help a small student.

The task is the rumour task (``generate_rumours``): each sentence mixes a subject of one class
with an event of another, and a closing phrase decides which one gives the label (a rumour is
classified by its subject, a confirmed report by its event). Its rationale names the cue and the
deciding words. Per seed, two students are trained with the local trainer on the same examples,
steps, batch, learning rate, seed and architecture (the built-in T5):

- label-only: ``predict: <prompt>`` → label;
- step-by-step: the same, plus ``explain: <prompt>`` → rationale for every example, loss
  alpha * label + (1 - alpha) * rationale, alpha = 0.5 (what the product's two-task training data
  asks of a tuning service).

Both are judged on the label of a held-out set (generated exact match, no rationale asked), and
on its two halves (rumours and confirmed reports). One difference besides the rationales: each
student's tokenizer is trained on its own training text, so the step-by-step student's
vocabulary also holds the rationales' few extra words. A step-by-step step also costs more (a
second forward and backward pass over the rationales): the CPU seconds are printed.

Usage: ``python bench/step_by_step.py [--train N] [--eval N] [--steps N] [--seeds S]``
(defaults: 300 examples, 200 held out, 400 steps of 8, 3 seeds: a few minutes on a quiet 2-core
machine, 15 under load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from distillery.local.example_data import Example, generate_rumours
from distillery.local.trainer import TrainingConfig, TrainingExample, load_predictor, train

#: The data's own seed (the students' seeds vary; the data does not).
DATA_SEED = 13


@dataclass(frozen=True)
class Run:
    student: str
    seed: int
    accuracy: float
    rumour_accuracy: float
    report_accuracy: float
    cpu_seconds: float


def _examples(examples: list[Example], rationales: bool) -> list[TrainingExample]:
    return [
        TrainingExample(e.input_text, e.output_text, e.rationale if rationales else None)
        for e in examples
    ]


def _run(
    student: str,
    seed: int,
    config: TrainingConfig,
    train_set: list[Example],
    held_out: list[Example],
) -> Run:
    started = time.process_time()
    with tempfile.TemporaryDirectory() as out:
        result = train(
            config,
            _examples(train_set, rationales=student == "step-by-step"),
            _examples(held_out, rationales=False),
            Path(out),
        )
        cpu = time.process_time() - started
        answers = load_predictor(result.model_dir).predict([e.input_text for e in held_out])
    hits = [answer == e.output_text for answer, e in zip(answers, held_out, strict=True)]
    rumour = [hit for hit, e in zip(hits, held_out, strict=True) if "a rumour" in str(e.rationale)]
    report = [hit for hit, e in zip(hits, held_out, strict=True) if "confirmed" in str(e.rationale)]
    return Run(
        student=student,
        seed=seed,
        accuracy=sum(hits) / len(hits),
        rumour_accuracy=sum(rumour) / max(1, len(rumour)),
        report_accuracy=sum(report) / max(1, len(report)),
        cpu_seconds=cpu,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns 0 (a negative result is a result)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=300, help="training examples")
    parser.add_argument("--eval", type=int, default=200, help="held-out examples")
    parser.add_argument("--steps", type=int, default=400, help="training steps per student")
    parser.add_argument("--batch", type=int, default=8, help="examples per step")
    parser.add_argument("--lr", type=float, default=1.0, help="learning-rate multiplier (x 1e-3)")
    parser.add_argument("--seeds", type=int, default=3, help="student seeds (0, 1, ...)")
    args = parser.parse_args(argv)

    train_set, held_out = generate_rumours(args.train, args.eval, seed=DATA_SEED, rationales=True)
    rumours = sum("a rumour" in str(e.rationale) for e in held_out)
    print(
        f"rumour task: {len(train_set)} training examples, {len(held_out)} held out "
        f"({rumours} rumours, {len(held_out) - rumours} confirmed reports)"
    )
    print(
        f"{args.steps} steps of {args.batch}, lr x{args.lr}, alpha 0.5, no early stopping; "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    print(f"\n{'seed':>4}  {'student':<13}{'accuracy':>9}{'rumours':>9}{'reports':>9}{'cpu s':>8}")
    runs: list[Run] = []
    for seed in range(args.seeds):
        config = TrainingConfig(
            train_steps=args.steps,
            batch_size=args.batch,
            learning_rate_multiplier=args.lr,
            evaluation_interval=args.steps,
            enable_early_stopping=False,
            seed=seed,
        )
        for student in ("label-only", "step-by-step"):
            run = _run(student, seed, config, train_set, held_out)
            runs.append(run)
            print(
                f"{seed:>4}  {student:<13}{run.accuracy:>9.3f}{run.rumour_accuracy:>9.3f}"
                f"{run.report_accuracy:>9.3f}{run.cpu_seconds:>8.1f}",
                flush=True,
            )
    label_only = [r.accuracy for r in runs if r.student == "label-only"]
    step_by_step = [r.accuracy for r in runs if r.student == "step-by-step"]
    differences = [b - a for a, b in zip(label_only, step_by_step, strict=True)]
    print(
        f"\nmean held-out label accuracy: label-only {statistics.mean(label_only):.3f}, "
        f"step-by-step {statistics.mean(step_by_step):.3f}"
    )
    print(
        "difference (step-by-step - label-only) per seed: "
        + ", ".join(f"{d:+.3f}" for d in differences)
        + f"; mean {statistics.mean(differences):+.3f}"
        + (f", min {min(differences):+.3f}, max {max(differences):+.3f}" if differences else "")
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
