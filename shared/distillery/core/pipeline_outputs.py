"""Reading what a pipeline job exposes: the uploaded model and live progress.

Vertex AI pipelines expose their results in ``jobDetail.taskDetails``: the tuning pipelines' model
upload task records the model as ``execution.metadata["output:model_resource_name"]`` (where the
Vertex AI SDK reads it). Progress while a job runs is read from ``progress:*`` keys of a task's
execution metadata (the local Vertex AI API writes them). The tuning metrics are not here: the
real pipelines write them only to TensorBoard event files
(:mod:`distillery.core.training_metrics`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from distillery.core.ports import PipelineJobInfo

MODEL_KEY = "output:model_resource_name"
#: Where the tuning pipelines' deploy task (``deploy_llm_model``) records the endpoint it created
#: and deployed the model on. (The model's name there may carry ``@VERSION``.)
ENDPOINT_KEY = "output:endpoint_resource_name"
PROGRESS_PREFIX = "progress:"


def _tasks(info: PipelineJobInfo) -> Iterator[Mapping[str, Any]]:
    detail = (info.resource or {}).get("jobDetail") or {}
    yield from detail.get("taskDetails") or []


def read_outputs(info: PipelineJobInfo) -> dict[str, Any]:
    """``{"model": resource name, "endpoint": resource name}`` as far as the job exposes them
    (``endpoint``: where the pipeline itself deployed the model)."""
    outputs: dict[str, Any] = {}
    for task in _tasks(info):
        metadata = (task.get("execution") or {}).get("metadata") or {}
        if metadata.get(MODEL_KEY):
            outputs["model"] = str(metadata[MODEL_KEY])
        if metadata.get(ENDPOINT_KEY):
            outputs["endpoint"] = str(metadata[ENDPOINT_KEY])
    return outputs


def read_progress(info: PipelineJobInfo) -> dict[str, Any]:
    """The running task's ``progress:*`` values without the prefix (empty when none are exposed)."""
    progress: dict[str, Any] = {}
    for task in _tasks(info):
        metadata = (task.get("execution") or {}).get("metadata") or {}
        for key, value in metadata.items():
            if key.startswith(PROGRESS_PREFIX):
                progress[key.removeprefix(PROGRESS_PREFIX)] = value
    return progress
