"""Status tracking: pipeline state events (and polling) → forward-only job transitions.

``track_status`` receives the PipelineJob state LogEntries the Cloud Logging sink publishes on
``distill-job-events``; ``reconcile`` (run periodically) polls Vertex AI for every job that is not
finished, so a lost event delays a job's state but never loses it. Both go through
:func:`apply_pipeline_state`: the pipeline state is mapped to a job state and applied with a
compare-and-set transition (duplicates and out-of-order events never move a job backwards or out of
a terminal state), appended to the job's history and announced on ``distill-job-status``.

Jobs of the ``gemini`` backend are Vertex AI tuning jobs, whose state changes reach no topic (none
is documented): they are polled, by ``reconcile`` and, every minute, by :func:`poll_tuning_jobs`.
Their ``JOB_STATE_*`` goes through :func:`apply_tuning_state`, onto the same forward-only
transitions and announcements. A gemini job in LABELING (its teacher labelling the training set
through a batch prediction job, which announces nothing either) is polled by the same two, and
taken on by :func:`distillery.services.labeling.advance_labeling`; ``reconcile`` also gets
through the batch job cancels a cancelled job left pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from distillery.core.errors import (
    DistilleryError,
    InvalidEventError,
    ObjectNotFoundError,
    PermanentError,
)
from distillery.core.events import CloudEventLike, parse_message, parse_pubsub_event
from distillery.core.jobs import Transition, announce, can_move, transition
from distillery.core.models import JobEvent, JobState
from distillery.core.ports import TuningJobInfo, TuningJobs, VertexPipelines
from distillery.core.runtime import Dependencies, record_failure
from distillery.services.launcher import resume_requested, tuning_api_version

logger = logging.getLogger(__name__)

PIPELINE_RESOURCE_TYPE = "aiplatform.googleapis.com/PipelineJob"

#: Pipeline states → job states. States not listed (CANCELLING, PAUSED, UNSPECIFIED) move nothing.
PIPELINE_TO_JOB_STATE: dict[str, JobState] = {
    "PIPELINE_STATE_QUEUED": JobState.SUBMITTED,
    "PIPELINE_STATE_PENDING": JobState.SUBMITTED,
    "PIPELINE_STATE_RUNNING": JobState.RUNNING,
    "PIPELINE_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "PIPELINE_STATE_FAILED": JobState.FAILED,
    "PIPELINE_STATE_CANCELLED": JobState.CANCELLED,
}

#: Tuning job states → job states. States not listed (PAUSED, UPDATING, UNSPECIFIED...) move
#: nothing; a cancel that is under way already decides the job's outcome, so CANCELLING is
#: CANCELLED; an EXPIRED job (it ran past the service's timeout) will never succeed: FAILED.
TUNING_TO_JOB_STATE: dict[str, JobState] = {
    "JOB_STATE_QUEUED": JobState.SUBMITTED,
    "JOB_STATE_PENDING": JobState.SUBMITTED,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_EXPIRED": JobState.FAILED,
    "JOB_STATE_CANCELLING": JobState.CANCELLED,
    "JOB_STATE_CANCELLED": JobState.CANCELLED,
}

#: Jobs in these states are polled by :func:`reconcile` (and, for gemini jobs, by
#: :func:`poll_tuning_jobs`): a LABELING job's batch prediction job, the others' Vertex AI job.
UNFINISHED = (JobState.LABELING, JobState.SUBMITTED, JobState.RUNNING)


@dataclass
class Applied:
    """What one pipeline state did to one job."""

    job_id: str
    target: JobState | None
    moved: bool = False
    known: bool = True


def handle_job_event(event: CloudEventLike, deps: Dependencies) -> Applied | None:
    """Entry for ``track_status``: one LogEntry → one (possible) transition.

    Returns None for entries that are not PipelineJob state changes (acknowledged, nothing to do).

    Raises:
        InvalidEventError: the event or the LogEntry is malformed (recorded, acknowledged).
        RetryableError: a backing service failed; the event should be delivered again.
    """
    parsed = parse_pubsub_event(event)
    entry = parse_message(parsed.message.data, JobEvent)
    if entry.resource.type != PIPELINE_RESOURCE_TYPE or entry.pipeline_state is None:
        logger.info("ignoring a log entry of %s", entry.resource.type)
        return None
    job_id = entry.pipeline_job_id
    if not job_id:
        raise InvalidEventError("the PipelineJob log entry has no resource.labels.pipeline_job_id")
    applied = apply_pipeline_state(job_id, entry.pipeline_state, deps, reason=entry.error_message)
    if not applied.known:
        # Not ours (another pipeline in the project, or a job recorded elsewhere): keep a record.
        record_failure(
            deps,
            "track_status",
            {"id": parsed.id, "source": parsed.source, "pipeline_job_id": job_id},
            ObjectNotFoundError(f"no job {job_id} is recorded; its {entry.pipeline_state} is kept"),
        )
    return applied


def apply_pipeline_state(
    job_id: str, pipeline_state: str, deps: Dependencies, *, reason: str | None = None
) -> Applied:
    """Apply a pipeline state to job ``job_id`` (forward only) and announce what it reached.

    Raises:
        RetryableError: a backing service failed; applying it again is safe.
    """
    target = PIPELINE_TO_JOB_STATE.get(pipeline_state)
    if target is None:
        return Applied(job_id, None)
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        logger.warning("state %s for unknown job %s", pipeline_state, job_id)
        return Applied(job_id, target, known=False)
    if not can_move(JobState(record["state"]), target):
        # A duplicate or a late event: nothing to write, and the read just made shows what is
        # still to announce (a crash between a transition and its announce), so no second read.
        announce(deps, record)
        return Applied(job_id, target)
    fields: dict[str, Any] = {"pipeline_state": pipeline_state}
    if record["state"] == JobState.REQUESTED.value and record.get("location"):
        # The pipeline's events can outrun the launcher's own record of the submission: an event
        # proves the job was submitted, so record that step first and keep the history whole.
        name = (
            f"projects/{deps.settings.project}/locations/{record['location']}/pipelineJobs/{job_id}"
        )
        record = transition(deps, job_id, JobState.SUBMITTED, fields={"pipeline_job": name}).record
    if target is JobState.SUCCEEDED and record.get("pipeline_job"):
        fields |= _outputs(record["pipeline_job"], deps)
    result: Transition = transition(
        deps,
        job_id,
        target,
        fields=fields,
        reason=reason if target in (JobState.FAILED, JobState.CANCELLED) else None,
    )
    announce(deps, result.record)
    if result.moved:
        logger.info("job %s: %s → %s", job_id, result.previous, target, extra={"job_id": job_id})
    return Applied(job_id, target, moved=result.moved)


def _outputs(pipeline_job: str, deps: Dependencies) -> dict[str, Any]:
    """The model, the endpoint the pipeline deployed it on (``candidate_endpoint``), the final
    ``metrics`` and the ``training_curves`` a finished pipeline job exposes (each left out when
    it exposes none).

    The metrics are read from the event files of the job's ``tensorboard_metrics`` artifact
    (:func:`~distillery.core.training_metrics.read_training_metrics`): where there is none, or
    they cannot be read, the job succeeds without metrics and the reason is logged.

    Raises:
        RetryableError: Vertex AI or Cloud Storage failed; applying the state again is safe.
    """
    from distillery.core.pipeline_outputs import read_outputs
    from distillery.core.training_metrics import read_training_metrics

    info = deps.require_vertex().get(pipeline_job)
    outputs = read_outputs(info)
    if "endpoint" in outputs:
        # The endpoint the pipeline deployed the model on, to be judged there: not the family's
        # serving endpoint (``endpoint`` once the job is PROMOTED).
        outputs["candidate_endpoint"] = outputs.pop("endpoint")
    try:
        training = read_training_metrics(deps.objects, info)
    except PermanentError as exc:  # absent, or unreadable for good: success does not depend on it
        logger.warning("%s: no training metrics are recorded: %s", pipeline_job, exc)
        return outputs
    outputs["metrics"] = training.final
    outputs["training_curves"] = training.curves_document()
    return outputs


def apply_tuning_state(job_id: str, info: TuningJobInfo, deps: Dependencies) -> Applied:
    """Apply a polled tuning job's state to job ``job_id`` (forward only) and announce it.

    A FAILED (or EXPIRED) job carries the job's ``error`` as the reason; a CANCELLED one its
    error, if any. A SUCCEEDED job records ``model`` (the tuned model, ``…/models/M@VERSION``)
    and ``candidate_endpoint`` (the endpoint the service deployed it on, to be judged there).

    Raises:
        RetryableError: a backing service failed; applying it again is safe.
    """
    target = TUNING_TO_JOB_STATE.get(info.state)
    if target is None:
        return Applied(job_id, None)
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        logger.warning("state %s of %s for unknown job %s", info.state, info.name, job_id)
        return Applied(job_id, target, known=False)
    if not can_move(JobState(record["state"]), target):
        # A repeated or late poll: nothing to write; announce what a crash may have left out.
        announce(deps, record)
        return Applied(job_id, target)
    fields: dict[str, Any] = {"tuning_state": info.state}
    reason: str | None = None
    if target is JobState.SUCCEEDED:
        if info.tuned_model:
            fields["model"] = info.tuned_model
        if info.endpoint:
            fields["candidate_endpoint"] = info.endpoint
    elif target is JobState.FAILED:
        reason = info.error or f"the tuning job {info.name} ended {info.state} with no error given"
    elif target is JobState.CANCELLED:
        reason = info.error
    result = transition(deps, job_id, target, fields=fields, reason=reason)
    announce(deps, result.record)
    if result.moved:
        logger.info("job %s: %s → %s", job_id, result.previous, target, extra={"job_id": job_id})
    return Applied(job_id, target, moved=result.moved)


@dataclass
class ReconcileSummary:
    """What one reconcile pass did."""

    checked: int = 0
    moved: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: False when the time budget ran out: the next pass goes on from the saved cursor.
    complete: bool = True


#: Unfinished jobs read per query while polling.
RECONCILE_PAGE = 50
#: The document of the reconcile collection that holds the polling cursor.
CURSOR_DOCUMENT = "cursor"
#: The document that holds :func:`poll_tuning_jobs`' own cursor (its passes are shorter).
TUNING_CURSOR_DOCUMENT = "tuning-cursor"
#: How long one :func:`poll_tuning_jobs` pass works by default: less than the minute between two
#: scheduled passes, so that they do not overlap.
TUNING_POLL_BUDGET_SECONDS = 45.0


def reconcile(
    deps: Dependencies,
    *,
    budget_seconds: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> ReconcileSummary:
    """Poll Vertex AI for every unfinished job (pipeline or tuning job) and apply the
    transitions events did not bring; resume the jobs left REQUESTED past their lease; finish the
    promotions left half-done.

    Works for at most ``budget_seconds`` (default ``DISTILLERY_RECONCILE_BUDGET_SECONDS``):
    unfinished jobs are read a page at a time in ``job_id`` order, and where the budget runs out
    the cursor (state and last job id) is saved in the reconcile collection, so the next pass goes
    on from there instead of polling the same first jobs again. A job whose poll (or resumption)
    fails is reported in the summary and tried again on the next pass. ``monotonic`` is the clock
    the budget is measured on.
    """
    budget = deps.settings.reconcile_budget_seconds if budget_seconds is None else budget_seconds
    deadline = monotonic() + budget
    summary = ReconcileSummary()
    summary.complete = _poll_unfinished(deps, summary, lambda: monotonic() >= deadline)

    def finish(deps: Dependencies, summary: ReconcileSummary) -> None:
        _finish_promotions(deps, summary, deadline - monotonic(), monotonic)

    for step in (_resume_requested, finish, _cancel_pending_batches):
        if monotonic() >= deadline:
            summary.complete = False
            break
        step(deps, summary)
    return summary


def poll_tuning_jobs(
    deps: Dependencies,
    budget_seconds: float | None = None,
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> ReconcileSummary:
    """Poll every unfinished ``gemini`` job's tuning job and apply its state.

    Tuning jobs announce no state changes, so this short pass runs often (every minute) where
    ``reconcile`` runs seldom. It works for at most ``budget_seconds`` (default
    :data:`TUNING_POLL_BUDGET_SECONDS`) and keeps its own cursor, as ``reconcile`` does, so a
    pass that runs out of time goes on from there the next time. A job whose poll fails is
    reported in the summary and polled again on the next pass.

    Raises:
        RetryableError: the job records could not be read or the cursor written.
    """
    budget = TUNING_POLL_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    deadline = monotonic() + budget
    summary = ReconcileSummary()
    summary.complete = _poll_unfinished(
        deps,
        summary,
        lambda: monotonic() >= deadline,
        cursor_document=TUNING_CURSOR_DOCUMENT,
        tuning_only=True,
    )
    return summary


def _poll_unfinished(
    deps: Dependencies,
    summary: ReconcileSummary,
    out_of_time: Callable[[], bool],
    *,
    cursor_document: str = CURSOR_DOCUMENT,
    tuning_only: bool = False,
) -> bool:
    """Poll the unfinished jobs from the saved cursor on; False when time ran out first.

    With ``tuning_only``, jobs that are not tuning jobs are passed over (and no Vertex AI
    pipelines client is needed).
    """
    vertex = None if tuning_only else deps.require_vertex()
    store, jobs = deps.records, deps.settings.jobs_collection
    cursor = store.get(deps.settings.reconcile_collection, cursor_document) or {}
    states = [state.value for state in UNFINISHED]
    resuming = cursor.get("state") in states
    first = states.index(cursor["state"]) if resuming else 0
    after: str | None = cursor.get("after") if resuming else None
    polled: set[str] = set()  # a job this pass moved on to the next state is not polled again
    for state in states[first:]:
        while True:
            page = store.list(
                jobs,
                where={"state": state},
                order_by="job_id",
                limit=RECONCILE_PAGE,
                start_after=[after] if after else None,
            )
            for record in page:
                if out_of_time():
                    _save_cursor(deps, state, after, cursor_document)
                    return False
                after = str(record["job_id"])
                if after in polled:
                    continue
                if state == JobState.LABELING.value:
                    polled.add(after)
                    _poll_labeling(record, deps, summary)
                elif record.get("tuning_job"):
                    polled.add(after)
                    _poll_tuning(record, deps, summary)
                elif record.get("pipeline_job") and vertex is not None:
                    polled.add(after)
                    _poll(record, vertex, deps, summary)
            if len(page) < RECONCILE_PAGE:
                break
        after = None
    _save_cursor(deps, None, None, cursor_document)
    return True


def _poll(
    record: dict[str, Any], vertex: VertexPipelines, deps: Dependencies, summary: ReconcileSummary
) -> None:
    """Poll one job's pipeline job and apply its state (a failure is noted in ``summary``)."""
    name = record["pipeline_job"]
    summary.checked += 1
    try:
        info = vertex.get(name)
        applied = apply_pipeline_state(record["job_id"], info.state, deps, reason=info.error)
    except DistilleryError as exc:  # one job's failure must not stop the pass
        logger.warning("reconcile could not poll %s: %s", name, exc)
        summary.errors[record["job_id"]] = str(exc)
        return
    if applied.moved:
        summary.moved.append(record["job_id"])


