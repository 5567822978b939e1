"""What an emulated batch prediction job does: read the request lines, have the local teacher
answer them, write the documented output.

The local teacher
-----------------
Google's Gemini models are not available offline. The local teacher of a batch job is a model
of the local registry, found as the pipeline jobs find theirs (see
:func:`~distillery.local.emulator._preparation.resolve_teacher`):

- for ``publishers/google/models/ID``: the local checkpoint ``DISTILLERY_LOCAL_TEACHERS`` maps
  ``ID`` (or the full ``publishers/google/models/ID``) to, else the newest model of the job's
  project in the emulator's Model Registry whose display name is ``ID``;
- for ``projects/P/locations/L/models/M`` (a tuned model): that registered model.

It is loaded with the trainer module's ``load_predictor`` and decodes greedily. What it can do:
answer each request's conversation with the label it was trained to give, and — when it was
trained on the explain task and the request carries a ``systemInstruction`` (the form in which
the product asks for a rationale) — give a rationale too, answered as
``"Rationale: R\\nAnswer: L"`` (:func:`step_by_step_text`). What it cannot do: follow the
instruction's words (a small seq2seq model answers the conversation, not the instruction, so
the instruction only switches the rationale on), sample (``temperature``, ``topP``, ``topK`` and
the seed are accepted only), block content, or read anything but text parts. With no teacher to
be found, the job FAILS with FAILED_PRECONDITION and says how to configure one: the emulator
never invents answers.

Lines and output
----------------
Each input line is ``{"request": GenerateContentRequest, ...}``; the other keys of the line are
copied to its output line. The output is one file, ``predictions.jsonl``, in the job's
``outputInfo.gcsOutputDirectory`` (``<outputUriPrefix>/prediction-model-<create time>``), one
line per input line::

    {"request": {...}, "status": "", "processed_time": "...Z",
     "response": {"candidates": [{"content": {"role": "model", "parts": [{"text": "..."}]},
                                  "finishReason": "STOP" | "MAX_TOKENS"}],
                  "usageMetadata": {"promptTokenCount", "candidatesTokenCount",
                                    "totalTokenCount"},
                  "modelVersion": "gemini-2.5-pro"}}

A line that cannot be answered (not JSON, no ``request``, a request without ``contents``, no text
to answer, a last turn that is not the user's, a field the request does not define) has no
``response`` and a non-empty ``status``: the google.rpc error body, as JSON. Google's docs say
only that a failed row's ``status`` holds the error, so a caller must treat any non-empty status
as a failed line, not parse it. The service promises no order of the output lines: match them by
their ``request``. Tests can have chosen lines fail as the service fails a row
(:class:`~distillery.local.emulator._config.BatchFaults`: ``INTERNAL``, by line number or by a
marker in the conversation). A cancelled job writes the lines it answered before it stopped
(the service exports completed rows of a terminated job) and counts the rest as incomplete.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from distillery.core.errors import DistilleryError, ObjectNotFoundError, RetryableError
from distillery.core.ports import ObjectStore
from distillery.facts import GEMINI_BATCH_OUTPUT_DIRECTORY_PREFIX, GEMINI_BATCH_PREDICTIONS_FILE
from distillery.local.emulator._batch import PUBLISHER_PREFIX, BatchRequest
from distillery.local.emulator._config import (
    LOCAL_TEACHERS_VARIABLE,
    BatchFaults,
    TrainerOptions,
)
from distillery.local.emulator._contents import (
    USER,
    ContentError,
    count_tokens,
    cut_tokens,
    parse_system_instruction,
    parse_turns,
    render_prompt,
)
from distillery.local.emulator._generate import _CONFIG_FIELDS, _REQUEST_FIELDS, _count, _known
from distillery.local.emulator._model import now, rfc3339
from distillery.local.emulator._registry import ArtifactCache, ModelRegistry
from distillery.local.emulator._runner import (
    NO_TRAINER_MESSAGE,
    JobFailedError,
    RunContext,
    split_gcs_uri,
)
from distillery.local.emulator._status import ApiError

logger = logging.getLogger(__name__)

#: Lines answered between two checks for cancel (and two progress reports).
CHUNK_LINES = 32
RATIONALE_PREFIX = "Rationale: "
ANSWER_PREFIX = "Answer: "
#: Request fields a Gemini batch line may carry that the local teacher cannot honour.
_NOT_EMULATED = ("cachedContent", "tools", "toolConfig", "modelArmorConfig")


def step_by_step_text(rationale: str, label: str) -> str:
    """The local teacher's answer when asked for a rationale: the rationale, then the answer."""
    return f"{RATIONALE_PREFIX}{rationale}\n{ANSWER_PREFIX}{label}"


