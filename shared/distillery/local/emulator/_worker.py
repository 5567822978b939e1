"""The training worker: ``python -m distillery.local.emulator._worker WORK_DIR PROGRESS_FD``.

One process per job, started by :class:`~distillery.local.emulator._supervisor.WorkerRun`, so a
crash or a kill never takes the API server down, and a cancel can stop it at any moment. It reads
``WORK_DIR/request.json`` (written by the parent)::

    {"version": 1, "sysPath": [...], "trainerModule": "distillery.local.trainer",
     "config": {TrainingConfig fields}, "train": "train.jsonl", "evaluation": "eval.jsonl" | null,
     "teacher": "/dir/of/teacher/checkpoint" | null, "output": "out"}

labels the unlabeled examples with the teacher (when one is given), trains, and writes one JSON
object per line to file descriptor ``PROGRESS_FD``:

- ``{"event": "task", "task": "label-with-teacher", "state": "RUNNING" | "SUCCEEDED", ...}``
- ``{"event": "progress", "step", "trainSteps", "trainTotalLoss", "evalAccuracy", "phase"}``
- ``{"event": "result", "metrics": {...}, "selectedStep", "stepsRun", "stoppedEarly",
  "modelDir", "metricsPath", "tensorboardDir", "evalExactMatch", "examplesUsed",
  "truncatedFields", "warnings", "labelsPath"}`` — last, on success;
- ``{"event": "error", "kind": "training" | "internal", "message": "..."}`` — last, on failure
  (exit status 2).

Anything else (a non-zero exit without an ``error`` line, a signal) is a crash for the parent.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

REQUEST_FILE = "request.json"
LABELS_FILE = "teacher_labels.jsonl"
#: Seconds between checks that the parent (the emulator) is still alive.
ORPHAN_CHECK_SECONDS = 1.0


def _emit(channel: IO[str], **message: Any) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def _read_examples(module: Any, path: Path) -> list[Any]:
    examples = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                data = json.loads(line)
                examples.append(
                    module.TrainingExample(
                        data["input_text"], data.get("output_text"), data.get("rationale")
                    )
                )
    return examples


def _label(
    module: Any, teacher: str, examples: list[Any], channel: IO[str], labels_path: Path
) -> list[Any]:
    """Replace every unlabeled example by the teacher's labelled one (order kept)."""
    missing = [i for i, e in enumerate(examples) if e.output_text is None]
    _emit(channel, event="task", task="label-with-teacher", state="RUNNING", examples=len(missing))
    labelled = module.label_with_teacher(Path(teacher), [examples[i].input_text for i in missing])
    if len(labelled) != len(missing):
        raise module.TrainingError(
            f"the teacher labelled {len(labelled)} of {len(missing)} prompts"
        )
    result = list(examples)
    with labels_path.open("w", encoding="utf-8") as out:
        for index, example in zip(missing, labelled, strict=True):
            if example.output_text is None:
                raise module.TrainingError(
                    f"the teacher gave no label for prompt {examples[index].input_text[:80]!r}"
                )
            result[index] = example
            line = {"input_text": example.input_text, "output_text": example.output_text}
            if example.rationale:
                line["rationale"] = example.rationale
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    _emit(
        channel,
        event="task",
        task="label-with-teacher",
        state="SUCCEEDED",
        examples=len(missing),
        rationales=sum(1 for e in labelled if e.rationale),
    )
    return result


def _orphan_check(parent: int) -> Callable[[], bool]:
    """``should_stop``: true once the emulator that started this worker is gone."""

    def orphaned() -> bool:
        return os.getppid() != parent

    def watch() -> None:
        while not orphaned():
            time.sleep(ORPHAN_CHECK_SECONDS)
        os._exit(3)  # Nobody reads the result any more: stop burning the CPU.

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
    return orphaned


def run(work_dir: Path, channel: IO[str]) -> int:
    """Do the job described in ``work_dir``; returns the exit status (0 ok, 2 reported error)."""
    request = json.loads((work_dir / REQUEST_FILE).read_text(encoding="utf-8"))
    for entry in reversed(request.get("sysPath", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    should_stop = _orphan_check(int(request["parent"]))
    module = importlib.import_module(request["trainerModule"])
    try:
        config = module.TrainingConfig(**request["config"])
        train = _read_examples(module, work_dir / request["train"])
        evaluation = (
            _read_examples(module, work_dir / request["evaluation"])
            if request.get("evaluation")
            else None
        )
        labels_path = work_dir / LABELS_FILE
        if request.get("teacher"):
            train = _label(module, request["teacher"], train, channel, labels_path)

        def progress(event: Any) -> None:
            _emit(
                channel,
                event="progress",
                step=event.step,
                trainSteps=event.train_steps,
                trainTotalLoss=event.train_total_loss,
                evalAccuracy=event.eval_fraction_of_correct_next_step_preds,
                phase=event.phase,
            )

        result = module.train(
            config,
            train,
            evaluation,
            work_dir / request["output"],
            progress=progress,
            should_stop=should_stop,
        )
    except module.TrainingError as exc:
        _emit(channel, event="error", kind="training", message=str(exc))
        return 2
    except Exception as exc:
        traceback.print_exc()
        _emit(channel, event="error", kind="internal", message=f"{type(exc).__name__}: {exc}")
        return 2
    _emit(
        channel,
        event="result",
        metrics={k: float(v) for k, v in result.metrics.items()},
        selectedStep=result.selected_step,
        stepsRun=result.steps_run,
        stoppedEarly=result.stopped_early,
        modelDir=str(result.model_dir),
        metricsPath=str(result.metrics_path),
        tensorboardDir=str(result.tensorboard_dir),
        evalExactMatch=result.eval_exact_match,
        examplesUsed=getattr(result, "examples_used", len(train)),
        truncatedFields=getattr(result, "truncated_fields", 0),
        warnings=list(getattr(result, "warnings", ())),
        labelsPath=str(labels_path) if labels_path.exists() else None,
    )
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``WORK_DIR PROGRESS_FD``."""
    work_dir, fd = Path(argv[0]), int(argv[1])
    with os.fdopen(fd, "w", encoding="utf-8") as channel:
        return run(work_dir, channel)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
