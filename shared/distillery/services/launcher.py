"""The launcher: one LaunchRequest → exactly one Vertex AI job (a pipeline job or a tuning job).

For each request (validated at the edge; a bad one is recorded and acknowledged) it:

1. resolves reruns: ``rerun_of`` takes the original job's request (and its dataset record), with
   ``overrides`` on top;
2. finds the validated dataset's record by its id (``dataset_id``; without it, the one record
   whose validated copy ``dataset_uri`` names) — only datasets that went through validation can be
   launched, and only with the eval set validated with them;
3. derives the deterministic ``job_id`` from the request's identity: the dataset record's
   ``bucket/object#generation`` and ``request_id`` (never from the resolved plan, which depends on
   settings and usage);
4. on the first delivery, resolves the job spec under the launch policy (the usage it sees never
   counts the job itself) and freezes the decision in ``jobs/{job_id}``, created if absent:
   REQUESTED with the request body, or REJECTED_BY_POLICY with every reason (announced, nothing
   submitted). Every later delivery uses that frozen decision and never resolves again; one whose
   request differs (the same ``request_id`` reused with another payload) is refused as a conflict
   and launches nothing;
5. submits the frozen body with ``pipelineJobs.create`` and ``pipelineJobId = job_id``;
   ALREADY_EXISTS is success (a redelivery, or a crash after the call), so a request can never
   start two jobs;
6. moves the job to SUBMITTED (compare-and-set) with the resource name and announces it.

A job left REQUESTED (e.g. its event was never delivered again) is resumed by ``reconcile`` with
:func:`resume_requested` once ``DISTILLERY_REQUESTED_LEASE_SECONDS`` have passed.

A ``gemini`` job (the plan's backend, frozen in the record) is a Vertex AI tuning job instead, and
``tuningJobs.create`` takes no client-chosen id, so steps 5 and 6 are:

5. claim the job record for this delivery (compare-and-set of ``tuning_claim``: one delivery at a
   time may create, so two concurrent deliveries never both create; another delivery's live claim
   is a transient error, and the event comes back once it has been released or has aged past
   ``DISTILLERY_LAUNCH_CLAIM_SECONDS``);
6. look for a tuning job labelled with the job id (``distillery-job-id``, the frozen body's
   label) and adopt it — a delivery that crashed between the create and the record, or lost the
   create's answer, left it there — else create it from the frozen body;
7. move the job to SUBMITTED with ``tuning_job`` (the resource name), releasing the claim.

A gemini job whose record holds ``labeling`` (its training set is labeled by a teacher first)
goes REQUESTED → LABELING instead: under the same claim, the teacher's request lines are written
and its batch prediction job adopted by label or created
(:func:`distillery.services.labeling.start_labeling`); its tuning job is created once the labels
are in, by the poll of LABELING jobs. A redelivery for a LABELING job creates nothing.

Transient Vertex errors (UNAVAILABLE, RESOURCE_EXHAUSTED) are raised, so the event is delivered
again with backoff; a request Vertex refuses is recorded FAILED with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from distillery import policy
from distillery.core.errors import (
    AlreadyExistsError,
    ObjectNotFoundError,
    PermanentError,
    RequestRejectedError,
    RetryableError,
)
from distillery.core.events import CloudEventLike, parse_message, parse_pubsub_event
from distillery.core.jobs import announce, new_record, transition, update_job
from distillery.core.models import JobState, LaunchRequest
from distillery.core.runtime import Dependencies

logger = logging.getLogger(__name__)

#: Jobs in these states count against the maximum number of concurrent jobs.
ACTIVE_STATES = (JobState.REQUESTED, JobState.LABELING, JobState.SUBMITTED, JobState.RUNNING)

#: Fields of a LaunchRequest that are not part of what it asks to launch: who sent it, and the
#: dataset record, which the job id already holds.
_NOT_PAYLOAD = frozenset({"requested_by", "dataset_id"})


class UnknownDatasetError(PermanentError):
    """The request names a dataset that was never validated."""


class AmbiguousDatasetError(PermanentError):
    """The request's ``dataset_uri`` is the validated copy of several dataset records."""


