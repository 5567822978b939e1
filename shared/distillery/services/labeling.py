"""The LABELING stage of a gemini job: a teacher labels the training set, then the tuning job.

A job whose record holds ``labeling`` (the frozen :class:`~distillery.labeling.LabelingSpec`)
and ``labeling_body`` (the frozen ``batchPredictionJobs.create`` body) goes
REQUESTED → LABELING → SUBMITTED:

1. :func:`start_labeling` (the launcher's submission of a REQUESTED job): claim the job for this
   delivery (as the tuning path claims it), write the teacher's request lines (create-only, the
   same bytes every time), adopt the batch prediction job labelled with the job id or create it,
   and move the job to LABELING with ``batch_prediction_job``;
2. :func:`advance_labeling` (every poll of a LABELING job): a running batch job only updates
   ``labeling_progress``; one that FAILED, was CANCELLED or EXPIRED fails the job with its error;
   one that SUCCEEDED is read: each output line matched to its input line by its line label and
   judged (:mod:`distillery.labeling._parse`), the labeling report written under the reports
   prefix with every line that is not labeled, the dataset record given the counts, and the job
   FAILED when too few lines came back labeled; else the labeled set, the two-task training file
   and their lineage are written (create-only, deterministic), the tuning job is adopted by its
   label or created from the frozen body, and the job moves to SUBMITTED with ``tuning_job``
   and ``labeling_result``.

Every step can run twice (a crash, a redelivery, two pollers): the files are the same bytes, the
batch and tuning jobs are found by their labels before anything is created, and the claim keeps
two deliveries from creating at once. :func:`cancel_job` ends a job CANCELLED and stops its batch
prediction job; one whose cancel did not get through is kept ``batch_cancel_pending`` until
:func:`cancel_pending_batches` (run by ``reconcile``) gets it through.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from distillery import facts, policy
from distillery.core.errors import (
    ObjectNotFoundError,
    PermanentError,
    RequestRejectedError,
    RetryableError,
)
from distillery.core.jobs import TERMINAL, announce, transition, update_job
from distillery.core.models import JobState, split_gcs_uri
from distillery.core.ports import BatchPredictionJobInfo
from distillery.core.runtime import Dependencies
from distillery.labeling import (
    OUTCOMES,
    LabeledExample,
    LabelingSpec,
    Matched,
    SourceExample,
    TeacherAnswer,
    compare_with_label,
    labeled_lines,
    match_outputs,
    read_source,
    request_lines,
    sha256_of,
    training_file,
    write_once,
)
from distillery.services.launcher import (
    adopt_or_create,
    claim,
    create_or_adopt_tuning_job,
    release,
    tuning_api_version,
)

logger = logging.getLogger(__name__)

#: Batch job states after which its output can be read (PARTIALLY_SUCCEEDED: "some results may
#: be missing due to errors", ``aiplatform_v1.types.JobState``; the missing lines are counted).
BATCH_DONE = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
#: Batch job states that end a job's labeling without output.
BATCH_ENDED = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})

#: How many lines that are not labeled a FAILED job's reason names.
REASON_LINES = 5

#: What the line numbers of a labeling report are (said in every report).
LINE_NUMBERS = (
    "the validated copy's example numbers, from 1; they are the uploaded file's line numbers "
    "too, since a valid upload holds no blank line and every line is one example"
)


class LabelingRecordError(PermanentError):
    """A job record's labeling stage is not what this version can run (say what is missing)."""


def labeling_spec(record: Mapping[str, Any]) -> LabelingSpec:
    """The frozen labeling spec of job ``record``.

    Raises:
        LabelingRecordError: the record holds none, or one that does not parse.
    """
    data = record.get("labeling")
    if not isinstance(data, Mapping):
        raise LabelingRecordError(f"job {record.get('job_id')} has no labeling spec")
    try:
        return LabelingSpec.from_dict(data)
    except TypeError as exc:
        raise LabelingRecordError(
            f"the labeling spec of job {record.get('job_id')} is incomplete ({exc}): rerun the job"
        ) from exc


