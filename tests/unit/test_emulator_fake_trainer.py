"""A light stand-in for :mod:`distillery.local.trainer` that the emulator's worker can import.

It has the trainer's API (the real value types, ``train``, ``load_predictor``,
``label_with_teacher``) without torch: ``train`` memorises the labelled prompts and answers the
most common label for any other prompt. What it does is steered by environment variables the
worker inherits from the test process:

- ``FAKE_TRAINER_MODE``: ``ok`` (default), ``crash`` (``os._exit(13)`` mid-run), ``kill`` (SIGKILL
  to itself), ``error`` (a ``TrainingError``), ``raise`` (a ``RuntimeError``), ``hang`` (reports
  progress, then sleeps until stopped), ``gate`` (reports step 10, then waits for the file
  ``FAKE_TRAINER_GATE`` to exist);
- ``FAKE_TRAINER_PID_FILE``: where to write the worker's pid.

(No tests here: it is a module the emulator tests load by name.)
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from distillery.local.trainer._types import (
    ProgressEvent,
    TrainingConfig,
    TrainingError,
    TrainingExample,
    TrainingResult,
)

__all__ = [
    "ProgressEvent",
    "TrainingConfig",
    "TrainingError",
    "TrainingExample",
    "TrainingResult",
    "label_with_teacher",
    "load_predictor",
    "train",
]

MODE_VARIABLE = "FAKE_TRAINER_MODE"
GATE_VARIABLE = "FAKE_TRAINER_GATE"
PID_VARIABLE = "FAKE_TRAINER_PID_FILE"
MODEL_FILE = "memory.json"


def train(
    config: TrainingConfig,
    train_examples: Sequence[TrainingExample],
    eval_examples: Sequence[TrainingExample] | None,
    output_dir: Path,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainingResult:
    """Memorise the labelled examples; behave as ``FAKE_TRAINER_MODE`` says."""
    mode = os.environ.get(MODE_VARIABLE, "ok")
    if os.environ.get(PID_VARIABLE):
        Path(os.environ[PID_VARIABLE]).write_text(str(os.getpid()))
    report = progress or (lambda event: None)
    report(ProgressEvent(0, config.train_steps, None, None, "train"))
    report(ProgressEvent(10, config.train_steps, 0.75, None, "train"))
    if eval_examples:
        report(ProgressEvent(10, config.train_steps, None, 0.5, "eval"))
    if mode == "crash":
        os._exit(13)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "error":
        raise TrainingError("the fake trainer refuses this dataset")
    if mode == "raise":
        raise RuntimeError("the fake trainer broke")
    if mode == "hang":
        while not should_stop():
            time.sleep(0.05)
    if mode == "gate":
        gate = Path(os.environ[GATE_VARIABLE])
        while not gate.exists():
            time.sleep(0.02)
    labelled = [e for e in train_examples if e.output_text is not None]
    if not labelled:
        raise TrainingError("no labeled training example")
    memory = {e.input_text: e.output_text for e in labelled}
    majority = collections.Counter(e.output_text for e in labelled).most_common(1)[0][0]
    model_dir = output_dir / "model"
    (model_dir / "nested").mkdir(parents=True)
    (model_dir / MODEL_FILE).write_text(json.dumps({"memory": memory, "majority": majority}))
    (model_dir / "nested" / "config.json").write_text(json.dumps(vars(config), default=str))
    metrics_path = output_dir / "metrics.jsonl"
    metrics = {
        "train_total_loss": 0.25,
        "train_fraction_of_correct_next_step_preds": 0.9,
        "train_num_predictions": float(config.batch_size * 2),
    }
    if eval_examples:
        metrics.update(
            eval_total_loss=0.3,
            eval_fraction_of_correct_next_step_preds=0.85,
            eval_num_predictions=float(len(eval_examples) * 2),
        )
    metrics_path.write_text(json.dumps({"step": config.train_steps, **metrics}) + "\n")
    tensorboard = output_dir / "tensorboard"
    _write_events(tensorboard, config.train_steps, metrics)
    report(ProgressEvent(config.train_steps, config.train_steps, 0.25, 0.85, "done"))
    return TrainingResult(
        metrics=metrics,
        selected_step=config.train_steps,
        steps_run=config.train_steps,
        stopped_early=False,
        model_dir=model_dir,
        metrics_path=metrics_path,
        tensorboard_dir=tensorboard,
        eval_exact_match=1.0 if eval_examples else None,
        examples_used=len(labelled),
    )


def _write_events(directory: Path, step: int, metrics: dict[str, float]) -> None:
    """One TensorBoard event file with ``metrics`` at ``step``, tagged as Vertex AI tags them
    (a leading ``/``), written by tensorboard's own writer (no torch here)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(directory), filename_suffix=".fake")
    values = [summary_pb2.Summary.Value(tag=f"/{k}", simple_value=v) for k, v in metrics.items()]
    summary = summary_pb2.Summary(value=values)
    writer.add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary))
    writer.close()


class Predictor:
    """Answers memorised prompts, the majority label otherwise."""

    def __init__(self, memory: dict[str, str], majority: str) -> None:
        self.memory = memory
        self.majority = majority

    def predict(self, prompts: Sequence[str]) -> list[str]:
        """One answer per prompt."""
        return [self.memory.get(p, self.majority) for p in prompts]


def load_predictor(model_dir: Path) -> Predictor:
    """The predictor saved by :func:`train`.

    Raises:
        TrainingError: no model there.
    """
    try:
        data = json.loads((Path(model_dir) / MODEL_FILE).read_text())
    except OSError as exc:
        raise TrainingError(f"no fake model in {model_dir}") from exc
    return Predictor(data["memory"], data["majority"])


def label_with_teacher(model_dir: Path, prompts: Sequence[str]) -> list[TrainingExample]:
    """Label ``prompts`` with the saved model, with a rationale."""
    predictor = load_predictor(model_dir)
    return [
        TrainingExample(prompt, answer, f"the teacher says {answer}")
        for prompt, answer in zip(prompts, predictor.predict(prompts), strict=True)
    ]
