"""What runs an emulated pipeline job: the runner interface, the trainer hook, the default runner.

A :class:`JobRunner` is called once per job, on a worker thread, after the job went RUNNING; what
it returns (or raises) decides the terminal state. The default :class:`DatasetRunner` does the
work that needs no trainer — reads the dataset and eval set, counts examples, writes the job
manifest — then hands over to a :class:`Trainer` if one is installed. With none, the job FAILS
saying so: the emulator never invents a success or metrics.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.core.errors import DistilleryError, ObjectNotFoundError, RetryableError
from distillery.core.ports import ObjectStore
from distillery.local.emulator._model import FAILED, SUCCEEDED, EmulatedJob, rfc3339
from distillery.local.emulator._status import rpc_status

logger = logging.getLogger(__name__)

#: The manifest the default runner writes under ``<gcsOutputDirectory>/<job id>/``.
MANIFEST_NAME = "job.json"
MANIFEST_KIND = "distillery.local.emulator/job-manifest"
MANIFEST_VERSION = 1
NO_TRAINER_MESSAGE = "no trainer is installed in the local Vertex AI emulator"


class JobCancelledError(Exception):
    """Raised inside a runner by :meth:`RunContext.raise_if_cancelled` once cancel was asked."""


class JobFailedError(Exception):
    """Raised inside a trainer's steps: the job cannot go on and FAILS with ``code`` (a canonical
    code name such as ``FAILED_PRECONDITION``) and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunContext:
    """What a runner gets besides the job: storage and the cancellation signal."""

    object_store: ObjectStore
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    #: Receives the job's current ``jobDetail`` while it runs (see :meth:`report_detail`).
    on_detail: Callable[[Mapping[str, Any]], None] | None = None

    @property
    def cancelled(self) -> bool:
        """Whether ``pipelineJobs.cancel`` was called for this job."""
        return self.cancel_requested.is_set()

    def report_detail(self, job_detail: Mapping[str, Any]) -> None:
        """Show ``job_detail`` as the running job's ``jobDetail`` (live progress)."""
        if self.on_detail is not None:
            self.on_detail(job_detail)

    def raise_if_cancelled(self) -> None:
        """Stop the run at a safe point once cancel was asked.

        Raises:
            JobCancelledError: cancel was requested; the job ends CANCELLED.
        """
        if self.cancelled:
            raise JobCancelledError("the pipeline job was cancelled")

    def lines(self, reader: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
        """The numbered (from 1) non-blank lines of a JSON Lines ``reader``.

        A large object is read for long: every thousandth line is a safe point to stop at.

        Raises:
            JobCancelledError: cancel was requested while it read.
        """
        for number, raw in enumerate(reader, start=1):
            if not raw.strip():
                continue
            if number % 1000 == 0:
                self.raise_if_cancelled()
            yield number, raw


@dataclass(frozen=True)
class RunResult:
    """How a run ended: SUCCEEDED, or FAILED with a ``google.rpc.Status`` error.

    ``job_detail`` (optional) becomes the resource's ``jobDetail`` (e.g. task outputs a trainer
    produced); the emulator adds nothing of its own.
    """

    state: str
    error: Mapping[str, Any] | None = None
    job_detail: Mapping[str, Any] | None = None

    @classmethod
    def succeeded(cls, job_detail: Mapping[str, Any] | None = None) -> RunResult:
        """A successful run."""
        return cls(SUCCEEDED, None, job_detail)

    @classmethod
    def failed(
        cls, code: str, message: str, job_detail: Mapping[str, Any] | None = None
    ) -> RunResult:
        """A failed run; ``code`` is a canonical code name such as ``FAILED_PRECONDITION``."""
        return cls(FAILED, rpc_status(code, message), job_detail)


class JobRunner(ABC):
    """Runs one pipeline job to its end (called on a worker thread, never concurrently per job)."""

    @abstractmethod
    def run(self, job: EmulatedJob, context: RunContext) -> RunResult:
        """Run ``job``; check ``context`` for cancellation between steps.

        Raises:
            JobCancelledError: the run stopped because cancel was asked (job → CANCELLED).
            Exception: anything else ends the job FAILED with the exception's text.
        """


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset object a job reads, as the default runner found it."""

    uri: str
    generation: int
    size: int
    examples: int

    def as_json(self) -> dict[str, Any]:
        """The manifest form."""
        return {
            "uri": self.uri,
            "generation": str(self.generation),
            "sizeBytes": self.size,
            "examples": self.examples,
        }


@dataclass(frozen=True)
class TrainingInputs:
    """What the default runner prepared for a trainer."""

    dataset: DatasetSummary
    evaluation: DatasetSummary | None
    #: ``gs://.../<job id>/``: the trainer writes its outputs (model, metrics) under here.
    output_directory: str
    manifest_uri: str


class Trainer(ABC):
    """The pluggable training step of the default runner (the next issue installs one)."""

    #: Named in the manifest.
    name: str = "trainer"

    @abstractmethod
    def train(self, job: EmulatedJob, inputs: TrainingInputs, context: RunContext) -> RunResult:
        """Train the student for ``job`` from ``inputs``.

        Raises:
            JobCancelledError: the run stopped because cancel was asked.
            Exception: anything else ends the job FAILED with the exception's text.
        """


class _DataError(Exception):
    """A dataset the job cannot use; the job FAILS with ``code`` and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/name`` → ``(bucket, name)``.

    Raises:
        ValueError: ``uri`` is not a ``gs://`` URI.
    """
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[len("gs://") :].partition("/")
    return bucket, name


class DatasetRunner(JobRunner):
    """The default runner: read and count the data, write the manifest, then train (if it can)."""

    def __init__(self, trainer: Trainer | None = None) -> None:
        self.trainer = trainer

    def run(self, job: EmulatedJob, context: RunContext) -> RunResult:
        try:
            dataset = self._summarise(context, "dataset_uri", job.parameters["dataset_uri"])
            context.raise_if_cancelled()
            evaluation = None
            if job.parameters.get("evaluation_data_uri"):  # "" (the default): no eval data
                evaluation = self._summarise(
                    context, "evaluation_data_uri", job.parameters["evaluation_data_uri"]
                )
                context.raise_if_cancelled()
        except _DataError as exc:
            return RunResult.failed(exc.code, str(exc))
        inputs = self._write_manifest(job, context, dataset, evaluation)
        context.raise_if_cancelled()
        if self.trainer is None:
            return RunResult.failed(
                "FAILED_PRECONDITION",
                f"{NO_TRAINER_MESSAGE}: the data was read ({dataset.examples} training examples"
                + (f", {evaluation.examples} evaluation examples" if evaluation else "")
                + f") and the manifest written to {inputs.manifest_uri}, but nothing can train "
                "the student; install a trainer to run distillation jobs locally",
            )
        return self.trainer.train(job, inputs, context)

    @staticmethod
    def _summarise(context: RunContext, parameter: str, uri: str) -> DatasetSummary:
        """Stream the JSON Lines object at ``uri`` and count its examples.

        Raises:
            _DataError: the object is missing, unreadable, or a line is not a JSON object with
                a string ``input_text``.
        """
        bucket, name = split_gcs_uri(uri)
        store = context.object_store
        try:
            info = store.stat(bucket, name)
            examples = 0
            with store.open_read(bucket, name, info.generation) as reader:
                for number, raw in context.lines(reader):
                    try:
                        example = json.loads(raw)
                    except ValueError:
                        example = None
                    if not isinstance(example, dict) or not isinstance(
                        example.get("input_text"), str
                    ):
                        raise _DataError(
                            "INVALID_ARGUMENT",
                            f"{parameter} {uri}: line {number} is not a JSON object with a "
                            "string input_text",
                        )
                    examples += 1
        except ObjectNotFoundError:
            raise _DataError("NOT_FOUND", f"{parameter} {uri} does not exist") from None
        except RetryableError as exc:
            raise _DataError("UNAVAILABLE", f"{parameter} {uri} could not be read: {exc}") from exc
        except DistilleryError as exc:
            raise _DataError("FAILED_PRECONDITION", f"{parameter} {uri}: {exc}") from exc
        if examples == 0:
            raise _DataError("INVALID_ARGUMENT", f"{parameter} {uri} holds no examples")
        return DatasetSummary(uri, info.generation, info.size, examples)

    def _write_manifest(
        self,
        job: EmulatedJob,
        context: RunContext,
        dataset: DatasetSummary,
        evaluation: DatasetSummary | None,
    ) -> TrainingInputs:
        """Write ``<job output directory>/job.json`` (see :func:`manifest`)."""
        output = job.job_output_directory
        bucket, prefix = split_gcs_uri(output)
        manifest_uri = f"{output}{MANIFEST_NAME}"
        inputs = TrainingInputs(dataset, evaluation, output, manifest_uri)
        body = manifest(job, inputs, self.trainer.name if self.trainer else None)
        context.object_store.write_bytes(
            bucket,
            f"{prefix}{MANIFEST_NAME}",
            json.dumps(body, indent=2, sort_keys=True).encode(),
            content_type="application/json",
        )
        logger.info("wrote the job manifest", extra={"manifest": manifest_uri})
        return inputs


def manifest(job: EmulatedJob, inputs: TrainingInputs, trainer: str | None) -> dict[str, Any]:
    """The job manifest: what the job was asked to do and what data it found.

    ``{"kind": "distillery.local.emulator/job-manifest", "version": 1, "pipelineJob": NAME,
    "jobId", "displayName", "templateUri", "createTime", "parameters": {...normalised},
    "dataset": {"uri", "generation", "sizeBytes", "examples"}, "evaluationDataset": {...} | null,
    "outputDirectory": "gs://.../<job id>/", "trainer": NAME | null}``
    """
    return {
        "kind": MANIFEST_KIND,
        "version": MANIFEST_VERSION,
        "pipelineJob": job.name,
        "jobId": job.job_id,
        "displayName": job.display_name,
        "templateUri": job.template_uri,
        "createTime": rfc3339(job.create_time),
        "parameters": dict(job.parameters),
        "dataset": inputs.dataset.as_json(),
        "evaluationDataset": inputs.evaluation.as_json() if inputs.evaluation else None,
        "outputDirectory": inputs.output_directory,
        "trainer": trainer,
    }