class Teacher(Protocol):
    """What answers a batch job's requests (the trainer's ``Predictor``)."""

    def predict(self, prompts: Sequence[str]) -> list[str]:
        """One answer per prompt."""


#: Loads a predictor from a local model directory (the trainer's ``load_predictor``).
TeacherLoader = Callable[[Path], Teacher]


class TeacherResolver(Protocol):
    """Finds the local teacher that stands in for a batch job's ``model``."""

    def teacher(self, project: str, model: str) -> Teacher:
        """The teacher for ``model`` in ``project``.

        Raises:
            JobFailedError: FAILED_PRECONDITION, no local teacher stands in for ``model``.
        """


class LocalTeachers:
    """The local registry's teachers (see the module docs), loaded once per directory."""

    def __init__(
        self,
        options: TrainerOptions | None,
        registry: ModelRegistry,
        cache: ArtifactCache | None,
        loader: TeacherLoader | None,
    ) -> None:
        """``options``, ``cache`` and ``loader`` are None when no trainer is installed."""
        self._options = options
        self._registry = registry
        self._cache = cache
        self._loader = loader
        self._lock = threading.Lock()
        self._loaded: dict[Path, Teacher] = {}

    def teacher(self, project: str, model: str) -> Teacher:
        if self._options is None or self._loader is None or self._cache is None:
            raise JobFailedError(
                "FAILED_PRECONDITION",
                f"{NO_TRAINER_MESSAGE}: no local teacher can answer {model}; start the emulator "
                "with a trainer to run batch prediction jobs locally",
            )
        directory = self._directory(project, model)
        with self._lock:
            if directory not in self._loaded:
                try:
                    self._loaded[directory] = self._loader(directory)
                except Exception as exc:
                    raise JobFailedError(
                        "FAILED_PRECONDITION",
                        f"the local teacher for {model} in {directory} cannot be loaded: {exc}",
                    ) from exc
            return self._loaded[directory]

    def _directory(self, project: str, model: str) -> Path:
        assert self._options is not None and self._cache is not None
        model_id = model.removeprefix(PUBLISHER_PREFIX)
        teachers = self._options.local_models.teachers
        checkpoint = teachers.get(model_id) or teachers.get(model)
        if checkpoint is not None:
            if not checkpoint.is_dir():
                raise JobFailedError(
                    "FAILED_PRECONDITION",
                    f"the local checkpoint {checkpoint} configured for {model_id!r} "
                    f"({LOCAL_TEACHERS_VARIABLE}) is not a directory",
                )
            return checkpoint
        registered = self._registry.resolve(model_id, project)
        if registered is None:
            raise JobFailedError(
                "FAILED_PRECONDITION",
                f"no local teacher stands in for {model}: it is neither a local checkpoint "
                f"({LOCAL_TEACHERS_VARIABLE}='{model_id}=/path/to/checkpoint') nor a model of "
                f"the local Model Registry (named {model_id!r}); the local emulator never "
                "invents answers",
            )
        try:
            return self._cache.local_dir(registered)
        except (DistilleryError, OSError) as exc:
            raise JobFailedError(
                "FAILED_PRECONDITION",
                f"the artifacts of teacher model {registered.name} could not be read from "
                f"{registered.artifact_uri}: {exc}",
            ) from exc


@dataclass(frozen=True)
class BatchJobRun:
    """What a runner is told of one batch prediction job (immutable)."""

    name: str
    job_id: str
    project: str
    location: str
    request: BatchRequest
    create_time: datetime

    @property
    def output_directory(self) -> str:
        """``outputInfo.gcsOutputDirectory``: a directory of its own below the prefix."""
        stamp = self.create_time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        prefix = self.request.output_uri_prefix
        return f"{prefix}/{GEMINI_BATCH_OUTPUT_DIRECTORY_PREFIX}{stamp}"


@dataclass
class BatchProgress:
    """``completionStats`` as they stand."""

    successful: int = 0
    failed: int = 0
    incomplete: int = 0

    def stats(self) -> dict[str, str]:
        """The REST ``completionStats`` (int64 fields are JSON strings)."""
        return {
            "successfulCount": str(self.successful),
            "failedCount": str(self.failed),
            "incompleteCount": str(self.incomplete),
        }


