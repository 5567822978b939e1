"""The dataset service: validate what lands under ``datasets/`` and request a launch once.

For a finalized object generation it:

1. classifies the name (training set, eval set, golden set, config sidecar; anything else is
   ignored, which includes everything this function writes, since it never writes under
   ``datasets/``);
2. streams and validates that exact generation (a training set also validates its eval set and
   config sidecar, found by the naming conventions, and checks train/eval overlap);
3. writes the report as JSON under ``reports/`` and its summary to Firestore ``datasets/{id}``;
4. for a valid training set, copies the validated bytes to an immutable, content-addressed path
   under ``validated/`` and publishes one :class:`~distillery.core.models.LaunchRequest`.

The backend a training set is validated for is its config sidecar's ``backend``, else the
``DISTILLERY_BACKEND`` setting. For ``pipeline`` the copy is the upload itself, byte for byte. For
``gemini`` (supervised tuning) the copy is the converted ``contents`` file that
:func:`~distillery.validation.validated_copy` yields while it validates: it is held in memory (at
most the base model's documented JSONL file limit, past which the dataset is invalid and nothing
more is kept) and written once, only when absent, under the copy's own SHA-256; the eval set
likewise. The record then carries ``backend``, the ``dataset_tokens`` the plan prices and, for
``gemini``, ``tuning_mode`` and ``labeling`` (``unlabeled``: a supervised job's teacher labels
the prompts-only copy before tuning; ``labeled``: the copy keeps the answers).

Exactly once: the launch is claimed in the dataset's record by a transaction before publishing and
marked published after; a redelivered event finds it published and publishes nothing. Should a
process die between publishing and marking, a redelivery after the claim expires publishes again
with the same ``request_id``, and the launcher's deterministic job id still makes that one job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from distillery.core.errors import ObjectNotFoundError, PreconditionFailedError, RetryableError
from distillery.core.events import CloudEventLike, parse_storage_event
from distillery.core.models import LaunchRequest, StorageObject
from distillery.core.ports import ObjectInfo
from distillery.core.runtime import Dependencies
from distillery.facts import DEFAULT_GEMINI_TUNING_MODE
from distillery.validation import (
    BACKENDS,
    DatasetKind,
    JsonlValidation,
    ValidationReport,
    add_overlap_findings,
    classify_object_name,
    validate_config,
    validate_jsonl,
    validated_copy,
)

logger = logging.getLogger(__name__)

#: A config sidecar larger than this is not a config file.
CONFIG_MAX_BYTES = 64 << 10

#: The backend of a dataset whose sidecar and settings name none (the seed's, until the setting
#: says otherwise).
DEFAULT_BACKEND = "pipeline"
#: The content type of a converted (``gemini``) copy.
COPY_CONTENT_TYPE = "application/jsonl"


class Outcome(StrEnum):
    """What handling one storage event amounted to."""

    IGNORED = "ignored"
    SUPERSEDED = "superseded"
    INVALID = "invalid"
    RECORDED = "recorded"
    LAUNCH_REQUESTED = "launch_requested"
    ALREADY_LAUNCHED = "already_launched"


class LaunchState(StrEnum):
    """Where a dataset's launch request stands in its record."""

    NOT_APPLICABLE = "not_applicable"
    PENDING = "pending"
    CLAIMED = "claimed"
    PUBLISHED = "published"


