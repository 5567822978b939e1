"""The training run: step-by-step distillation of a seq2seq student on the CPU."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.local.trainer._data import (
    BatchSampler,
    EncodedExample,
    EncodedPair,
    TaskBatch,
    TextEncoder,
    chunks,
    collate,
    step_batch,
    task_texts,
)
from distillery.local.trainer._metrics import EvalTotals, TokenScore, TrainWindow, combine_losses
from distillery.local.trainer._model import ModelMetadata, build_student, load_seq2seq, save_model
from distillery.local.trainer._predict import Predictor, label_with_teacher
from distillery.local.trainer._record import MetricsRecorder
from distillery.local.trainer._tokenizer import build_tokenizer
from distillery.local.trainer._types import (
    DEFAULT_EVALUATION_INTERVAL,
    Phase,
    ProgressEvent,
    TrainingCancelledError,
    TrainingConfig,
    TrainingError,
    TrainingExample,
    TrainingResult,
)

logger = logging.getLogger(__name__)

#: Output layout under ``output_dir``.
MODEL_DIR = "model"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

#: Linear warmup over this fraction of the steps (at most :data:`MAX_WARMUP_STEPS`).
WARMUP_FRACTION = 0.1
MAX_WARMUP_STEPS = 20
GRADIENT_CLIP_NORM = 1.0
WEIGHT_DECAY = 0.01
EVAL_BATCH_SIZE = 64

#: ``evaluate(model, step) -> eval_* metrics``; injectable so tests can script evaluations.
Evaluator = Callable[[Any, int], dict[str, float]]
ProgressCallback = Callable[[ProgressEvent], None]

ACCURACY = "eval_fraction_of_correct_next_step_preds"
LOSS = "eval_total_loss"


def available_cores() -> int:
    """How many CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def forward_logits(model: Any, batch: TaskBatch) -> Any:
    """Teacher-forced logits of ``model`` for ``batch`` (the model computes no loss itself)."""
    prepare = getattr(model, "prepare_decoder_input_ids_from_labels", None)
    if prepare is None:
        output = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
        )
    else:
        output = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            decoder_input_ids=prepare(labels=batch.labels),
        )
    return output.logits


def score_batch(model: Any, batch: TaskBatch) -> TokenScore:
    """Forward ``batch`` and score it (see
    :func:`~distillery.local.trainer._metrics.score_tokens`)."""
    from distillery.local.trainer._metrics import score_tokens

    return score_tokens(forward_logits(model, batch), batch.labels)


class CheckpointTracker:
    """Follows the evaluations: the best one so far, and whether patience ran out.

    An evaluation *improves* when its token accuracy is strictly higher than every earlier one;
    early stopping fires after ``patience`` consecutive evaluations without improvement. The
    best checkpoint ranks by token accuracy, then lower loss; on a full tie the earlier step wins.
    """

    def __init__(self, patience: int) -> None:
        """Track with ``patience`` evaluations."""
        self.patience = patience
        self.best_step: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.best_accuracy = -math.inf
        self.evaluations_without_improvement = 0

    def observe(self, step: int, metrics: dict[str, float]) -> bool:
        """Record the evaluation at ``step``; returns whether it is the best checkpoint so far."""
        accuracy, loss = metrics[ACCURACY], metrics[LOSS]
        if accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
            self.evaluations_without_improvement = 0
        else:
            self.evaluations_without_improvement += 1
        best = self.best_step is None or (accuracy, -loss) > (
            self.best_metrics[ACCURACY],
            -self.best_metrics[LOSS],
        )
        if best:
            self.best_step = step
            self.best_metrics = dict(metrics)
        return best

    @property
    def patience_exhausted(self) -> bool:
        """Whether early stopping should end the run now."""
        return self.evaluations_without_improvement >= self.patience


@dataclass(frozen=True)
class _Data:
    train: list[EncodedExample]
    eval_pairs: list[EncodedPair]
    eval_explain_pairs: list[EncodedPair]
    eval_examples: list[TrainingExample]
    multi_task: bool
    truncated_fields: int


@dataclass
class _Outcome:
    """What the step loop leaves for the end of the run."""

    tracker: CheckpointTracker
    steps_run: int = 0
    stopped_early: bool = False
    train_records: dict[int, dict[str, float]] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, Any] | None = None