def report_uri(record: Mapping[str, Any], deps: Dependencies) -> str:
    """Where job ``record``'s labeling report goes: ``reports/<dataset_id>.labeling.<job_id>.json``
    (beside the dataset's validation report)."""
    settings = deps.settings
    dataset = record.get("dataset_id")
    stem = f"{dataset}.labeling.{record['job_id']}" if dataset else f"labeling.{record['job_id']}"
    return f"gs://{settings.bucket}/{settings.reports_prefix}{stem}.json"


# --- start ---------------------------------------------------------------------------------------


def start_labeling(record: dict[str, Any], deps: Dependencies) -> dict[str, Any]:
    """Start the labeling stage of a REQUESTED gemini ``record``: the teacher's requests written,
    its batch prediction job adopted or created, the job moved to LABELING (or FAILED, when the
    stage cannot run as frozen); returns the record.

    Raises:
        LaunchInProgressError: another delivery is starting it now.
        RetryableError: a backing service failed (the claim is released; calling again is safe:
            a batch job the failed call created anyway is found by its label and adopted).
    """
    batch = deps.require_batch()
    job_id = record["job_id"]
    claimed, token = claim(job_id, deps)
    if token is None:
        return claimed
    try:
        spec = labeling_spec(claimed)
        body = claimed.get("labeling_body")
        if not isinstance(body, Mapping) or not (body.get("labels") or {}).get(
            policy.JOB_LABEL_KEY
        ):
            raise LabelingRecordError(
                f"job {job_id} has no labeling_body carrying its {policy.JOB_LABEL_KEY} label: "
                "rerun the job"
            )
        examples = read_source(deps.objects, spec.source_uri)
        write_once(deps.objects, spec.input_uri, request_lines(examples, spec))
        label = body["labels"][policy.JOB_LABEL_KEY]
        info = adopt_or_create(
            "batch prediction job",
            job_id,
            batch.find_by_label(spec.location, policy.JOB_LABEL_KEY, label),
            lambda: batch.create(spec.location, body),
        )
    except PermanentError as exc:
        moved = transition(
            deps,
            job_id,
            JobState.FAILED,
            fields={"tuning_claim": None},
            reason=f"labeling could not start: {exc}",
        )
        return moved.record
    except BaseException:
        release(job_id, token, deps)
        raise
    moved = transition(
        deps,
        job_id,
        JobState.LABELING,
        fields={
            "batch_prediction_job": info.name,
            "labeling_progress": _progress(info),
            "tuning_claim": None,
        },
    )
    if not moved.moved and JobState(moved.record["state"]) in TERMINAL:
        # Cancelled while the batch job was being made: it must not run for nothing.
        return _stop_orphan(job_id, info.name, deps)
    return moved.record


# --- advance -------------------------------------------------------------------------------------


def _progress(info: BatchPredictionJobInfo) -> dict[str, Any]:
    return {
        "batch_state": info.state,
        "successful": info.successful_count,
        "failed": info.failed_count,
        "incomplete": info.incomplete_count,
    }


def advance_labeling(record: Mapping[str, Any], deps: Dependencies) -> dict[str, Any]:
    """Take LABELING job ``record`` as far as its batch prediction job allows (see the module
    docstring) and announce what it reached; returns the record as it stands.

    Raises:
        LaunchInProgressError: another delivery is finishing the stage now.
        RetryableError: a backing service failed; calling again is safe.
    """
    job_id = record["job_id"]
    if record.get("state") != JobState.LABELING.value:
        return dict(record)
    name = record.get("batch_prediction_job")
    if not name:
        moved = transition(
            deps,
            job_id,
            JobState.FAILED,
            reason=f"job {job_id} is LABELING without a batch prediction job: rerun the job",
        )
        announce(deps, moved.record)
        return moved.record
    info = deps.require_batch().get(name)
    if info.state in BATCH_ENDED:
        error = info.error or "no error given"
        moved = transition(
            deps,
            job_id,
            JobState.FAILED,
            fields={"labeling_progress": _progress(info)},
            reason=(
                f"the teacher's batch prediction job {name} ended {info.state}: {error}; "
                "rerun the job once the cause is fixed"
            ),
        )
        announce(deps, moved.record)
        return moved.record
    if info.state not in BATCH_DONE:
        return _record_progress(job_id, info, deps)
    return _finish(job_id, info, deps)