class UnvalidatedEvalSetError(PermanentError):
    """The request's eval set is not the one validated with its dataset."""


class UnknownJobError(PermanentError):
    """A rerun names a job that does not exist."""


class RequestConflictError(PermanentError):
    """A ``request_id`` already launched one request is reused with another payload."""


class LaunchInProgressError(RetryableError):
    """Another delivery holds the claim on this job's stage (creating its tuning job or its
    teacher's batch job, or finishing its labeling): deliver again later."""


def handle_launch_event(event: CloudEventLike, deps: Dependencies) -> str:
    """Entry for ``launch_job``: parse the message and launch; returns the job_id.

    Raises:
        InvalidEventError: the event or the LaunchRequest is malformed (recorded, acknowledged).
        PermanentError: the request cannot be launched as it stands, or reuses a request_id with
            another payload (recorded in the failures collection, logged, acknowledged).
        RetryableError: a backing service failed; the event should be delivered again.
    """
    parsed = parse_pubsub_event(event)
    request = parse_message(parsed.message.data, LaunchRequest)
    return launch(request, deps)


def _effective_request(request: LaunchRequest, deps: Dependencies) -> LaunchRequest:
    if request.rerun_of is None:
        return request
    original = deps.records.get(deps.settings.jobs_collection, request.rerun_of)
    if original is None:
        raise UnknownJobError(f"rerun_of names job {request.rerun_of!r}, which does not exist")
    base = LaunchRequest.model_validate(original["request"])
    dataset_id = request.dataset_id
    if dataset_id is None and request.dataset_uri in (None, base.dataset_uri):
        # The original's dataset record, unless the rerun names a dataset of its own.
        dataset_id = base.dataset_id or original.get("dataset_id")
    return LaunchRequest(
        dataset_uri=request.dataset_uri or base.dataset_uri,
        eval_dataset_uri=request.eval_dataset_uri or base.eval_dataset_uri,
        dataset_id=dataset_id,
        overrides={**base.overrides, **request.overrides},
        rerun_of=request.rerun_of,
        request_id=request.request_id,
        requested_by=request.requested_by,
    )


def _dataset_record(request: LaunchRequest, deps: Dependencies) -> dict[str, Any]:
    """The validated training set's record the request launches, and its eval set checked.

    Raises:
        UnknownDatasetError: no validated dataset record matches.
        AmbiguousDatasetError: ``dataset_uri`` (without ``dataset_id``) matches several records.
        UnvalidatedEvalSetError: the eval set is not the one validated with the dataset.
    """
    settings = deps.settings
    uri = request.dataset_uri
    assert uri is not None
    if request.dataset_id is not None:
        record = deps.records.get(settings.datasets_collection, request.dataset_id)
        if record is None or not record.get("validated_uri"):
            raise UnknownDatasetError(
                f"dataset_id {request.dataset_id!r} names no validated dataset record"
            )
        if record["validated_uri"] != uri:
            raise UnknownDatasetError(
                f"dataset_id {request.dataset_id!r} is the validated dataset "
                f"{record['validated_uri']}, not {uri}: send the dataset_uri its record names"
            )
    else:
        found = deps.records.list(settings.datasets_collection, where={"validated_uri": uri})
        if not found:
            raise UnknownDatasetError(
                f"{uri} is not a validated dataset: upload the training set under "
                f"gs://{settings.bucket}/{settings.datasets_prefix} so it is validated, "
                "and launch the validated copy it names"
            )
        if len(found) > 1:
            ids = ", ".join(sorted(str(r.get("id")) for r in found))
            raise AmbiguousDatasetError(
                f"{uri} is the validated copy of {len(found)} uploads ({ids}), which may differ "
                "in their eval set and config: name the one to launch with dataset_id"
            )
        [record] = found
    if request.eval_dataset_uri is not None:
        validated_eval = record.get("validated_eval_uri")
        if request.eval_dataset_uri != validated_eval:
            with_it = (
                f"the eval set validated with it is {validated_eval}"
                if validated_eval
                else "no eval set was validated with it"
            )
            raise UnvalidatedEvalSetError(
                f"eval_dataset_uri {request.eval_dataset_uri} is not a validated eval set of "
                f"dataset {record.get('id')} ({uri}): {with_it}; upload the eval set next to the "
                "training set so it is validated with it"
            )
    return record