@dataclass(frozen=True)
class BatchResult:
    """How a run ended: where its output is, its counts, whether it stopped on cancel."""

    output_directory: str
    progress: BatchProgress
    cancelled: bool = False


@dataclass
class _Line:
    """One input line: what is copied to the output, and what the teacher is asked."""

    data: dict[str, Any]
    prompt: str = ""
    explain: bool = False
    max_tokens: int | None = None
    stops: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    error: ApiError | None = None


def parse_line(raw: bytes, number: int) -> _Line:
    """The request of input line ``number``; a line it cannot answer carries its ``error``."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return _Line({}, error=ApiError("INVALID_ARGUMENT", f"line {number} is not JSON: {exc}"))
    if not isinstance(data, dict):
        return _Line({}, error=ApiError("INVALID_ARGUMENT", f"line {number} is not an object"))
    line = _Line(data)
    try:
        request = data.get("request")
        if not isinstance(request, Mapping):
            raise ApiError("INVALID_ARGUMENT", 'The line has no "request" object.')
        fields = _known(request, _REQUEST_FIELDS, "request")
        for name in _NOT_EMULATED:
            if fields.get(name):
                raise ApiError("UNIMPLEMENTED", f"The local teacher does not emulate {name}.")
        if fields.get("contents") in (None, []):
            raise ApiError("INVALID_ARGUMENT", "contents is required.")
        try:
            turns = parse_turns(fields.get("contents"))
            instruction = parse_system_instruction(fields)
        except ContentError as exc:
            raise ApiError("INVALID_ARGUMENT", f"{exc.field}: {exc.problem}") from None
        if turns[-1].role != USER:
            raise ApiError("INVALID_ARGUMENT", 'The last content must come from the "user" role.')
        if not any(turn.text.strip() for turn in turns):
            raise ApiError("INVALID_ARGUMENT", "The request has no text to answer.")
        config = _known(fields.get("generationConfig") or {}, _CONFIG_FIELDS, "generation_config")
        candidates = _count(config, "candidateCount")
        if candidates is not None and candidates != 1:
            raise ApiError("UNIMPLEMENTED", "The local teacher answers one candidate.")
        line.max_tokens = _count(config, "maxOutputTokens")
        if line.max_tokens is not None and line.max_tokens < 1:
            raise ApiError("INVALID_ARGUMENT", "maxOutputTokens must be at least 1.")
        stops = config.get("stopSequences") or []
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise ApiError("INVALID_ARGUMENT", "stopSequences must be non-empty strings.")
        line.stops = list(stops)
        # The teacher reads the conversation; the instruction is billed, and asks for the
        # rationale (see the module docs).
        line.prompt = render_prompt(None, turns)
        line.explain = instruction is not None
        line.prompt_tokens = count_tokens(render_prompt(instruction, turns))
    except ApiError as exc:
        line.error = exc
    return line


def _finish_text(line: _Line, text: str) -> tuple[str, str]:
    """``text`` cut by the line's stop sequences and token limit; its finish reason."""
    for stop in line.stops:
        if stop in text:
            text = text[: text.index(stop)]
    if line.max_tokens is not None and count_tokens(text) > line.max_tokens:
        return cut_tokens(text, line.max_tokens), "MAX_TOKENS"
    return text, "STOP"


def _answered(line: _Line, text: str, model_version: str) -> dict[str, Any]:
    text, finish = _finish_text(line, text)
    answer_tokens = count_tokens(text)
    response = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
        ],
        "usageMetadata": {
            "promptTokenCount": line.prompt_tokens,
            "candidatesTokenCount": answer_tokens,
            "totalTokenCount": line.prompt_tokens + answer_tokens,
        },
        "modelVersion": model_version,
    }
    return {**line.data, "status": "", "processed_time": rfc3339(now()), "response": response}


def _failed(line: _Line) -> dict[str, Any]:
    assert line.error is not None
    status = json.dumps(line.error.body(), ensure_ascii=False)
    return {**line.data, "status": status, "processed_time": rfc3339(now())}


def _injected(line: _Line, number: int, faults: BatchFaults) -> _Line:
    """``line``, failed as the service fails a row when ``faults`` choose it (a line that
    fails by itself keeps its own error)."""
    if line.error is None and faults.fails(number, line.prompt):
        line.error = ApiError("INTERNAL", faults.reason(number))
    return line