def _record_progress(
    job_id: str, info: BatchPredictionJobInfo, deps: Dependencies
) -> dict[str, Any]:
    """Keep the running batch job's state and counts in ``labeling_progress`` (written only when
    they changed, and only while the job is LABELING)."""
    progress = _progress(info)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current.get("state") != JobState.LABELING.value:
            return None
        if current.get("labeling_progress") == progress:
            return None
        current["labeling_progress"] = progress
        return current

    return update_job(deps, job_id, mutate)


def _stamp(job_id: str, deps: Dependencies) -> dict[str, Any]:
    """The record with ``labeled_at`` set once (when the teacher's output was first read): the
    lineage and the report carry it, and a second pass must write the same bytes."""
    at = deps.clock().isoformat()

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current.get("labeled_at"):
            return None
        current["labeled_at"] = at
        return current

    return update_job(deps, job_id, mutate)


def _output_lines(deps: Dependencies, uri: str) -> Iterator[bytes]:
    bucket, name = split_gcs_uri(uri)
    with deps.objects.open_read(bucket, name) as reader:
        for raw in reader:
            stripped = raw.strip()
            if stripped:
                yield stripped


def _judged(
    spec: LabelingSpec, examples: Sequence[SourceExample], matched: Matched
) -> list[TeacherAnswer]:
    """Every line's answer; in the ``rationales`` mode compared with the user's label."""
    answers = []
    for example in examples:
        answer = matched.answers[example.line]
        if spec.mode == "rationales" and example.label is not None:
            answer = compare_with_label(answer, example.label)
        answers.append(answer)
    return answers


def _labeled_examples(
    spec: LabelingSpec, examples: Sequence[SourceExample], answers: Sequence[TeacherAnswer]
) -> list[LabeledExample]:
    """The labeled set: in the ``labels_and_rationales`` mode the lines the teacher labeled;
    in the ``rationales`` mode every line, with the user's label and the teacher's rationale
    where it gave one that agrees."""
    labeled = []
    for example, answer in zip(examples, answers, strict=True):
        teacher = answer.outcome == "labeled"
        if spec.mode == "rationales":
            assert example.label is not None  # read_source's requests refused unlabeled lines
            labeled.append(
                LabeledExample(
                    line=example.line,
                    contents=example.contents,
                    system_instruction=example.system_instruction,
                    label=example.label,
                    label_by="user",
                    rationale=answer.rationale if teacher else None,
                    rationale_by=spec.teacher_model if teacher else None,
                )
            )
        elif teacher and answer.answer is not None:
            labeled.append(
                LabeledExample(
                    line=example.line,
                    contents=example.contents,
                    system_instruction=example.system_instruction,
                    label=answer.answer,
                    label_by="teacher",
                    rationale=answer.rationale,
                    rationale_by=spec.teacher_model,
                )
            )
    return labeled


def _dump_json(document: Any) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def _reason_lines(problems: Sequence[Mapping[str, Any]]) -> str:
    shown = ", ".join(
        f"{p['line']} ({p['outcome']}: {p['detail']})" for p in problems[:REASON_LINES]
    )
    more = f" and {len(problems) - REASON_LINES:,} more" if len(problems) > REASON_LINES else ""
    return shown + more


def _finish(job_id: str, info: BatchPredictionJobInfo, deps: Dependencies) -> dict[str, Any]:
    """Read the teacher's output and end the stage (see the module docstring)."""
    claimed, token = claim(job_id, deps, JobState.LABELING)
    if token is None:
        announce(deps, claimed)
        return claimed
    try:
        record = _stamp(job_id, deps)
        outcome = _label(record, info, deps)
    except PermanentError as exc:
        moved = transition(
            deps,
            job_id,
            JobState.FAILED,
            fields={"tuning_claim": None},
            reason=f"the teacher's labels could not be used: {exc}",
        )
        announce(deps, moved.record)
        return moved.record
    except BaseException:
        release(job_id, token, deps)
        raise
    target, fields, reason = outcome
    moved = transition(deps, job_id, target, fields={**fields, "tuning_claim": None}, reason=reason)
    if not moved.moved and "tuning_job" in fields:
        # Ended (cancelled) while the tuning job was being made: stop it, it trains for no one.
        _stop_tuning(moved.record, fields["tuning_job"], deps)
    announce(deps, moved.record)
    return moved.record