def _examples(record: dict[str, Any], kind: str) -> int | None:
    for report in record.get("reports", []):
        if report.get("kind") == kind:
            return int(report["examples"])
    return None


def _dataset_tokens(record: dict[str, Any]) -> int | None:
    """The training set's token count validation recorded, or None (records without one)."""
    tokens = record.get("dataset_tokens")
    if tokens is None:
        for report in record.get("reports", []):
            if report.get("kind") == "training" and report.get("dataset_tokens") is not None:
                tokens = report["dataset_tokens"]
                break
    return int(tokens) if tokens is not None else None


def _dataset_labeling(record: Mapping[str, Any]) -> str | None:
    """What validation recorded about the training set's labels (``unlabeled``, ``labeled``),
    from the record or its training report; None for records written before it was recorded."""
    labeling = record.get("labeling")
    if labeling is None:
        for report in record.get("reports", []):
            if report.get("kind") == "training":
                labeling = report.get("labeling")
                break
    return str(labeling) if labeling is not None else None


def _usage(deps: Dependencies, today: str, *, excluding: str) -> policy.PolicyUsage:
    """What the policy's limits see: every other job (a job never counts against itself)."""
    jobs = deps.settings.jobs_collection
    # Counted by the store (an aggregation), not read: only the job itself is read, to leave it out.
    running = sum(deps.records.count(jobs, where={"state": state.value}) for state in ACTIVE_STATES)
    own = deps.records.get(jobs, excluding)
    if own is not None and own.get("state") in {state.value for state in ACTIVE_STATES}:
        running -= 1
    # Today's jobs only: the day's launches, read to add up their estimates.
    todays = [
        job
        for job in deps.records.list(jobs, where={"submitted_day": today})
        if job.get("job_id") != excluding
    ]
    hours = sum(float(job.get("estimated_accelerator_hours") or 0.0) for job in todays)
    usd = sum(float(job.get("estimated_cost_usd") or 0.0) for job in todays)
    return policy.PolicyUsage(
        running_jobs=running, accelerator_hours_today=hours, tuning_usd_today=usd
    )


def request_fingerprint(request: LaunchRequest) -> str:
    """The SHA-256 of what ``request`` asks to launch (its canonical JSON, without who sent it).

    Two deliveries of one request have the same fingerprint; the same ``request_id`` with other
    overrides, another eval set or another ``rerun_of`` has another.
    """
    payload = request.model_dump(mode="json", exclude_none=True, exclude=set(_NOT_PAYLOAD))
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def launch(request: LaunchRequest, deps: Dependencies) -> str:
    """Launch the job ``request`` asks for (idempotent); returns its job_id.

    Raises:
        UnknownJobError, UnknownDatasetError, AmbiguousDatasetError, UnvalidatedEvalSetError:
            the request cannot be launched as it stands (permanent).
        RequestConflictError: its ``request_id`` already launched another request (permanent;
            nothing is launched).
        RetryableError: a backing service failed; calling again is safe.
    """
    settings = deps.settings
    effective = _effective_request(request, deps)
    dataset = _dataset_record(effective, deps)
    source = f"{dataset['bucket']}/{dataset['object']}#{dataset['generation']}"
    job_id = policy.job_id(
        source_identity=source, request_id=effective.request_id, dataset_name=dataset["object"]
    )
    fingerprint = request_fingerprint(effective)
    record = deps.records.get(settings.jobs_collection, job_id)
    if record is None:
        _decide(job_id, effective, dataset, fingerprint, deps)
        record = deps.records.get(settings.jobs_collection, job_id)
        assert record is not None
    recorded = record.get("request_fingerprint")
    if recorded is not None and recorded != fingerprint:
        logger.error(
            "request_id %r reused with another payload; job %s is left as it is",
            effective.request_id,
            job_id,
            extra={"job_id": job_id, "request_id": effective.request_id},
        )
        raise RequestConflictError(
            f"request_id {effective.request_id!r} already launched job {job_id} for dataset "
            f"{dataset.get('id')} with another request; nothing is launched: send this request "
            "with a new request_id"
        )
    if JobState(record["state"]) is JobState.REQUESTED:
        record = _submit(record, deps)
    announce(deps, record)
    return job_id


