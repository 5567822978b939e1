"""The launcher: one LaunchRequest → exactly one Vertex AI distillation pipeline job.

For each request (validated at the edge; a bad one is recorded and acknowledged) it:

1. resolves reruns: ``rerun_of`` takes the original job's request, with ``overrides`` on top;
2. finds the validated dataset's record (its example counts feed the policy) — only datasets
   that went through validation can be launched;
3. resolves the job spec under the launch policy; a refusal records the job REJECTED_BY_POLICY
   with every reason and announces it, and nothing is submitted;
4. derives the deterministic ``job_id`` and creates ``jobs/{job_id}`` if absent (REQUESTED);
5. submits ``pipelineJobs.create`` with ``pipelineJobId = job_id``; ALREADY_EXISTS is success
   (a redelivery, or a crash after the call), so a request can never start two jobs;
6. moves the job to SUBMITTED (compare-and-set) with the resource name and announces it.

Transient Vertex errors (UNAVAILABLE, RESOURCE_EXHAUSTED) are raised, so the event is delivered
again with backoff; a request Vertex refuses is recorded FAILED with the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from distillery import policy
from distillery.core.errors import AlreadyExistsError, PermanentError, RequestRejectedError
from distillery.core.events import CloudEventLike, parse_message, parse_pubsub_event
from distillery.core.jobs import announce, new_record, transition
from distillery.core.models import JobState, LaunchRequest
from distillery.core.runtime import Dependencies

logger = logging.getLogger(__name__)

#: Jobs in these states count against the maximum number of concurrent jobs.
ACTIVE_STATES = (JobState.REQUESTED, JobState.SUBMITTED, JobState.RUNNING)


class UnknownDatasetError(PermanentError):
    """The request names a dataset that was never validated."""


class UnknownJobError(PermanentError):
    """A rerun names a job that does not exist."""


def handle_launch_event(event: CloudEventLike, deps: Dependencies) -> str:
    """Entry for ``launch_job``: parse the message and launch; returns the job_id.

    Raises:
        InvalidEventError: the event or the LaunchRequest is malformed (recorded, acknowledged).
        PermanentError: the request cannot be launched as it stands (recorded, acknowledged).
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
    return LaunchRequest(
        dataset_uri=request.dataset_uri or base.dataset_uri,
        eval_dataset_uri=request.eval_dataset_uri or base.eval_dataset_uri,
        overrides={**base.overrides, **request.overrides},
        rerun_of=request.rerun_of,
        request_id=request.request_id,
        requested_by=request.requested_by,
    )


def _dataset_record(uri: str, deps: Dependencies) -> dict[str, Any]:
    found = deps.records.list(deps.settings.datasets_collection, where={"validated_uri": uri})
    if not found:
        raise UnknownDatasetError(
            f"{uri} is not a validated dataset: upload the training set under "
            f"gs://{deps.settings.bucket}/{deps.settings.datasets_prefix} so it is validated, "
            "and launch the validated copy it names"
        )
    return found[0]


def _examples(record: dict[str, Any], kind: str) -> int | None:
    for report in record.get("reports", []):
        if report.get("kind") == kind:
            return int(report["examples"])
    return None


def _usage(deps: Dependencies, today: str) -> policy.PolicyUsage:
    jobs = deps.settings.jobs_collection
    running = sum(
        len(deps.records.list(jobs, where={"state": state.value})) for state in ACTIVE_STATES
    )
    hours = sum(
        float(job.get("estimated_accelerator_hours") or 0.0)
        for job in deps.records.list(jobs, where={"submitted_day": today})
    )
    return policy.PolicyUsage(running_jobs=running, accelerator_hours_today=hours)


def launch(request: LaunchRequest, deps: Dependencies) -> str:
    """Launch the job ``request`` asks for (idempotent); returns its job_id.

    Raises:
        PermanentError: the request cannot be launched as it stands.
        RetryableError: a backing service failed; calling again is safe.
    """
    settings = deps.settings
    effective = _effective_request(request, deps)
    assert effective.dataset_uri is not None
    dataset = _dataset_record(effective.dataset_uri, deps)
    examples = _examples(dataset, "training") or 0
    eval_examples = _examples(dataset, "eval") if effective.eval_dataset_uri else None
    now = deps.clock()
    today = now.date().isoformat()
    plan = policy.resolve(
        effective,
        settings,
        dataset_examples=examples,
        eval_examples=eval_examples,
        usage=_usage(deps, today),
    )
    source = f"{dataset['bucket']}/{dataset['object']}#{dataset['generation']}"
    job_id = policy.job_id(plan, source_identity=source, request_id=effective.request_id)
    fields = {
        "request": effective.model_dump(mode="json", exclude_none=True),
        "request_id": effective.request_id,
        "rerun_of": effective.rerun_of,
        "dataset_id": dataset.get("id"),
        "spec": plan.spec_dict(),
        "reasons": plan.reasons,
        "request_body": plan.request_body,
        "location": plan.spec.pipeline_region,
        "estimated_accelerator_hours": plan.spec.estimated_accelerator_hours,
        "pipeline_job": None,
    }

    if plan.refusals:
        reason = "; ".join(plan.refusals)
        deps.records.create(
            settings.jobs_collection,
            job_id,
            new_record(
                job_id,
                JobState.REJECTED_BY_POLICY,
                now,
                fields | {"refusals": plan.refusals, "reason": reason},
                reason,
            ),
        )
        record = deps.records.get(settings.jobs_collection, job_id)
        assert record is not None
        announce(deps, record)
        logger.warning("job %s refused by policy: %s", job_id, reason, extra={"job_id": job_id})
        return job_id

    deps.records.create(
        settings.jobs_collection,
        job_id,
        new_record(job_id, JobState.REQUESTED, now, fields | {"submitted_day": today}),
    )
    record = deps.records.get(settings.jobs_collection, job_id)
    assert record is not None
    if JobState(record["state"]) is JobState.REQUESTED:
        record = _submit(job_id, plan, deps)
    announce(deps, record)
    return job_id


def _submit(job_id: str, plan: policy.Plan, deps: Dependencies) -> dict[str, Any]:
    vertex = deps.require_vertex()
    location = plan.spec.pipeline_region
    name = f"projects/{deps.settings.project}/locations/{location}/pipelineJobs/{job_id}"
    try:
        info = vertex.create(location, job_id, plan.request_body)
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
