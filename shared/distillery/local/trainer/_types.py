"""The trainer's value types and errors: no torch here, so importing them is cheap."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from distillery.core.errors import PermanentError

#: Vertex AI's default ``evaluation_interval``; used when eval data is given without an interval.
DEFAULT_EVALUATION_INTERVAL = 20

#: The three metrics Vertex AI reports for a split, in its names (``train_*`` / ``eval_*``).
METRIC_SUFFIXES = ("total_loss", "fraction_of_correct_next_step_preds", "num_predictions")

Phase = Literal["train", "eval", "done"]


class TrainingError(PermanentError):
    """Training cannot run or finish for an explained reason (bad data, config or checkpoint)."""


class TrainingCancelledError(TrainingError):
    """``should_stop()`` asked the run to stop; nothing was saved."""


@dataclass(frozen=True)
class TrainingExample:
    """One example: a prompt, its label (None when unlabeled) and an optional rationale."""

    input_text: str
    output_text: str | None = None
    rationale: str | None = None


@dataclass(frozen=True)
class TrainingConfig:
    """What one training run does (Vertex AI's tuning parameters plus local knobs).

    ``evaluation_interval`` is in steps; None with eval data means Vertex AI's default (20).
    Early stopping (when enabled and eval data exists) ends the run once the eval token accuracy
    (``eval_fraction_of_correct_next_step_preds``) has not strictly improved for
    ``early_stopping_patience`` consecutive evaluations. ``enable_checkpoint_selection`` saves the
    weights of the evaluation with the best eval token accuracy (ties: lower eval loss, then the
    earlier step) instead of the last weights. ``alpha`` weighs the label loss against the
    rationale loss (used only when some training example has a rationale). Inputs and outputs
    longer than ``max_input_tokens`` / ``max_output_tokens`` tokens (counted with the student's
    tokenizer, end-of-sequence token included) are truncated with a warning.

    ``student_checkpoint`` is a local Hugging Face seq2seq checkpoint directory to fine-tune;
    None builds the small built-in T5 from scratch with a tokenizer trained on the training data.
    ``teacher_checkpoint`` is a local seq2seq checkpoint directory that labels the unlabeled
    training examples before training (see :func:`~distillery.local.trainer.label_with_teacher`);
    without it unlabeled examples are skipped. Train metrics are logged every ``log_interval``
    steps; ``num_threads`` (None: every core this process may use) sets torch's thread count.

    Raises:
        TrainingError: a value is out of range.
    """

    train_steps: int = 300
    batch_size: int = 8
    learning_rate_multiplier: float = 1.0
    evaluation_interval: int | None = None
    enable_early_stopping: bool = True
    early_stopping_patience: int = 3
    enable_checkpoint_selection: bool = False
    alpha: float = 0.5
    max_input_tokens: int = 7168
    max_output_tokens: int = 1024
    base_learning_rate: float = 1e-3
    seed: int = 0
    student_checkpoint: str | None = None
    teacher_checkpoint: str | None = None
    log_interval: int = 10
    num_threads: int | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("train_steps", "batch_size", "early_stopping_patience", "log_interval"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in ("max_input_tokens", "max_output_tokens"):
            if getattr(self, name) < 2:
                problems.append(f"{name} must be at least 2 (one token and end-of-sequence)")
        if self.evaluation_interval is not None and self.evaluation_interval < 1:
            problems.append("evaluation_interval must be at least 1")
        if self.num_threads is not None and self.num_threads < 1:
            problems.append("num_threads must be at least 1")
        if not self.learning_rate_multiplier > 0 or not self.base_learning_rate > 0:
            problems.append("the learning rate (base x multiplier) must be positive")
        if not 0.0 <= self.alpha <= 1.0:
            problems.append("alpha must be between 0 and 1")
        if problems:
            raise TrainingError("invalid training configuration: " + "; ".join(problems))

    @property
    def learning_rate(self) -> float:
        """The peak learning rate: ``base_learning_rate * learning_rate_multiplier``."""
        return self.base_learning_rate * self.learning_rate_multiplier


@dataclass(frozen=True)
class ProgressEvent:
    """Reported to ``progress`` at each train log point, each evaluation, and once when done."""

    step: int
    train_steps: int
    train_total_loss: float | None
    eval_fraction_of_correct_next_step_preds: float | None
    phase: Phase


@dataclass(frozen=True)
class TrainingResult:
    """What a finished run produced.

    ``metrics`` holds Vertex AI's metric names: the train metrics of the log window ending at
    ``selected_step`` and, with eval data, the eval metrics of the selected checkpoint.
    """

    metrics: dict[str, float]
    selected_step: int
    steps_run: int
    stopped_early: bool
    model_dir: Path
    metrics_path: Path
    tensorboard_dir: Path
    eval_exact_match: float | None
    #: Training examples used (after skipping unlabeled ones), and how many fields were truncated.
    examples_used: int = 0
    truncated_fields: int = 0
    warnings: tuple[str, ...] = field(default=())