class TrainingRun:
    """One call of :func:`~distillery.local.trainer.train` (see there); ``evaluator`` replaces the
    teacher-forced evaluation on the eval set (tests script evaluations with it)."""

    def __init__(
        self,
        config: TrainingConfig,
        train_examples: Sequence[TrainingExample],
        eval_examples: Sequence[TrainingExample] | None,
        output_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        evaluator: Evaluator | None = None,
    ) -> None:
        self.config = config
        self.train_examples = list(train_examples)
        self.eval_examples = list(eval_examples or ())
        self.output_dir = Path(output_dir)
        self.progress = progress
        self.should_stop = should_stop
        self.evaluator = evaluator
        self.warnings: list[str] = []

    # -- inputs ------------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        logger.warning(message)
        self.warnings.append(message)

    def _labeled_training_examples(self) -> list[TrainingExample]:
        """The examples to train on, teacher-labelled when a teacher is configured.

        Raises:
            TrainingError: no example has a label (and no teacher gave one).
        """
        examples = self.train_examples
        unlabeled = [e for e in examples if e.output_text is None]
        if unlabeled and self.config.teacher_checkpoint is not None:
            labelled = iter(
                label_with_teacher(
                    Path(self.config.teacher_checkpoint),
                    [e.input_text for e in unlabeled],
                    max_new_tokens=self.config.max_output_tokens,
                    max_rationale_tokens=self.config.max_output_tokens,
                )
            )
            examples = [e if e.output_text is not None else next(labelled) for e in examples]
            unlabeled = []
        labeled = [e for e in examples if e.output_text is not None]
        if not labeled:
            raise TrainingError(
                "no labeled training examples: "
                + (
                    "the training set is empty"
                    if not examples
                    else f"none of the {len(examples)} examples has an output_text and no "
                    "teacher_checkpoint was given to label them"
                )
            )
        if unlabeled:
            self._warn(f"skipped {len(unlabeled)} training examples without output_text")
        return labeled

    def _prepare(self, tokenizer: Any, train: list[TrainingExample]) -> _Data:
        config = self.config
        evaluation = [e for e in self.eval_examples if e.output_text is not None]
        if len(evaluation) < len(self.eval_examples):
            self._warn(
                f"skipped {len(self.eval_examples) - len(evaluation)} eval examples without "
                "output_text"
            )
        encoder = TextEncoder(
            tokenizer,
            max_input_tokens=config.max_input_tokens,
            max_output_tokens=config.max_output_tokens,
        )
        train_encoded = encoder.encode_examples(train)
        eval_encoded = encoder.encode_examples(evaluation)
        multi_task = any(e.explain is not None for e in train_encoded)
        if encoder.truncated_fields:
            self._warn(
                f"truncated {encoder.truncated_fields} fields to the token limits "
                f"(input {config.max_input_tokens}, output {config.max_output_tokens})"
            )
        return _Data(
            train=train_encoded,
            eval_pairs=[e.predict for e in eval_encoded],
            eval_explain_pairs=[e.explain for e in eval_encoded if e.explain] if multi_task else [],
            eval_examples=evaluation,
            multi_task=multi_task,
            truncated_fields=encoder.truncated_fields,
        )

    def _student(self, train: list[TrainingExample]) -> tuple[Any, Any]:
        if self.config.student_checkpoint is not None:
            return load_seq2seq(self.config.student_checkpoint)
        texts = [
            text
            for example in train
            for pair in task_texts(example)
            for text in (pair.source, pair.target)
        ]
        tokenizer = build_tokenizer(texts)
        return build_student(tokenizer, seed=self.config.seed), tokenizer

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> TrainingResult:
        """Train, evaluate, select and save (see :func:`~distillery.local.trainer.train`).

        Raises:
            TrainingCancelledError: ``should_stop()`` returned True between two steps.
            TrainingError: no labeled examples, or a checkpoint that cannot be loaded.
        """
        import torch

        config = self.config
        torch.set_num_threads(config.num_threads or available_cores())
        train_examples = self._labeled_training_examples()
        model, tokenizer = self._student(train_examples)
        data = self._prepare(tokenizer, train_examples)
        if config.evaluation_interval is not None and not data.eval_pairs:
            logger.info("evaluation_interval is ignored: there is no labeled eval data")
        logger.info(
            "training %s student: %d examples (%s), %d eval examples, %d steps of %d, lr %.2g",
            "a checkpoint" if config.student_checkpoint else "the built-in",
            len(data.train),
            "multi-task" if data.multi_task else "label only",
            len(data.eval_examples),
            config.train_steps,
            config.batch_size,
            config.learning_rate,
        )
        torch.manual_seed(config.seed)
        with MetricsRecorder(
            self.output_dir / METRICS_FILE, self.output_dir / TENSORBOARD_DIR
        ) as recorder:
            outcome = self._train(model, data, int(tokenizer.pad_token_id), recorder)
        return self._finish(model, tokenizer, data, outcome)

    def _train(self, model: Any, data: _Data, pad_id: int, recorder: MetricsRecorder) -> _Outcome:
        """The step loop: train, log, evaluate, track the best checkpoint, stop early.

        Raises:
            TrainingCancelledError: ``should_stop()`` returned True.
        """
        import torch

        config = self.config
        has_eval = bool(data.eval_pairs)
        interval = config.evaluation_interval or DEFAULT_EVALUATION_INTERVAL
        evaluate = self.evaluator or self._evaluator(data, pad_id)
        model.train()
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            parameters, lr=config.learning_rate, weight_decay=WEIGHT_DECAY
        )
        warmup = max(1, min(MAX_WARMUP_STEPS, int(config.train_steps * WARMUP_FRACTION)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda index: min(1.0, (index + 1) / warmup)
        )
        sampler = BatchSampler(len(data.train), config.batch_size, config.seed)
        outcome = _Outcome(tracker=CheckpointTracker(config.early_stopping_patience))
        window = TrainWindow()
        for step in range(1, config.train_steps + 1):
            if self.should_stop():
                raise TrainingCancelledError(f"training was cancelled before step {step}")
            batch = step_batch([data.train[i] for i in next(sampler)], pad_id)
            scores = [score_batch(model, batch.predict)]
            rationale_loss = None
            if batch.explain is not None:
                scores.append(score_batch(model, batch.explain))
                rationale_loss = scores[1].mean_loss
            loss = combine_losses(scores[0].mean_loss, rationale_loss, config.alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, GRADIENT_CLIP_NORM)
            optimizer.step()
            scheduler.step()
            window.add(float(loss.detach()), scores)
            outcome.steps_run = step

            last = step == config.train_steps
            eval_now = has_eval and (step % interval == 0 or last)
            if eval_now or last or step % config.log_interval == 0:
                outcome.train_records[step] = window.metrics()
                window = TrainWindow()
                recorder.record(step, "train", outcome.train_records[step])
                self._report(step, outcome.train_records[step], outcome.last_eval, "train")
            if eval_now and self._evaluate(model, step, evaluate, recorder, outcome):
                if not last:
                    outcome.stopped_early = True
                    logger.info("early stop at step %d (best %s)", step, outcome.tracker.best_step)
                break
        return outcome

    def _evaluate(
        self,
        model: Any,
        step: int,
        evaluate: Evaluator,
        recorder: MetricsRecorder,
        outcome: _Outcome,
    ) -> bool:
        """Evaluate at ``step`` and track it; returns whether early stopping ends the run."""
        config = self.config
        outcome.last_eval = evaluate(model, step)
        recorder.record(step, "eval", outcome.last_eval)
        logger.info("step %d: %s", step, outcome.last_eval)
        if outcome.tracker.observe(step, outcome.last_eval) and config.enable_checkpoint_selection:
            # A copy in memory: the models trained here are small, and disk is slower.
            outcome.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._report(step, outcome.train_records[step], outcome.last_eval, "eval")
        return config.enable_early_stopping and outcome.tracker.patience_exhausted

    def _finish(self, model: Any, tokenizer: Any, data: _Data, outcome: _Outcome) -> TrainingResult:
        """Load the selected weights, save the model, measure exact match, build the result."""
        config = self.config
        selected_step, eval_metrics = outcome.steps_run, outcome.last_eval
        if outcome.best_state is not None and outcome.tracker.best_step is not None:
            model.load_state_dict(outcome.best_state)
            selected_step, eval_metrics = outcome.tracker.best_step, outcome.tracker.best_metrics
        metrics = {**outcome.train_records[selected_step], **eval_metrics}
        metadata = ModelMetadata(
            multi_task=data.multi_task,
            max_input_tokens=config.max_input_tokens,
            max_output_tokens=config.max_output_tokens,
            selected_step=selected_step,
        )
        model_dir = self.output_dir / MODEL_DIR
        save_model(model, tokenizer, model_dir, metadata)
        exact_match = self._exact_match(Predictor(model, tokenizer, metadata), data)
        self._report(outcome.steps_run, metrics, eval_metrics, "done")
        logger.info(
            "training done: %d steps, selected step %d, exact match %s, %s",
            outcome.steps_run,
            selected_step,
            exact_match,
            metrics,
        )
        return TrainingResult(
            metrics=metrics,
            selected_step=selected_step,
            steps_run=outcome.steps_run,
            stopped_early=outcome.stopped_early,
            model_dir=model_dir,
            metrics_path=self.output_dir / METRICS_FILE,
            tensorboard_dir=self.output_dir / TENSORBOARD_DIR,
            eval_exact_match=exact_match,
            examples_used=len(data.train),
            truncated_fields=data.truncated_fields,
            warnings=tuple(self.warnings),
        )

    def _report(
        self, step: int, train: dict[str, float], evaluation: dict[str, float], phase: Phase
    ) -> None:
        if self.progress is None:
            return
        self.progress(
            ProgressEvent(
                step=step,
                train_steps=self.config.train_steps,
                train_total_loss=train.get("train_total_loss"),
                eval_fraction_of_correct_next_step_preds=evaluation.get(ACCURACY),
                phase=phase,
            )
        )

    def _evaluator(self, data: _Data, pad_id: int) -> Evaluator:
        """Teacher-forced eval metrics over the eval set's predict (and explain) pairs."""

        def evaluate(model: Any, step: int) -> dict[str, float]:
            import torch

            totals = EvalTotals(alpha=self.config.alpha)
            model.eval()
            try:
                with torch.inference_mode():
                    for pairs, rationale in (
                        (data.eval_pairs, False),
                        (data.eval_explain_pairs, True),
                    ):
                        for chunk in chunks(pairs, EVAL_BATCH_SIZE):
                            totals.add(
                                score_batch(model, collate(chunk, pad_id)), rationale=rationale
                            )
            finally:
                model.train()
            return totals.metrics()

        return evaluate

    def _exact_match(self, predictor: Predictor, data: _Data) -> float | None:
        """Fraction of eval prompts whose generated answer equals the label (both stripped)."""
        if not data.eval_examples:
            return None
        longest = max(len(pair.target_ids) for pair in data.eval_pairs)
        answers = predictor.predict(
            [e.input_text for e in data.eval_examples],
            max_new_tokens=min(longest + 8, self.config.max_output_tokens),
        )
        hits = sum(
            answer == (example.output_text or "").strip()
            for answer, example in zip(answers, data.eval_examples, strict=True)
        )
        return hits / len(data.eval_examples)


def train(
    config: TrainingConfig,
    train_examples: Sequence[TrainingExample],
    eval_examples: Sequence[TrainingExample] | None,
    output_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainingResult:
    """Distill a student step by step on the CPU and save it under ``output_dir``.

    Writes ``output_dir/model/`` (weights, tokenizer, metadata: loadable by
    :func:`~distillery.local.trainer.load_predictor`), ``output_dir/metrics.jsonl`` (one line per
    train log point and per evaluation) and ``output_dir/tensorboard/`` (event files). Each step
    trains on exactly ``config.batch_size`` examples; see
    :class:`~distillery.local.trainer.TrainingConfig` for evaluation, early stopping and checkpoint
    selection. Deterministic for ``config.seed`` (on one machine, with one thread count). Sets
    torch's thread count for the process.

    ``progress`` is called at each train log point, evaluation and once at the end.
    ``should_stop`` is polled before every step: once it returns True the run raises
    :class:`~distillery.local.trainer.TrainingCancelledError` promptly and saves nothing.

    Raises:
        TrainingCancelledError: ``should_stop()`` returned True.
        TrainingError: no labeled training example (and no teacher to label them), a student or
            teacher checkpoint that cannot be loaded, or a tokenizer without the needed tokens.
        OSError: ``output_dir`` cannot be written.
    """
    return TrainingRun(
        config,
        train_examples,
        eval_examples,
        output_dir,
        progress=progress,
        should_stop=should_stop,
    ).run()
