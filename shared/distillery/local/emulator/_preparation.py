"""What a trainer-backed job prepares before its worker starts: data, student, teacher, config.

- :func:`download_examples` streams a dataset from the bucket (the
  :class:`~distillery.core.ports.ObjectStore` port) into ``TrainingExample`` lines in the job's
  work directory and counts the examples without ``output_text``;
- :func:`student_checkpoint` finds the local checkpoint of the student, if one is configured;
- :func:`resolve_teacher` finds the teacher that labels the unlabeled examples — a local
  checkpoint from ``DISTILLERY_LOCAL_TEACHERS`` or a model of the local Model Registry (resource
  name or display name) — or fails the job (FAILED_PRECONDITION): it never invents labels;
- :func:`training_config` maps the job's parameters to the trainer's ``TrainingConfig``, with the
  batch size of :func:`batch_size`.

Every rule comes from :mod:`distillery.facts`; none from :mod:`distillery.policy`, so a policy bug
shows up locally as the service would show it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillery import facts
from distillery.core.errors import DistilleryError, ObjectNotFoundError
from distillery.facts import LONG_CONTEXT_LENGTH
from distillery.local.emulator._config import TrainerOptions
from distillery.local.emulator._model import EmulatedJob
from distillery.local.emulator._registry import ArtifactCache, ModelRegistry
from distillery.local.emulator._runner import (
    JobFailedError,
    RunContext,
    TrainingInputs,
    split_gcs_uri,
)


def batch_size(
    accelerator_type: str,
    student: str,
    long_context_students: tuple[str, ...],
    *,
    max_context_length: str = "",
) -> int:
    """The documented batch size: 8k-context students by the region tuning runs in for
    ``accelerator_type`` (GPU: us-central1, 8; TPU: europe-west4, 24); 32k-context students 8 in
    both (see :func:`distillery.facts.batch_size`).

    The template's ``max_context_length`` (``"8k"`` or ``"32k"``) says which a student tunes as;
    ``""`` (its default) leaves it to the student: 32k-context if in ``long_context_students``.
    """
    # An accelerator the request validation let through is always known; the default one's
    # region keeps this total for a caller that passes anything else.
    region = facts.TUNING_REGIONS.get(
        accelerator_type, facts.TUNING_REGIONS[facts.DEFAULT_ACCELERATOR]
    )
    if max_context_length:
        long_context = max_context_length == LONG_CONTEXT_LENGTH
    else:
        long_context = student in long_context_students
    return facts.batch_size(region, long_context=long_context)


def training_config(
    parameters: Mapping[str, Any],
    *,
    has_evaluation: bool,
    long_context_students: tuple[str, ...] = (),
    student_checkpoint: str | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """The ``TrainingConfig`` keyword arguments for a job's (normalised) ``parameters``.

    ``train_steps`` and ``learning_rate_multiplier`` pass through; the batch size follows
    :func:`batch_size` (with the job's ``max_context_length``). Evaluation, early stopping and
    checkpoint selection apply only with eval data: then ``evaluation_interval`` and
    ``enable_early_stopping`` pass through, and ``enable_checkpoint_selection`` ``"true"`` turns
    selection on, ``"false"`` off, and ``"default"`` on (the service's default picks the best
    checkpoint when it can evaluate). Without eval data all three are off.
    """
    config: dict[str, Any] = {
        "train_steps": int(parameters["train_steps"]),
        "batch_size": batch_size(
            str(parameters.get("accelerator_type", facts.DEFAULT_ACCELERATOR)),
            str(parameters.get("student_model_reference", "")),
            long_context_students,
            max_context_length=str(parameters.get("max_context_length", "")),
        ),
        "learning_rate_multiplier": float(parameters["learning_rate_multiplier"]),
        "student_checkpoint": student_checkpoint,
    }
    if has_evaluation:
        selection = str(
            parameters.get("enable_checkpoint_selection", facts.DEFAULT_CHECKPOINT_SELECTION)
        ).lower()
        config["evaluation_interval"] = int(
            parameters.get("evaluation_interval", facts.DEFAULT_EVALUATION_INTERVAL)
        )
        config["enable_early_stopping"] = bool(
            parameters.get("enable_early_stopping", facts.DEFAULT_ENABLE_EARLY_STOPPING)
        )
        config["enable_checkpoint_selection"] = selection in ("default", "true")
    else:
        config["evaluation_interval"] = None
        config["enable_early_stopping"] = False
        config["enable_checkpoint_selection"] = False
    if num_threads is not None:
        config["num_threads"] = num_threads
    return config


def download_examples(context: RunContext, uri: str, path: Path) -> int:
    """Stream the JSONL object at ``uri`` into ``path`` as TrainingExample lines; returns how
    many examples have no ``output_text`` (the dataset runner has already checked the lines).

    Raises:
        JobFailedError: the object could not be read (it changed since it was counted).
        JobCancelledError: cancel was asked while it streamed.
    """
    bucket, name = split_gcs_uri(uri)
    unlabeled = 0
    try:
        with (
            context.object_store.open_read(bucket, name) as reader,
            path.open("w", encoding="utf-8") as out,
        ):
            for _, raw in context.lines(reader):
                data = json.loads(raw)
                output_text = data.get("output_text")
                example: dict[str, Any] = {"input_text": data["input_text"]}
                if isinstance(output_text, str):
                    example["output_text"] = output_text
                else:
                    unlabeled += 1
                if isinstance(data.get("rationale"), str):
                    example["rationale"] = data["rationale"]
                out.write(json.dumps(example, ensure_ascii=False) + "\n")
    except (DistilleryError, ValueError, KeyError, TypeError) as exc:
        code = "NOT_FOUND" if isinstance(exc, ObjectNotFoundError) else "FAILED_PRECONDITION"
        raise JobFailedError(code, f"{uri} could not be read for training: {exc}") from exc
    return unlabeled


def student_checkpoint(options: TrainerOptions, reference: str) -> Path | None:
    """The local checkpoint of student ``reference``, or None for the built-in architecture.

    Raises:
        JobFailedError: FAILED_PRECONDITION, the configured checkpoint is not a directory.
    """
    checkpoint = options.local_models.students.get(reference)
    if checkpoint is not None and not checkpoint.is_dir():
        raise JobFailedError(
            "FAILED_PRECONDITION",
            f"the local checkpoint {checkpoint} configured for student {reference!r} "
            "(DISTILLERY_LOCAL_STUDENTS) is not a directory",
        )
    return checkpoint


def resolve_teacher(
    options: TrainerOptions,
    registry: ModelRegistry,
    cache: ArtifactCache,
    job: EmulatedJob,
    reference: str,
    inputs: TrainingInputs,
    unlabeled: int,
) -> Path:
    """The local directory of the teacher that labels the ``unlabeled`` examples.

    Raises:
        JobFailedError: FAILED_PRECONDITION, no teacher is available (the job never invents
            labels) or its artifacts cannot be read.
    """
    checkpoint = options.local_models.teachers.get(reference)
    if checkpoint is not None:
        if not checkpoint.is_dir():
            raise JobFailedError(
                "FAILED_PRECONDITION",
                f"the local checkpoint {checkpoint} configured for teacher {reference!r} "
                "(DISTILLERY_LOCAL_TEACHERS) is not a directory",
            )
        return checkpoint
    model = registry.resolve(reference, job.project)
    if model is None:
        raise JobFailedError(
            "FAILED_PRECONDITION",
            f"no teacher is available to label the dataset {inputs.dataset.uri}: {unlabeled} "
            f"of its {inputs.dataset.examples} examples have no output_text, and teacher "
            f"{reference!r} is neither a local checkpoint (DISTILLERY_LOCAL_TEACHERS="
            f"'{reference}=/path/to/checkpoint') nor a model of the local Model Registry "
            "(a display name or projects/P/locations/L/models/ID); the local emulator never "
            "invents labels",
        )
    try:
        return cache.local_dir(model)
    except (DistilleryError, OSError) as exc:
        raise JobFailedError(
            "FAILED_PRECONDITION",
            f"the artifacts of teacher model {model.name} could not be read from "
            f"{model.artifact_uri}: {exc}",
        ) from exc