def _poll_labeling(record: dict[str, Any], deps: Dependencies, summary: ReconcileSummary) -> None:
    """Take one LABELING job on as far as its batch job allows (a failure is noted)."""
    from distillery.services.labeling import advance_labeling

    summary.checked += 1
    try:
        advanced = advance_labeling(record, deps)
    except DistilleryError as exc:  # one job's failure must not stop the pass
        logger.warning("could not advance the labeling of %s: %s", record["job_id"], exc)
        summary.errors[record["job_id"]] = str(exc)
        return
    if advanced.get("state") != record.get("state"):
        summary.moved.append(record["job_id"])


def _poll_tuning(record: dict[str, Any], deps: Dependencies, summary: ReconcileSummary) -> None:
    """Poll one job's tuning job and apply its state (a failure is noted in ``summary``)."""
    name = record["tuning_job"]
    summary.checked += 1
    try:
        info = _require_tuning(deps).get(name, api_version=tuning_api_version(record))
        applied = apply_tuning_state(record["job_id"], info, deps)
    except DistilleryError as exc:  # one job's failure must not stop the pass
        logger.warning("could not poll %s: %s", name, exc)
        summary.errors[record["job_id"]] = str(exc)
        return
    if applied.moved:
        summary.moved.append(record["job_id"])