def _label(
    record: Mapping[str, Any], info: BatchPredictionJobInfo, deps: Dependencies
) -> tuple[JobState, dict[str, Any], str | None]:
    """The labeled set made, judged and written; the state the job goes to, with its fields and
    reason.

    Raises:
        PermanentError: the output, the copy or a file already there cannot be used.
        RetryableError: a backing service failed.
    """
    job_id = record["job_id"]
    spec = labeling_spec(record)
    if not info.output_directory:
        raise ObjectNotFoundError(
            f"the batch prediction job {info.name} ended {info.state} without an output directory"
        )
    output_uri = f"{info.output_directory.rstrip('/')}/{facts.GEMINI_BATCH_PREDICTIONS_FILE}"
    trained_on = ((record.get("request_body") or {}).get("supervisedTuningSpec") or {}).get(
        "trainingDatasetUri"
    )
    if trained_on != spec.training_uri:
        raise LabelingRecordError(
            f"the job's tuning body trains on {trained_on}, not on the labeled training file "
            f"{spec.training_uri}: rerun the job"
        )
    examples = read_source(deps.objects, spec.source_uri)
    if len(examples) != spec.source_examples:
        raise LabelingRecordError(
            f"the validated copy {spec.source_uri} holds {len(examples):,} examples, but the job "
            f"was planned for {spec.source_examples:,}: rerun the job"
        )
    matched = match_outputs(_output_lines(deps, output_uri), [e.line for e in examples])
    answers = _judged(spec, examples, matched)
    counts: Counter[str] = Counter(answer.outcome for answer in answers)
    counts_by_outcome = {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}
    with_rationale = counts_by_outcome["labeled"]
    fraction = with_rationale / len(examples) if examples else 0.0
    passed = bool(examples) and fraction >= spec.min_labeled_fraction
    problems = [
        {"line": a.line, "outcome": a.outcome, "detail": a.detail}
        for a in answers
        if a.outcome != "labeled"
    ]
    versions = sorted({a.model_version for a in answers if a.model_version})
    report = report_uri(record, deps)
    labeled = _labeled_examples(spec, examples, answers)
    training = training_file(labeled, spec, job_id)
    if passed and training.label_tasks == 0:
        passed = False
    resource = info.resource or {}
    document: dict[str, Any] = {
        "job_id": job_id,
        "dataset_id": record.get("dataset_id"),
        "mode": spec.mode,
        "teacher_model": spec.teacher_model,
        "model_versions": versions,
        "batch_prediction_job": info.name,
        "batch_state": info.state,
        "source_uri": spec.source_uri,
        "output_uri": output_uri,
        "labeled_at": record.get("labeled_at"),
        "line_numbers": LINE_NUMBERS,
        "source_examples": len(examples),
        "counts": counts_by_outcome,
        "labeled_fraction": round(fraction, 6),
        "min_labeled_fraction": spec.min_labeled_fraction,
        "passed": passed,
        "lines": problems,
        "stray_output_lines": matched.strays,
    }
    write_once(deps.objects, report, _dump_json(document), content_type="application/json")
    result: dict[str, Any] = {
        "counts": counts_by_outcome,
        "source_examples": len(examples),
        "labeled_fraction": round(fraction, 6),
        "report_uri": report,
        "stray_output_lines": len(matched.strays),
        "model_versions": versions,
        "labeled_at": record.get("labeled_at"),
    }
    _record_on_dataset(record, result, passed, deps)
    if not passed:
        what = "with a rationale" if spec.mode == "rationales" else "labeled"
        reason = (
            f"the teacher's batch job came back with {with_rationale:,} of {len(examples):,} "
            f"examples {what} ({fraction:.1%}), fewer than the job's min_labeled_fraction "
            f"{spec.min_labeled_fraction:.1%}; lines not labeled: {_reason_lines(problems)}; "
            f"every line is listed in {report}: fix or drop those lines and upload the dataset "
            "again, or lower min_labeled_fraction"
        )
        return JobState.FAILED, {"labeling_result": result}, reason
    labeled_file = write_once(deps.objects, spec.labeled_uri, labeled_lines(labeled))
    training_written = write_once(deps.objects, spec.training_uri, training.data)
    lineage = {
        "job_id": job_id,
        "teacher_model": spec.teacher_model,
        "teacher_resource": spec.teacher.resource_name,
        "model_versions": versions,
        "instruction_sha256": spec.instruction_sha256,
        "instruction_version": spec.instruction_version,
        "mode": spec.mode,
        "batch_prediction_job": info.name,
        "batch_create_time": resource.get("createTime"),
        "batch_end_time": resource.get("endTime"),
        "labeled_at": record.get("labeled_at"),
        "source_uri": spec.source_uri,
        "source_sha256": sha256_of(deps.objects, spec.source_uri),
        "source_examples": len(examples),
        "input_uri": spec.input_uri,
        "output_uri": output_uri,
        "counts": counts_by_outcome,
        "label_task_prefix": spec.label_task_prefix,
        "rationale_task_prefix": spec.rationale_task_prefix,
        "rationale_mixture": spec.rationale_mixture,
        "label_tasks": training.label_tasks,
        "rationale_tasks": training.rationale_tasks,
        "labeled_uri": spec.labeled_uri,
        "labeled_sha256": labeled_file.sha256,
        "training_uri": spec.training_uri,
        "training_sha256": training_written.sha256,
        "report_uri": report,
    }
    write_once(deps.objects, spec.lineage_uri, _dump_json(lineage), content_type="application/json")
    result |= {
        "labeled_uri": spec.labeled_uri,
        "labeled_sha256": labeled_file.sha256,
        "training_uri": spec.training_uri,
        "training_sha256": training_written.sha256,
        "lineage_uri": spec.lineage_uri,
        "label_tasks": training.label_tasks,
        "rationale_tasks": training.rationale_tasks,
    }
    try:
        name = create_or_adopt_tuning_job(record, deps)
    except RequestRejectedError as exc:
        return JobState.FAILED, {"labeling_result": result}, str(exc)
    return JobState.SUBMITTED, {"labeling_result": result, "tuning_job": name}, None


