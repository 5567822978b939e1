"""Supervision of one training worker process (``python -m distillery.local.emulator._worker``).

:class:`WorkerRun` writes the worker's request, starts the process, turns the messages it writes
on its progress channel into the job's ``jobDetail`` (see
:mod:`distillery.local.emulator._job_detail`), stops it on cancel (SIGTERM, then SIGKILL after a
grace period), and judges how it ended: its ``result`` message, a reported error, or a crash —
never leaving a worker behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from distillery.local.emulator._job_detail import LABEL_TASK, TRAIN_TASK, JobDetail
from distillery.local.emulator._model import now, rfc3339
from distillery.local.emulator._runner import JobCancelledError, JobFailedError, RunContext
from distillery.local.emulator._worker import REQUEST_FILE

logger = logging.getLogger(__name__)

#: How much of the worker's log a crash report quotes.
LOG_TAIL_LINES = 8
LOG_TAIL_CHARS = 1500
#: How often the supervisor checks for a cancel while the worker runs.
POLL_SECONDS = 0.1
#: The version of the request file the worker reads.
REQUEST_VERSION = 1


def worker_request(
    trainer_module: str,
    config: Mapping[str, Any],
    *,
    has_evaluation: bool,
    teacher: Path | None,
) -> dict[str, Any]:
    """The worker's ``request.json`` (see :mod:`distillery.local.emulator._worker`)."""
    return {
        "version": REQUEST_VERSION,
        "parent": os.getpid(),
        "sysPath": [p for p in sys.path if p],
        "trainerModule": trainer_module,
        "config": dict(config),
        "train": "train.jsonl",
        "evaluation": "eval.jsonl" if has_evaluation else None,
        "teacher": str(teacher) if teacher else None,
        "output": "out",
    }


class WorkerRun:
    """One worker process: start, follow its messages, stop it on cancel, judge its end."""

    def __init__(self, work: Path, detail: JobDetail, context: RunContext, grace: float) -> None:
        self._work = work
        self._detail = detail
        self._context = context
        self._grace = grace
        self._result: dict[str, Any] | None = None
        self._error: dict[str, Any] | None = None
        self._last_loss: float | None = None
        self._last_accuracy: float | None = None

    def run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``request`` to the work directory, run the worker; its ``result`` message.

        Raises:
            JobCancelledError: cancel was asked; the worker was stopped.
            JobFailedError: the worker could not start, reported an error, or crashed.
        """
        (self._work / REQUEST_FILE).write_text(json.dumps(request), encoding="utf-8")
        read_fd, write_fd = os.pipe()
        log_path = self._work / "worker.log"
        try:
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "distillery.local.emulator._worker", str(self._work),
                     str(write_fd)],
                    pass_fds=(write_fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._work,
                )  # fmt: skip
        except OSError as exc:
            os.close(read_fd)
            raise JobFailedError("INTERNAL", f"the training worker could not start: {exc}") from exc
        finally:
            os.close(write_fd)
        logger.info("training worker started", extra={"pid": process.pid, "work": str(self._work)})
        reader = threading.Thread(
            target=self._follow, args=(os.fdopen(read_fd, "r", encoding="utf-8"),), daemon=True
        )
        reader.start()
        try:
            while True:
                try:
                    code = process.wait(POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if self._context.cancelled:
                        self._stop(process)
                        raise JobCancelledError("the pipeline job was cancelled") from None
        finally:
            if process.poll() is None:  # An unexpected error here: never leave a worker behind.
                self._stop(process)
            reader.join(5)
        if self._result is not None and code == 0:
            return self._result
        if self._context.cancelled:
            raise JobCancelledError("the pipeline job was cancelled")
        if self._error is not None:
            if self._error.get("kind") == "training":
                raise JobFailedError(
                    "FAILED_PRECONDITION", f"training failed: {self._error['message']}"
                )
            raise JobFailedError(
                "INTERNAL",
                f"the training worker failed: {self._error.get('message')}{tail(log_path)}",
            )
        if code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        raise JobFailedError(
            "INTERNAL", f"the training worker process {how} before it finished{tail(log_path)}"
        )

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        process.terminate()
        try:
            process.wait(self._grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logger.info("training worker stopped", extra={"pid": process.pid})

    def _follow(self, channel: IO[str]) -> None:
        with channel:
            for line in channel:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        detail = self._detail
        if event == "task" and message.get("task") == LABEL_TASK:
            state = str(message.get("state"))
            detail.set_state(LABEL_TASK, state)
            if state == "SUCCEEDED":
                detail.set_metadata(
                    LABEL_TASK,
                    **{
                        "output:labelled_examples": message.get("examples"),
                        "output:rationales": message.get("rationales"),
                    },
                )
                detail.set_state(TRAIN_TASK, "RUNNING")
        elif event == "progress":
            if message.get("trainTotalLoss") is not None:
                self._last_loss = float(message["trainTotalLoss"])
            if message.get("evalAccuracy") is not None:
                self._last_accuracy = float(message["evalAccuracy"])
            step, total = int(message.get("step") or 0), int(message.get("trainSteps") or 0)
            detail.ensure_running(TRAIN_TASK)
            detail.set_metadata(
                TRAIN_TASK,
                **{
                    "progress:step": step,
                    "progress:train_steps": total,
                    "progress:fraction_complete": round(step / total, 4) if total else None,
                    "progress:phase": message.get("phase"),
                    "progress:train_total_loss": self._last_loss,
                    "progress:eval_fraction_of_correct_next_step_preds": self._last_accuracy,
                    "progress:update_time": rfc3339(now()),
                },
            )
        elif event == "result":
            self._result = message
            return
        elif event == "error":
            self._error = message
            return
        else:
            return
        self._context.report_detail(detail.render())


def tail(log_path: Path) -> str:
    """``"; its log ends: <last lines of the worker's log>"`` ("" when it is empty)."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    text = " | ".join(line.strip() for line in lines[-LOG_TAIL_LINES:] if line.strip())
    return f"; its log ends: {text[-LOG_TAIL_CHARS:]}" if text else ""