def _require_tuning(deps: Dependencies) -> TuningJobs:
    """The tuning jobs port.

    Raises:
        ConfigurationError: the dependencies were built without one.
    """
    tuning = deps.tuning
    if tuning is None:
        from distillery.core.errors import ConfigurationError

        raise ConfigurationError("this function was built without a Vertex AI tuning jobs client")
    return tuning


def _save_cursor(
    deps: Dependencies, state: str | None, after: str | None, document_id: str = CURSOR_DOCUMENT
) -> None:
    """Where the next pass starts polling (nothing: from the beginning)."""
    document = {"state": state, "after": after, "saved_at": deps.clock().isoformat()}
    deps.records.set(deps.settings.reconcile_collection, document_id, document)


def _resume_requested(deps: Dependencies, summary: ReconcileSummary) -> None:
    """Resume every job left REQUESTED past the lease (``DISTILLERY_REQUESTED_LEASE_SECONDS``):
    submit it with its frozen plan, or adopt the pipeline job Vertex AI already has.

    A job within its lease is left alone: a delivery may be working on it right now.
    """
    lease = timedelta(seconds=deps.settings.requested_lease_seconds)
    now = deps.clock()
    stale = [
        record
        for record in deps.records.list(
            deps.settings.jobs_collection, where={"state": JobState.REQUESTED.value}
        )
        if now - datetime.fromisoformat(record["updated_at"]) >= lease
    ]
    for record in stale:
        job_id = record["job_id"]
        summary.checked += 1
        try:
            resumed = resume_requested(job_id, deps)
        except DistilleryError as exc:  # one job's failure must not stop the pass
            logger.warning("reconcile could not resume %s: %s", job_id, exc)
            summary.errors[job_id] = str(exc)
            continue
        if resumed["state"] != JobState.REQUESTED.value:
            logger.info("job %s resumed: %s", job_id, resumed["state"], extra={"job_id": job_id})
            summary.moved.append(job_id)


def _cancel_pending_batches(deps: Dependencies, summary: ReconcileSummary) -> None:
    """Cancel the batch prediction jobs of ended jobs whose cancel did not get through: no
    teacher keeps labeling for a job that is over."""
    from distillery.services.labeling import cancel_pending_batches

    if deps.batch is None:
        return  # Built without batch prediction: no job of this world can have one.
    try:
        cancel_pending_batches(deps)
    except DistilleryError as exc:
        logger.warning("could not cancel the pending batch prediction jobs: %s", exc)
        summary.errors["batch_cancel_pending"] = str(exc)


def _finish_promotions(
    deps: Dependencies,
    summary: ReconcileSummary,
    seconds_left: float,
    monotonic: Callable[[], float],
) -> None:
    """Finish the promotions a promote_model call left half-done (its deployment outlived it,
    or its golden set was not all asked), in what is left of the pass."""
    from distillery.services.promoter import finish_promotions

    finished = finish_promotions(deps, seconds_left, monotonic=monotonic)
    summary.moved.extend(finished.moved)
    summary.errors.update(finished.errors)
    summary.complete = summary.complete and finished.complete