def _tuning_mode_mismatch(plan: policy.Plan, dataset: Mapping[str, Any]) -> str | None:
    """Why a gemini job may not train on ``dataset``'s copy: it was made for the other mode (a
    distillation job needs the prompts-only copy; supervised tuning needs the answers, or the
    teacher's labels). An unlabeled set's copy is the prompts in either mode, so it serves both
    (a supervised job's teacher labels it)."""
    spec = plan.spec
    if not isinstance(spec, policy.GeminiJobSpec) or dataset.get("backend") != "gemini":
        return None
    made_for = str(dataset.get("tuning_mode") or "supervised")
    if made_for == spec.tuning_mode or dataset.get("labeling") == "unlabeled":
        return None
    return (
        f"the dataset's validated copy was made for the {made_for} mode, but this job runs in "
        f"the {spec.tuning_mode} mode: set tuning_mode={made_for}, or upload the dataset again "
        f'with {{"tuning_mode": "{spec.tuning_mode}"}} in its config sidecar'
    )


def _decide(
    job_id: str,
    request: LaunchRequest,
    dataset: dict[str, Any],
    fingerprint: str,
    deps: Dependencies,
) -> None:
    """Resolve the plan once and freeze it in ``jobs/{job_id}`` (create if absent): REQUESTED
    with its request body, or REJECTED_BY_POLICY with every reason. A concurrent delivery that
    created the record first wins; its decision stands."""
    settings = deps.settings
    examples = _examples(dataset, "training") or 0
    eval_examples = _examples(dataset, "eval") if request.eval_dataset_uri else None
    now = deps.clock()
    today = now.date().isoformat()
    plan = policy.resolve(
        request,
        settings,
        dataset_examples=examples,
        eval_examples=eval_examples,
        usage=_usage(deps, today, excluding=job_id),
        job_id=job_id,
        dataset_tokens=_dataset_tokens(dataset),
        dataset_labeling=_dataset_labeling(dataset),
    )
    mismatch = _tuning_mode_mismatch(plan, dataset)
    if mismatch is not None:
        plan.refusals.append(mismatch)
    fields = {
        "request": request.model_dump(mode="json", exclude_none=True),
        "request_id": request.request_id,
        "request_fingerprint": fingerprint,
        "rerun_of": request.rerun_of,
        "dataset_id": dataset.get("id"),
        "spec": plan.spec_dict(),
        "reasons": plan.reasons,
        "request_body": plan.request_body,
        "location": plan.location,
        "estimated_accelerator_hours": plan.estimated_accelerator_hours,
        "pipeline_job": None,
    }
    if plan.backend == "gemini":
        fields |= {
            "backend": "gemini",
            "tuning_job": None,
            # The API the tuning job is created, read and cancelled through (v1beta1: the
            # distillation mode's distillationSpec).
            "tuning_api_version": plan.api_version,
            # Tuning and labeling: what the daily budget of later jobs counts.
            "estimated_cost_usd": plan.estimated_cost_usd,
            # The labeling stage, frozen with the tuning body (None: the job does not label).
            "labeling": plan.labeling,
            "labeling_body": plan.labeling_body,
        }
    if plan.refusals:
        reason = "; ".join(plan.refusals)
        refused = new_record(
            job_id,
            JobState.REJECTED_BY_POLICY,
            now,
            fields | {"refusals": plan.refusals, "reason": reason},
            reason,
        )
        if deps.records.create(settings.jobs_collection, job_id, refused):
            logger.warning("job %s refused by policy: %s", job_id, reason, extra={"job_id": job_id})
        return
    requested = new_record(job_id, JobState.REQUESTED, now, fields | {"submitted_day": today})
    deps.records.create(settings.jobs_collection, job_id, requested)


