"""The issue's proof: the built-in student really learns the example task on the CPU.

This is the one slow trainer test (about 10-60 s here, budgeted at 3 minutes): the SPEC's default
parameters for a GPU job (batch 8, 300 steps, learning-rate multiplier 1.0, eval every 20 steps,
early stopping on) on ``generate(1000, 100)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from distillery.local.example_data import generate
from distillery.local.trainer import TrainingConfig, TrainingExample, load_predictor, train


@pytest.mark.timeout(600)
def test_trainer_example_task_reaches_quality(tmp_path: Path) -> None:
    train_set, eval_set = generate(1000, 100)
    config = TrainingConfig(
        train_steps=300,
        batch_size=8,
        learning_rate_multiplier=1.0,
        evaluation_interval=20,
        enable_early_stopping=True,
    )
    started = time.process_time()

    result = train(
        config,
        [TrainingExample(e.input_text, e.output_text) for e in train_set],
        [TrainingExample(e.input_text, e.output_text) for e in eval_set],
        tmp_path,
    )

    assert time.process_time() - started < 180.0
    assert result.eval_exact_match is not None and result.eval_exact_match >= 0.95
    assert result.metrics["eval_fraction_of_correct_next_step_preds"] >= 0.95
    answers = load_predictor(result.model_dir).predict([e.input_text for e in eval_set])
    hits = sum(a == e.output_text for a, e in zip(answers, eval_set, strict=True))
    assert hits >= 95