class BatchRunner:
    """Runs a batch job with the teacher its :class:`TeacherResolver` finds."""

    def __init__(self, teachers: TeacherResolver, faults: BatchFaults | None = None) -> None:
        """``faults``: the request lines to fail on purpose (none by default)."""
        self._teachers = teachers
        self._faults = faults or BatchFaults()

    def run(
        self,
        job: BatchJobRun,
        context: RunContext,
        on_progress: Callable[[BatchProgress], None] = lambda _: None,
    ) -> BatchResult:
        """Answer every line of the job's input and write its output.

        Raises:
            JobFailedError: the job cannot run: no teacher (FAILED_PRECONDITION), an input that
                does not exist (NOT_FOUND) or holds no line (INVALID_ARGUMENT), storage that
                cannot be read or written (UNAVAILABLE / FAILED_PRECONDITION).
        """
        teacher = self._teachers.teacher(job.project, job.request.model)
        lines = self._read(job, context.object_store, self._faults)
        model_version = job.request.publisher_model_id or job.request.model
        progress = BatchProgress(incomplete=len(lines))
        out: list[dict[str, Any]] = []
        cancelled = False
        for start in range(0, len(lines), CHUNK_LINES):
            if context.cancelled:
                cancelled = True
                break
            chunk = lines[start : start + CHUNK_LINES]
            out.extend(self._answer(teacher, chunk, model_version))
            progress.failed += sum(line.error is not None for line in chunk)
            progress.successful += sum(line.error is None for line in chunk)
            progress.incomplete -= len(chunk)
            on_progress(BatchProgress(progress.successful, progress.failed, progress.incomplete))
        self._write(job, context.object_store, out)
        logger.info(
            "batch prediction job answered",
            extra={
                "batch_prediction_job": job.name,
                "successful": progress.successful,
                "failed": progress.failed,
                "incomplete": progress.incomplete,
            },
        )
        return BatchResult(job.output_directory, progress, cancelled)

    @staticmethod
    def _answer(
        teacher: Teacher, chunk: Sequence[_Line], model_version: str
    ) -> list[dict[str, Any]]:
        asked = [line for line in chunk if line.error is None]
        labels = teacher.predict([line.prompt for line in asked]) if asked else []
        explained = [line for line in asked if line.explain]
        rationales: dict[int, str] = {}
        if explained and getattr(teacher, "can_explain", False):
            texts = teacher.explain([line.prompt for line in explained])  # type: ignore[attr-defined]
            rationales = {id(line): str(text) for line, text in zip(explained, texts, strict=True)}
        answers = {id(line): str(label) for line, label in zip(asked, labels, strict=True)}
        out = []
        for line in chunk:
            if line.error is not None:
                out.append(_failed(line))
                continue
            label = answers[id(line)]
            text = (
                step_by_step_text(rationales[id(line)], label) if id(line) in rationales else label
            )
            out.append(_answered(line, text, model_version))
        return out

    @staticmethod
    def _read(job: BatchJobRun, store: ObjectStore, faults: BatchFaults) -> list[_Line]:
        lines: list[_Line] = []
        for uri in job.request.input_uris:
            bucket, name = split_gcs_uri(uri)
            try:
                with store.open_read(bucket, name) as reader:
                    for number, raw in enumerate(reader, start=1):
                        if raw.strip():
                            lines.append(_injected(parse_line(raw, number), number, faults))
            except ObjectNotFoundError:
                raise JobFailedError("NOT_FOUND", f"the input {uri} does not exist") from None
            except RetryableError as exc:
                raise JobFailedError(
                    "UNAVAILABLE", f"the input {uri} could not be read: {exc}"
                ) from exc
            except DistilleryError as exc:
                raise JobFailedError("FAILED_PRECONDITION", f"the input {uri}: {exc}") from exc
        if not lines:
            raise JobFailedError(
                "INVALID_ARGUMENT",
                f"the input {', '.join(job.request.input_uris)} holds no request line",
            )
        return lines

    @staticmethod
    def _write(job: BatchJobRun, store: ObjectStore, out: Sequence[Mapping[str, Any]]) -> None:
        bucket, directory = split_gcs_uri(job.output_directory)
        payload = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in out)
        try:
            store.write_bytes(
                bucket,
                f"{directory}/{GEMINI_BATCH_PREDICTIONS_FILE}",
                payload.encode(),
                content_type="application/jsonl",
            )
        except RetryableError as exc:
            raise JobFailedError("UNAVAILABLE", f"the output could not be written: {exc}") from exc
        except DistilleryError as exc:
            raise JobFailedError(
                "FAILED_PRECONDITION", f"the output could not be written: {exc}"
            ) from exc