def resume_requested(job_id: str, deps: Dependencies) -> dict[str, Any]:
    """Submit job ``job_id`` if it is still REQUESTED, with the plan frozen in its record (or
    adopt the pipeline job Vertex AI already has); announce its state; returns the record.

    Raises:
        ObjectNotFoundError: there is no such job record.
        RetryableError: a backing service failed; calling again is safe.
    """
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        raise ObjectNotFoundError(f"there is no job {job_id}")
    if JobState(record["state"]) is JobState.REQUESTED:
        record = _submit(record, deps)
    announce(deps, record)
    return record


def _submit(record: dict[str, Any], deps: Dependencies) -> dict[str, Any]:
    """Create the pipeline job of a REQUESTED ``record`` from its frozen body (never re-resolved)
    and move the record to SUBMITTED (or FAILED, when Vertex AI refuses it); a gemini job's
    tuning job is :func:`_submit_tuning`'s."""
    if record.get("backend") == "gemini":
        if record.get("labeling"):
            # The teacher labels the training set first; the tuning job comes after.
            from distillery.services.labeling import start_labeling

            return start_labeling(record, deps)
        return _submit_tuning(record, deps)
    vertex = deps.require_vertex()
    job_id = record["job_id"]
    location = record["location"]
    name = f"projects/{deps.settings.project}/locations/{location}/pipelineJobs/{job_id}"
    try:
        info = vertex.create(location, job_id, record["request_body"])
        name = info.name
    except AlreadyExistsError:
        # A redelivery, or a crash after the call last time: the job is there; adopt it.
        name = vertex.get(name).name
        logger.info("pipeline job %s already exists; adopting it", job_id, extra={"job_id": job_id})
    except RequestRejectedError as exc:
        moved = transition(deps, job_id, JobState.FAILED, reason=str(exc))
        return moved.record
    moved = transition(deps, job_id, JobState.SUBMITTED, fields={"pipeline_job": name})
    return moved.record


def _claim_expired(claim: dict[str, Any], now: datetime, seconds: int) -> bool:
    try:
        at = datetime.fromisoformat(str(claim.get("at")))
    except ValueError:
        return True  # An unreadable claim protects nothing.
    return (now - at).total_seconds() >= seconds


def claim(
    job_id: str, deps: Dependencies, stage: JobState = JobState.REQUESTED
) -> tuple[dict[str, Any], str | None]:
    """Claim the work of job ``job_id``'s ``stage`` for this delivery (compare-and-set): the
    creation of its tuning job from REQUESTED, or of its batch job; from LABELING, the
    labeled set's files and the tuning job.

    A claim is per stage: one taken in another state (left by a delivery that got the job one
    stage further) protects nothing now.

    Returns the record and the claim's token; the token is None when the job is no longer in
    ``stage`` (another delivery got it further: nothing to do).

    Raises:
        LaunchInProgressError: another delivery holds a live claim on this stage.
        ObjectNotFoundError: there is no such job record.
    """
    # Made once, outside the mutation: a store may run a mutation more than once.
    token = uuid.uuid4().hex
    now = deps.clock()
    seen: dict[str, Any] = {}

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        seen.clear()
        if current is None or JobState(current["state"]) is not stage:
            return None
        held = current.get("tuning_claim")
        if (
            isinstance(held, dict)
            and held.get("token") != token
            # A claim without a stage is the REQUESTED one's (written before there were two).
            and held.get("stage", JobState.REQUESTED.value) == stage.value
            and not _claim_expired(held, now, deps.settings.launch_claim_seconds)
        ):
            seen["held"] = held
            return None
        current["tuning_claim"] = {"token": token, "at": now.isoformat(), "stage": stage.value}
        seen["claimed"] = True
        return current

    record = update_job(deps, job_id, mutate)
    if "held" in seen:
        raise LaunchInProgressError(
            f"another delivery is working on the {stage.value} stage of {job_id} (claimed at "
            f"{seen['held'].get('at')}); this one is delivered again later"
        )
    return record, token if seen.get("claimed") else None