def dataset_id(bucket: str, name: str, generation: int) -> str:
    """The deterministic record id of one object generation: readable, Firestore-safe, unique."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "object"
    digest = hashlib.sha256(f"{bucket}/{name}#{generation}".encode()).hexdigest()[:12]
    return f"{slug}-{generation}-{digest}"


def _basename(stem: str) -> str:
    return stem.rsplit("/", 1)[-1]


@dataclass
class _Copy:
    """A converted copy held in memory: its bytes and their SHA-256 (None: not kept, too large)."""

    data: bytes | None
    sha256: str


@dataclass
class _Validated:
    """The reports of one validation run and what a launch needs from it."""

    reports: list[ValidationReport]
    blocking: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_info: ObjectInfo | None = None
    eval_sha256: str | None = None
    config_info: ObjectInfo | None = None
    backend: str = DEFAULT_BACKEND
    #: The gemini job's tuning mode: ``distillation`` makes the training copy prompts only.
    tuning_mode: str = DEFAULT_GEMINI_TUNING_MODE
    #: The converted copies (``gemini`` only; a pipeline copy is the upload itself).
    copy: _Copy | None = None
    eval_copy: _Copy | None = None
    dataset_tokens: int | None = None

    @property
    def valid(self) -> bool:
        return not self.blocking and all(r.valid for r in self.reports)


def handle_storage_event(event: CloudEventLike, deps: Dependencies) -> Outcome:
    """Entry for ``validate_dataset``: parse the CloudEvent and handle the object.

    Raises:
        InvalidEventError: the event is not a storage finalized event with an object resource.
        RetryableError: a backing service failed; the event should be delivered again.
    """
    parsed = parse_storage_event(event)
    return handle_object(parsed.object, deps, event_id=parsed.id)


def handle_object(obj: StorageObject, deps: Dependencies, *, event_id: str = "") -> Outcome:
    """Validate one finalized object generation and, for a valid training set, request a launch.

    Raises:
        RetryableError: a backing service failed; handling it again is safe.
    """
    settings = deps.settings
    classified = classify_object_name(obj.name, settings.datasets_prefix)
    if classified is None:
        logger.info("ignoring gs://%s/%s: not a dataset file", obj.bucket, obj.name)
        return Outcome.IGNORED
    kind, stem = classified
    record_id = dataset_id(obj.bucket, obj.name, obj.generation)
    existing = deps.records.get(settings.datasets_collection, record_id)
    if existing is not None and existing.get("status") in ("valid", "invalid", "superseded"):
        # A redelivery: the verdict stands; only an unfinished launch is left to do.
        return _finish_launch(existing, record_id, deps, event_id)

    try:
        source = deps.objects.stat(obj.bucket, obj.name, obj.generation)
        validated = _validate(kind, stem, source, deps)
    except ObjectNotFoundError as exc:
        logger.warning("gs://%s/%s#%s is gone: %s", obj.bucket, obj.name, obj.generation, exc)
        deps.records.set(
            settings.datasets_collection,
            record_id,
            _base_record(record_id, obj, kind, stem, event_id, deps)
            | {"status": "superseded", "reason": f"{exc}; a newer upload replaces it"},
        )
        return Outcome.SUPERSEDED

    report_uri = _write_report(record_id, obj, validated, deps)
    record = _base_record(record_id, obj, kind, stem, event_id, deps) | {
        "status": "valid" if validated.valid else "invalid",
        "report_uri": report_uri,
        "blocking": validated.blocking,
        "reports": [_report_summary(r) for r in validated.reports],
        "launch": {"state": LaunchState.NOT_APPLICABLE.value},
    }
    if kind is DatasetKind.TRAINING:
        record["backend"] = validated.backend
        if validated.backend == "gemini":
            record["tuning_mode"] = validated.tuning_mode
            # What the launch policy decides labeling by: "unlabeled" (the teacher labels it),
            # "labeled" (the user's labels; the teacher explains them with rationales=teacher).
            record["labeling"] = validated.reports[0].labeling
        if validated.dataset_tokens is not None:
            record["dataset_tokens"] = validated.dataset_tokens
    if kind is DatasetKind.TRAINING and validated.valid:
        record |= _copy_validated(stem, source, validated, deps)
        record["launch"] = {"state": LaunchState.PENDING.value, "request_id": record_id}

    stored = deps.records.transact(
        settings.datasets_collection,
        record_id,
        lambda current: record if current is None or "launch" not in current else None,
    )
    assert stored is not None
    if not validated.valid:
        logger.info("dataset %s is invalid", obj.uri, extra={"dataset_id": record_id})
        return Outcome.INVALID
    return _finish_launch(stored, record_id, deps, event_id)


def _base_record(
    record_id: str,
    obj: StorageObject,
    kind: DatasetKind,
    stem: str,
    event_id: str,
    deps: Dependencies,
) -> dict[str, Any]:
    return {
        "id": record_id,
        "bucket": obj.bucket,
        "object": obj.name,
        "generation": obj.generation,
        "uri": obj.uri,
        "kind": kind.value,
        "name": stem,
        "event_id": event_id,
        "validated_at": deps.clock().isoformat(),
    }


def _validate(kind: DatasetKind, stem: str, source: ObjectInfo, deps: Dependencies) -> _Validated:
    settings = deps.settings
    cap = settings.max_findings_per_rule
    eval_name = f"{settings.datasets_prefix}{stem}.eval.jsonl"
    config_name = f"{settings.datasets_prefix}{stem}.config.json"

    if kind is DatasetKind.CONFIG:
        has_eval = deps.objects.find(source.bucket, eval_name) is not None
        config = _validate_config_object(source, has_eval, deps)
        return _Validated(reports=[config.report], overrides=config.overrides)

    if kind is DatasetKind.GOLDEN:
        # The golden set is answered by Distillery's own evaluation, whatever the backend.
        with deps.objects.open_read(source.bucket, source.name, source.generation) as reader:
            golden = validate_jsonl(reader, kind=kind, source=source.uri, max_findings_per_rule=cap)
        return _Validated(reports=[golden.report])

    # The eval set and the sidecar are looked up first: the sidecar may choose the backend the
    # training set is validated for. The reports keep their order: training, eval, config.
    eval_info = deps.objects.find(source.bucket, eval_name)
    config_info = deps.objects.find(source.bucket, config_name)
    config = None
    if config_info is not None:
        has_eval = kind is DatasetKind.EVAL or eval_info is not None
        config = _validate_config_object(config_info, has_eval, deps)
    overrides: dict[str, Any] = config.overrides if config is not None else {}
    result = _Validated(reports=[])
    result.backend, base_model = _backend_of(overrides, deps, result.blocking)
    # The sidecar's tuning_mode wins over the setting, as in the plan the launch resolves.
    result.tuning_mode = str(overrides.get("tuning_mode") or deps.settings.tuning_mode)

    main, result.copy = _validate_copy(source, kind, result, base_model, deps)
    result.reports.append(main.report)
    if kind is DatasetKind.EVAL:
        return result

    if eval_info is not None:
        evaluation, result.eval_copy = _validate_copy(
            eval_info, DatasetKind.EVAL, result, base_model, deps
        )
        add_overlap_findings(main, evaluation.input_digests, eval_source=eval_info.uri)
        result.reports.append(evaluation.report)
        result.eval_info = eval_info
        result.eval_sha256 = (
            result.eval_copy.sha256 if result.eval_copy is not None else evaluation.report.sha256
        )
        if not evaluation.report.valid:
            result.blocking.append(
                f"the eval set {eval_info.uri} is invalid: fix it, upload it, then upload "
                f"the training set again"
            )
    if config_info is not None and config is not None:
        result.reports.append(config.report)
        result.config_info = config_info
        result.overrides = config.overrides
        if not config.report.valid:
            result.blocking.append(f"the config sidecar {config_info.uri} is invalid")
    return result


def _backend_of(
    overrides: dict[str, Any], deps: Dependencies, blocking: list[str]
) -> tuple[str, str | None]:
    """The backend (and the ``gemini`` base model, None: the default) a dataset is validated for.

    The sidecar's ``backend`` wins over the setting. A name that is no backend is a blocking
    problem (the dataset is then validated as the default backend would validate it).
    """
    chosen = overrides.get("backend") or deps.settings.backend
    if chosen not in BACKENDS:
        blocking.append(f"backend {chosen!r} is unknown: expected one of {', '.join(BACKENDS)}")
        return DEFAULT_BACKEND, None
    base_model = overrides.get("base_model")
    return str(chosen), base_model if isinstance(base_model, str) and base_model else None


def _validate_copy(
    info: ObjectInfo,
    kind: DatasetKind,
    result: _Validated,
    base_model: str | None,
    deps: Dependencies,
) -> tuple[JsonlValidation, _Copy | None]:
    """Validate one JSONL object for ``result.backend``; for ``gemini`` also keep its copy.

    A training set's ``dataset_tokens`` is recorded in ``result``. An unknown base model is a
    blocking problem, and the file is then checked against the default base model's limits.
    """
    cap = deps.settings.max_findings_per_rule
    with deps.objects.open_read(info.bucket, info.name, info.generation) as reader:
        if result.backend != "gemini":
            return validate_jsonl(
                reader, kind=kind, source=info.uri, max_findings_per_rule=cap
            ), None
        try:
            copy = validated_copy(
                reader,
                backend="gemini",
                kind=kind,
                source=info.uri,
                base_model=base_model,
                max_findings_per_rule=cap,
                tuning_mode=result.tuning_mode,
            )
        except ValueError as exc:  # the base model is not one that supports supervised tuning
            if not any(str(exc) in problem for problem in result.blocking):
                result.blocking.append(f"the config's base_model cannot be tuned: {exc}")
            copy = validated_copy(
                reader,
                backend="gemini",
                kind=kind,
                source=info.uri,
                max_findings_per_rule=cap,
                tuning_mode=result.tuning_mode,
            )
        assert copy.model is not None
        limit = copy.model.max_dataset_bytes
        chunks: list[bytes] | None = []
        size = 0
        for line in copy:
            size += len(line)
            if chunks is not None and size > limit:
                chunks = None  # Over the file limit: the copy is invalid, so keep nothing more.
            elif chunks is not None:
                chunks.append(line)
        validation = copy.validation
    if kind is DatasetKind.TRAINING:
        result.dataset_tokens = copy.dataset_tokens
    data = b"".join(chunks) if chunks is not None else None
    return validation, _Copy(data=data, sha256=copy.sha256)


def _validate_config_object(info: ObjectInfo, has_eval: bool, deps: Dependencies) -> Any:
    try:
        data = deps.objects.read_bytes(
            info.bucket, info.name, info.generation, limit=CONFIG_MAX_BYTES
        )
    except ValueError:
        # Too large to be a config file: validate the head so the report says what is wrong.
        with deps.objects.open_read(info.bucket, info.name, info.generation) as reader:
            data = reader.read(CONFIG_MAX_BYTES)
    return validate_config(
        data,
        source=info.uri,
        has_eval=has_eval,
        max_findings_per_rule=deps.settings.max_findings_per_rule,
        backend=deps.settings.backend,
    )


def _report_summary(report: ValidationReport) -> dict[str, Any]:
    return report.to_json_dict()


def _write_report(
    record_id: str, obj: StorageObject, validated: _Validated, deps: Dependencies
) -> str:
    settings = deps.settings
    name = f"{settings.reports_prefix}{record_id}.json"
    document = {
        "dataset_id": record_id,
        "object": obj.uri,
        "generation": obj.generation,
        "valid": validated.valid,
        "blocking": validated.blocking,
        "reports": [r.to_json_dict() for r in validated.reports],
    }
    data = json.dumps(document, indent=2, ensure_ascii=False).encode()
    deps.objects.write_bytes(obj.bucket, name, data, content_type="application/json")
    return f"gs://{obj.bucket}/{name}"


def _copy_immutable(info: ObjectInfo, dest_name: str, deps: Dependencies) -> str:
    uri = f"gs://{info.bucket}/{dest_name}"
    if deps.objects.find(info.bucket, dest_name) is not None:
        return uri  # Content-addressed: what is there already holds exactly these bytes.
    # A concurrent delivery may have copied the same bytes first: that is success too.
    with contextlib.suppress(PreconditionFailedError):
        deps.objects.copy(
            info.bucket, info.name, info.generation, info.bucket, dest_name, if_absent=True
        )
    return uri


def _write_immutable(bucket: str, dest_name: str, copy: _Copy, deps: Dependencies) -> str:
    """Write a converted copy at its content-addressed name, only when nothing is there."""
    uri = f"gs://{bucket}/{dest_name}"
    if deps.objects.find(bucket, dest_name) is not None:
        return uri  # Content-addressed: what is there already holds exactly these bytes.
    if copy.data is None:  # pragma: no cover - an oversized copy makes the dataset invalid
        raise AssertionError(f"the copy for {uri} was not kept, so it cannot be valid")
    # A concurrent delivery may have written the same bytes first: that is success too.
    with contextlib.suppress(PreconditionFailedError):
        deps.objects.write_bytes(
            bucket, dest_name, copy.data, content_type=COPY_CONTENT_TYPE, if_absent=True
        )
    return uri


def _copy_validated(
    stem: str, source: ObjectInfo, validated: _Validated, deps: Dependencies
) -> dict[str, Any]:
    prefix = deps.settings.validated_prefix
    base = _basename(stem)
    copies: dict[str, Any] = {"overrides": validated.overrides}
    if validated.copy is not None:
        copies["validated_uri"] = _write_immutable(
            source.bucket, f"{prefix}{validated.copy.sha256}/{base}.jsonl", validated.copy, deps
        )
    else:
        sha = validated.reports[0].sha256
        copies["validated_uri"] = _copy_immutable(source, f"{prefix}{sha}/{base}.jsonl", deps)
    if validated.eval_info is not None and validated.eval_sha256 is not None:
        copies["eval_uri"] = validated.eval_info.uri
        copies["eval_generation"] = validated.eval_info.generation
        eval_name = f"{prefix}{validated.eval_sha256}/{base}.eval.jsonl"
        if validated.eval_copy is not None:
            copies["validated_eval_uri"] = _write_immutable(
                validated.eval_info.bucket, eval_name, validated.eval_copy, deps
            )
        else:
            copies["validated_eval_uri"] = _copy_immutable(validated.eval_info, eval_name, deps)
    if validated.config_info is not None:
        copies["config_uri"] = validated.config_info.uri
        copies["config_generation"] = validated.config_info.generation
    return copies


def _finish_launch(
    record: dict[str, Any], record_id: str, deps: Dependencies, event_id: str
) -> Outcome:
    launch = record.get("launch") or {}
    state = launch.get("state")
    if record.get("status") == "superseded":
        return Outcome.SUPERSEDED
    if record.get("status") == "invalid":
        return Outcome.INVALID
    if state in (None, LaunchState.NOT_APPLICABLE.value):
        return Outcome.RECORDED
    if state == LaunchState.PUBLISHED.value:
        logger.info("launch already requested", extra={"dataset_id": record_id})
        return Outcome.ALREADY_LAUNCHED

    settings = deps.settings
    token = f"{event_id}:{uuid.uuid4().hex}"
    now = deps.clock()
    expiry = timedelta(seconds=settings.launch_claim_seconds)

    def claim(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        current_launch = current.get("launch") or {}
        if current_launch.get("state") == LaunchState.PUBLISHED.value:
            return None
        if current_launch.get("state") == LaunchState.CLAIMED.value:
            claimed_at = datetime.fromisoformat(current_launch["claimed_at"])
            if now - claimed_at < expiry:
                return None
        current["launch"] = current_launch | {
            "state": LaunchState.CLAIMED.value,
            "claim": token,
            "claimed_at": now.isoformat(),
        }
        return current

    claimed = deps.records.transact(settings.datasets_collection, record_id, claim)
    claimed_launch = (claimed or {}).get("launch") or {}
    if claimed_launch.get("state") == LaunchState.PUBLISHED.value:
        return Outcome.ALREADY_LAUNCHED
    if claimed_launch.get("claim") != token:
        # Another delivery is publishing right now. Retry later: if it fails, this redelivery
        # takes over once its claim expires; if it succeeds, this one finds the launch published.
        raise RetryableError(
            f"the launch of dataset {record_id} is being requested by another delivery"
        )

    assert claimed is not None
    request = LaunchRequest(
        dataset_uri=claimed["validated_uri"],
        eval_dataset_uri=claimed.get("validated_eval_uri"),
        dataset_id=record_id,
        overrides=claimed.get("overrides") or {},
        request_id=record_id,
        requested_by=f"validate_dataset:{claimed['uri']}#{claimed['generation']}",
    )
    message_id = deps.publisher.publish(
        settings.launch_topic,
        request.to_bytes(),
        {"dataset_id": record_id, "request_id": record_id},
    )

    def mark_published(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        current["launch"] = (current.get("launch") or {}) | {
            "state": LaunchState.PUBLISHED.value,
            "message_id": message_id,
            "published_at": deps.clock().isoformat(),
        }
        return current

    deps.records.transact(settings.datasets_collection, record_id, mark_published)
    logger.info(
        "launch requested for %s",
        claimed["uri"],
        extra={"dataset_id": record_id, "message_id": message_id},
    )
    return Outcome.LAUNCH_REQUESTED