def _record_on_dataset(
    record: Mapping[str, Any], result: Mapping[str, Any], passed: bool, deps: Dependencies
) -> None:
    """Give the dataset record the job's labeling counts (``labelings.<job_id>``; written once:
    a second pass finds the same entry and writes nothing). The record's ``labeling`` is
    validation's verdict (``labeled``/``unlabeled``), which this leaves alone."""
    dataset_id = record.get("dataset_id")
    if not dataset_id:
        return
    entry = {
        "counts": dict(result["counts"]),
        "source_examples": result["source_examples"],
        "labeled_fraction": result["labeled_fraction"],
        "report_uri": result["report_uri"],
        "passed": passed,
    }

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        labelings = dict(current.get("labelings") or {})
        if labelings.get(record["job_id"]) == entry:
            return None
        labelings[record["job_id"]] = entry
        current["labelings"] = labelings
        return current

    deps.records.transact(deps.settings.datasets_collection, str(dataset_id), mutate)


# --- cancel --------------------------------------------------------------------------------------


class CancelRefusedError(PermanentError):
    """The job cannot be cancelled from here (the message says why, and what to do)."""


def cancel_job(job_id: str, deps: Dependencies, *, by: str = "an operator") -> dict[str, Any]:
    """Cancel job ``job_id``: a REQUESTED or LABELING job ends CANCELLED and its batch
    prediction job is cancelled; a gemini job's tuning job is asked to stop (the poll records
    CANCELLED once the service has); an ended job is left as it is. Returns the record.

    A batch job whose cancel did not get through (the service did not answer) is kept
    ``batch_cancel_pending``, and :func:`cancel_pending_batches` tries it again.

    Raises:
        ObjectNotFoundError: there is no such job.
        CancelRefusedError: a pipeline job (the pipelines port cannot cancel).
        RetryableError: the tuning job's cancel did not get through; calling again is safe.
    """
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        raise ObjectNotFoundError(f"there is no job {job_id}")
    state = JobState(record["state"])
    if state in (JobState.REQUESTED, JobState.LABELING):
        moved = transition(
            deps,
            job_id,
            JobState.CANCELLED,
            fields={"batch_cancel_pending": bool(record.get("batch_prediction_job"))},
            reason=f"cancelled by {by} while {state.value}",
        )
        record = moved.record
        announce(deps, record)
        if not moved.moved and JobState(record["state"]) not in TERMINAL:
            # It moved on meanwhile (to SUBMITTED): cancel what it is now.
            return cancel_job(job_id, deps, by=by)
    elif state in (JobState.SUBMITTED, JobState.RUNNING):
        if record.get("backend") != "gemini" or not record.get("tuning_job"):
            raise CancelRefusedError(
                f"job {job_id} is a pipeline job; cancel its pipeline job "
                f"{record.get('pipeline_job')} in the console or with gcloud: the job follows"
            )
        try:
            deps.require_tuning().cancel(
                record["tuning_job"], api_version=tuning_api_version(record)
            )
        except RequestRejectedError:
            logger.info("tuning job %s already ended", record["tuning_job"])
        return record
    if record.get("batch_cancel_pending"):
        return _cancel_batch(record, deps)
    return record