def release(job_id: str, token: str, deps: Dependencies) -> None:
    """Drop this delivery's claim (only its own: a claim taken over is another's)."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or (current.get("tuning_claim") or {}).get("token") != token:
            return None
        current["tuning_claim"] = None
        return current

    deps.records.transact(deps.settings.jobs_collection, job_id, mutate)


def tuning_api_version(record: Mapping[str, Any]) -> str:
    """The Vertex AI API version a gemini job record's tuning job lives in (``v1`` for a record
    written before the distillation mode, which only supervised jobs were)."""
    return str(record.get("tuning_api_version") or "v1")


def create_or_adopt_tuning_job(record: Mapping[str, Any], deps: Dependencies) -> str:
    """The resource name of the tuning job of gemini ``record``: the one labelled with its job
    id, adopted, else a new one created from the frozen body. The caller holds the claim.

    Raises:
        RequestRejectedError: Vertex AI refuses the body (permanent).
        RetryableError: a backing service failed (a job the failed call created anyway is found
            by its label and adopted next time).
    """
    tuning = deps.require_tuning()
    job_id = record["job_id"]
    location = record["location"]
    body = record["request_body"]
    label = body["labels"][policy.JOB_LABEL_KEY]
    api_version = tuning_api_version(record)
    return adopt_or_create(
        "tuning job",
        job_id,
        tuning.find_by_label(location, policy.JOB_LABEL_KEY, label, api_version=api_version),
        lambda: tuning.create(location, body, api_version=api_version),
    ).name


class _HasName(Protocol):
    """What :func:`adopt_or_create` needs of a Vertex AI job's info: its resource name."""

    @property
    def name(self) -> str: ...


_Named = TypeVar("_Named", bound=_HasName)


def adopt_or_create(
    kind: str, job_id: str, found: _Named | None, create: Callable[[], _Named]
) -> _Named:
    """``found``, the ``kind`` (a Vertex AI job) that carries job ``job_id``'s label, adopted;
    else the one ``create`` makes. The label is what makes a create safe to repeat: the job
    found was made by a delivery that crashed (or lost the answer) before recording it."""
    if found is None:
        return create()
    logger.info(
        "%s %s already carries job %s; adopting it",
        kind,
        found.name,
        job_id,
        extra={"job_id": job_id},
    )
    return found


def _submit_tuning(record: dict[str, Any], deps: Dependencies) -> dict[str, Any]:
    """Create (or adopt) the tuning job of a REQUESTED gemini ``record`` and move the record to
    SUBMITTED with ``tuning_job`` (or FAILED, when Vertex AI refuses the body).

    Raises:
        LaunchInProgressError: another delivery is creating it now.
        RetryableError: a backing service failed (the claim is released; calling again is safe:
            a job the failed call created anyway is found by its label and adopted).
    """
    deps.require_tuning()
    job_id = record["job_id"]
    claimed, token = claim(job_id, deps)
    if token is None:
        return claimed
    try:
        name = create_or_adopt_tuning_job(record, deps)
    except RequestRejectedError as exc:
        moved = transition(
            deps, job_id, JobState.FAILED, fields={"tuning_claim": None}, reason=str(exc)
        )
        return moved.record
    except BaseException:
        release(job_id, token, deps)
        raise
    moved = transition(
        deps,
        job_id,
        JobState.SUBMITTED,
        fields={"tuning_job": name, "tuning_claim": None},
    )
    return moved.record
