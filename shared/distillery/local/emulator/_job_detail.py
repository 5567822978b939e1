"""The ``jobDetail`` of a trainer-backed job: its four tasks, kept current as the run goes.

While the job runs, and after it ended, its ``jobDetail`` shows the tasks::

    {"pipelineRunContext": {"name": ".../pipelineJobs/JOB", "displayName": JOB},
     "taskDetails": [
       {"taskId": "1", "taskName": "prepare-data", "state": "SUCCEEDED", ...},
       {"taskId": "2", "taskName": "label-with-teacher", "state": "SKIPPED" | ...},
       {"taskId": "3", "taskName": "distillation-trainer", "state": "RUNNING",
        "execution": {"schemaTitle": "system.ContainerExecution", "state": "RUNNING",
          "metadata": {"input:train_steps": 300, "input:batch_size": 8, ...,
                       "progress:step": 40, "progress:train_steps": 300,
                       "progress:fraction_complete": 0.133, "progress:phase": "train",
                       "progress:train_total_loss": 0.61,
                       "progress:eval_fraction_of_correct_next_step_preds": 0.92}},
        "outputs": {  # once SUCCEEDED
          "model": {"artifacts": [{"schemaTitle": "system.Model", "uri": ".../model/"}]},
          "tensorboard_metrics": {"artifacts": [{"schemaTitle": "system.Artifact",
                                                 "uri": "gs://.../tensorboard/"}]}}},
       {"taskId": "4", "taskName": "upload-llm-model", "state": "SUCCEEDED",
        "execution": {"metadata": {
            "output:model_resource_name": "projects/P/locations/L/models/M@1"}}},
       {"taskId": "5", "taskName": "deploy-llm-model", "state": "SUCCEEDED",
        "execution": {"metadata": {
            "output:endpoint_resource_name": "projects/P/locations/L/endpoints/E"}}}]}

The tuning metrics are where the trainer tasks of Google's LLM pipelines put them: TensorBoard
event files (tags ``/train_total_loss``, ..., with eval data ``/eval_*``) in the directory that is
the ``uri`` of the ``tensorboard_metrics`` output artifact (a ``system.Artifact``); there is no
``system.Metrics`` artifact (see :mod:`distillery.core.training_metrics`). The model's resource
name is where the Vertex AI SDK reads it for tuning pipelines:
``execution.metadata["output:model_resource_name"]`` of ``upload-llm-model`` (with its version,
``@1``); the endpoint the pipeline deployed it on, as the tuning pipelines' ``deploy_llm_model``
component outputs it: ``execution.metadata["output:endpoint_resource_name"]`` of
``deploy-llm-model``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from distillery.local.emulator._model import EmulatedJob, now, rfc3339

PREPARE_TASK = "prepare-data"
LABEL_TASK = "label-with-teacher"
TRAIN_TASK = "distillation-trainer"
UPLOAD_TASK = "upload-llm-model"
#: The tuning pipelines' ``deploy_llm_model`` component: it creates an endpoint named after the
#: model's display name, deploys the model there and outputs ``endpoint_resource_name``.
DEPLOY_TASK = "deploy-llm-model"
TASKS = (PREPARE_TASK, LABEL_TASK, TRAIN_TASK, UPLOAD_TASK, DEPLOY_TASK)

#: Task state → the state of its execution (an MLMD execution's states differ from a task's).
_EXECUTION_STATES = {
    "PENDING": "NEW",
    "RUNNING": "RUNNING",
    "SUCCEEDED": "COMPLETE",
    "FAILED": "FAILED",
    "CANCELLED": "CANCELLED",
}


class JobDetail:
    """The ``jobDetail`` of one trainer-backed job, kept current as the run goes."""

    def __init__(self, job: EmulatedJob) -> None:
        self._job = job
        self._lock = threading.Lock()
        self._tasks: dict[str, dict[str, Any]] = {}
        created = rfc3339(now())
        for number, name in enumerate(TASKS, start=1):
            self._tasks[name] = {
                "taskId": str(number),
                "taskName": name,
                "createTime": created,
                "state": "PENDING",
            }

    def set_state(self, task: str, state: str) -> None:
        """Move ``task`` to ``state`` (``RUNNING`` stamps the start, an end state the end)."""
        with self._lock:
            entry = self._tasks[task]
            entry["state"] = state
            moment = rfc3339(now())
            if state == "RUNNING":
                entry["startTime"] = moment
            elif state in ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"):
                entry.setdefault("startTime", moment)
                entry["endTime"] = moment
            if state in _EXECUTION_STATES:
                execution = self._execution(entry)
                execution["state"] = _EXECUTION_STATES[state]
                execution["updateTime"] = moment

    def ensure_running(self, task: str) -> None:
        """Move ``task`` to RUNNING unless it already is."""
        with self._lock:
            running = self._tasks[task]["state"] == "RUNNING"
        if not running:
            self.set_state(task, "RUNNING")

    def fail_open_tasks(self, state: str, message: str | None = None) -> None:
        """End every task still PENDING or RUNNING: the running one in ``state``, the rest
        NOT_TRIGGERED; ``message`` becomes the running task's ``error``."""
        with self._lock:
            running = [n for n, t in self._tasks.items() if t["state"] == "RUNNING"]
            pending = [n for n, t in self._tasks.items() if t["state"] == "PENDING"]
        for name in running:
            self.set_state(name, state)
            if message:
                with self._lock:
                    self._tasks[name]["error"] = {"code": 2, "message": message}
        with self._lock:
            for name in pending:
                self._tasks[name]["state"] = "NOT_TRIGGERED"

    def set_metadata(self, task: str, **values: Any) -> None:
        """Merge ``values`` into the execution metadata of ``task`` (None values are dropped)."""
        with self._lock:
            metadata = self._execution(self._tasks[task]).setdefault("metadata", {})
            metadata.update({k: v for k, v in values.items() if v is not None})

    def set_outputs(self, task: str, outputs: Mapping[str, Mapping[str, Any]]) -> None:
        """Set the output artifacts of ``task``: name → one Artifact resource."""
        with self._lock:
            moment = rfc3339(now())
            self._tasks[task]["outputs"] = {
                name: {"artifacts": [{"createTime": moment, "state": "LIVE", **artifact}]}
                for name, artifact in outputs.items()
            }

    def render(self) -> dict[str, Any]:
        """The REST ``PipelineJobDetail``."""
        with self._lock:
            return {
                "pipelineRunContext": {"name": self._job.name, "displayName": self._job.job_id},
                "taskDetails": json.loads(json.dumps(list(self._tasks.values()))),
            }

    def _execution(self, entry: dict[str, Any]) -> dict[str, Any]:
        execution: dict[str, Any] = entry.setdefault(
            "execution",
            {
                "name": f"{self._job.name}/executions/{entry['taskId']}",
                "displayName": entry["taskName"],
                "schemaTitle": "system.ContainerExecution",
                "schemaVersion": "0.0.1",
                "createTime": entry["createTime"],
            },
        )
        return execution


def artifact(
    job: EmulatedJob, name: str, schema_title: str, uri: str, **extra: Any
) -> dict[str, Any]:
    """The output Artifact resource ``name`` of ``job`` (for :meth:`JobDetail.set_outputs`)."""
    return {
        "name": f"{job.name}/artifacts/{name}",
        "displayName": name,
        "schemaTitle": schema_title,
        "schemaVersion": "0.0.1",
        "uri": uri,
        **extra,
    }