def _cancel_batch(record: Mapping[str, Any], deps: Dependencies) -> dict[str, Any]:
    """Cancel the batch job of ended ``record`` and clear ``batch_cancel_pending`` (kept when
    the service did not answer)."""
    name = record.get("batch_prediction_job")
    job_id = record["job_id"]
    if name:
        try:
            deps.require_batch().cancel(name)
        except (RequestRejectedError, ObjectNotFoundError):
            pass  # It ended (or is gone) already: nothing runs.
        except RetryableError as exc:
            logger.warning(
                "the batch prediction job %s of ended job %s could not be cancelled yet: %s",
                name,
                job_id,
                exc,
                extra={"job_id": job_id},
            )
            return dict(record)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or not current.get("batch_cancel_pending"):
            return None
        current["batch_cancel_pending"] = False
        return current

    return deps.records.transact(deps.settings.jobs_collection, job_id, mutate) or dict(record)


def _stop_orphan(job_id: str, name: str, deps: Dependencies) -> dict[str, Any]:
    """Record batch job ``name`` on ended job ``job_id`` and cancel it."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        current["batch_prediction_job"] = current.get("batch_prediction_job") or name
        current["batch_cancel_pending"] = True
        current["tuning_claim"] = None
        return current

    return _cancel_batch(update_job(deps, job_id, mutate), deps)


def _stop_tuning(record: Mapping[str, Any], name: str, deps: Dependencies) -> None:
    """Cancel tuning job ``name``, made for a job that ended meanwhile (best effort: logged)."""
    if record.get("tuning_job") == name:
        return
    try:
        deps.require_tuning().cancel(name, api_version=tuning_api_version(record))
    except (RequestRejectedError, ObjectNotFoundError):
        pass
    except RetryableError as exc:
        logger.warning(
            "tuning job %s of ended job %s is still running: %s", name, record["job_id"], exc
        )


def cancel_pending_batches(deps: Dependencies) -> list[str]:
    """Get through the batch cancels :func:`cancel_job` could not; the job ids now settled."""
    settled = []
    for record in deps.records.list(
        deps.settings.jobs_collection, where={"batch_cancel_pending": True}
    ):
        if not _cancel_batch(record, deps).get("batch_cancel_pending"):
            settled.append(str(record["job_id"]))
    return settled
