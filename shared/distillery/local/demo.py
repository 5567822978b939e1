"""The local demo: drop a dataset into the emulated bucket and follow it through the product.

``scripts/demo`` runs this after making sure the local stack runs (``distillery dev up``). It
generates the example datasets, uploads a broken one (to show a validation report) and a good
one with its eval set, then follows the good one live: validated, launch requested, the request
sent to the local Vertex AI API, training, succeeded, evaluated on the golden set, promoted; it
asks the promoted model a few eval prompts. It leaves the stack running.

The job runs on the stack's backend (``DISTILLERY_BACKEND`` of ``distillery dev up``; default
``gemini``: a ``tuningJobs`` job, polled by ``poll_tuning_jobs``, whose tuned model answers
``:generateContent``), or on the one ``--backend`` names (through the dataset's config sidecar;
``pipeline``: a ``pipelineJobs`` job, a progress bar with step, loss and eval accuracy, a model
that answers ``:predict``). Then it reruns the job with settings that make a worse model
(:data:`WORSE_RERUN`) and shows it REJECTED with the champion unchanged.

On the gemini backend a last act distills step-by-step (:func:`_step_by_step`): an UNLABELED
training set of a family of its own is labeled and explained by the teacher in one batch
prediction job (the LABELING state), the student is tuned on the label task (``predict: ``) and
the rationale task (``explain: ``), judged and decided; a promoted model is asked both tasks.
Locally the teacher is the stack's local one (``distillery dev up`` provides it unless started
with ``--no-teacher``). The pipeline backend skips the act: the seed's pipeline labels inside
its own template.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distillery.commands.ops import dependencies
from distillery.commands.watch import (
    FINAL_STATES,
    Follower,
    StateChange,
    TextOutput,
    wait_until,
)
from distillery.core.errors import DistilleryError
from distillery.core.models import JobState, LaunchRequest, split_gcs_uri
from distillery.core.ports import ObjectInfo
from distillery.core.runtime import Dependencies
from distillery.core.settings import BACKENDS
from distillery.labeling import OUTCOMES, LabelingSpec, champion_prefix, with_prefix
from distillery.local.example_data import Example, generate
from distillery.local.stack.control import StackState, default_state_dir
from distillery.services.datasets import dataset_id
from distillery.services.promoter import family_of

#: The overrides of the demo's rerun, per backend: settings that make a worse model than the
#: first job's (one training step; one epoch at a thousandth of the learning rate).
WORSE_RERUN: dict[str, dict[str, Any]] = {
    "pipeline": {"train_steps": 1},
    "gemini": {"epoch_count": 1, "learning_rate_multiplier": 0.001},
}

#: The step-by-step act's training set: prompts only, which the teacher labels and explains.
#: Each labeled prompt gives two training lines (``predict:`` → label, ``explain:`` →
#: rationale), so the tuning job trains on about twice as many lines, for the default three
#: epochs at batch 8: 300 prompts are about 225 steps (the first act's 1,000 labeled examples
#: are 375), enough for the student to learn the labels (0.98 on the golden set when measured).
#: With the labeling and the golden set the act took four minutes on a busy two-core machine,
#: where the first act's tuning alone took as long: about two minutes on two idle cores.
STEP_BY_STEP_EXAMPLES = 300
#: Its eval set (the new family's golden set, asked one prompt at a time).
STEP_BY_STEP_EVAL_EXAMPLES = 50
#: A seed of its own, so its prompts are not the first act's (the generator's default, 7) nor
#: those the local teacher was trained on (:data:`distillery.local.teachers.TEACHER_SEED`).
STEP_BY_STEP_SEED = 11
#: What a stack without a local teacher is told (the teacher's batch job fails and says why).
NO_TEACHER_HINT = (
    "   `distillery dev up` provides a local teacher unless it is started with `--no-teacher`: "
    "restart the stack without that flag (`distillery dev down`, then `distillery dev up`)"
)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _jsonl(examples: Sequence[Any]) -> bytes:
    return "".join(e.to_json() + "\n" for e in examples).encode()


def run(state_dir: Path, name: str, backend: str | None = None) -> int:
    """Run the demo against the stack recorded in ``state_dir``; the exit code.

    ``backend`` (one of BACKENDS) is written into the dataset's config sidecar; None: the job
    runs on the stack's own backend.

    Raises:
        DistilleryError: a job did not end within the demo's time (or a port failed).
        TimeoutError: a step the demo waits for did not happen in time.
    """
    state = StackState.load(state_dir)
    if state is None or not state.any_running():
        _say("No local stack is running: start it with `distillery dev up` (scripts/demo does).")
        return 3
    os.environ.update(state.env)
    deps = dependencies("bucket")
    settings, objects, records = deps.settings, deps.objects, deps.records
    bucket = settings.bucket
    chosen = backend or settings.backend

    _say(f"1. A broken dataset: gs://{bucket}/datasets/{name}-broken.jsonl")
    broken = b'{"input_text": "Classify: great film", "output_text": "entertainment"}\n' + (
        b'{"input_text": "", "output_text": "sports"}\n{"prompt": "no input_text here"}\nnot json\n'
    )
    info = objects.write_bytes(bucket, f"datasets/{name}-broken.jsonl", broken)
    record = wait_until(lambda: _dataset_record(deps, info), "the broken dataset's report", 120)
    _say(f"   verdict: {record['status'].upper()}  (report: {record['report_uri']})")
    for rule in record["reports"][0]["errors"]:
        for finding in rule["findings"]:
            where = f"line {finding['line']}" if finding.get("line") else "file"
            field = f", {finding['field']}" if finding.get("field") else ""
            _say(f"   - {where}{field}: {finding['message']}")
    _say()

    train, evaluation = generate(1000, 100)
    _say(f"2. The example task: {len(train)} labeled examples + an eval set of {len(evaluation)}")
    _say(f"   e.g. {train[0].input_text!r} -> {train[0].output_text!r}")
    objects.write_bytes(bucket, f"datasets/{name}.eval.jsonl", _jsonl(evaluation))
    if backend:
        objects.write_bytes(
            bucket, f"datasets/{name}.config.json", json.dumps({"backend": backend}).encode()
        )
        _say(f"   config sidecar datasets/{name}.config.json: backend {backend}")
    else:
        _say(f"   backend: {chosen} (the stack's DISTILLERY_BACKEND)")
    info = objects.write_bytes(bucket, f"datasets/{name}.jsonl", _jsonl(train))
    _say(f"   uploaded gs://{bucket}/{info.name} (generation {info.generation})")

    record = _validated(deps, info)
    report = record["reports"][0]
    _say(
        f"   validated: {record['status'].upper()}, {report['examples']} examples, "
        f"{report['warning_count']} warning(s)"
    )
    _say(f"   immutable copy: {record.get('validated_uri')}")
    if record["status"] != "valid":
        return 1
    _say(f"   LaunchRequest published on {settings.launch_topic} (request_id {record['id']})")
    _say()

    def submitted() -> dict[str, Any] | None:
        found = records.list(settings.jobs_collection, where={"request_id": record["id"]})
        return found[0] if found and found[0]["state"] != "REQUESTED" else None

    launched = wait_until(submitted, "the launcher", 120)
    _say(f"3. Job {launched['job_id']}: {launched['state']}")
    for reason in launched.get("reasons", []):
        _say(f"   - {reason}")
    resource, create = (
        (launched.get("tuning_job"), "tuningJobs.create")
        if chosen == "gemini"
        else (launched.get("pipeline_job"), "pipelineJobs.create")
    )
    if not resource:
        _say(f"   reason: {launched.get('reason')}")
        return 1
    _say(f"   {'tuning' if chosen == 'gemini' else 'pipeline'} job: {resource}")
    _say(f"   request body sent to {create}:")
    for line in json.dumps(launched["request_body"], indent=2).splitlines():
        _say(f"     {line}")
    _say()

    if chosen == "gemini":
        _say("4. Following the job live (the status topic; poll_tuning_jobs reads the tuning job):")
    else:
        _say("4. Following the job live (the status topic, and the pipeline job's progress):")
    final = _follow(deps, launched["job_id"])
    job = records.get(settings.jobs_collection, launched["job_id"]) or {}
    if final != "PROMOTED":
        _say(f"   the job ended {final}: {job.get('reason')}")
        return 1
    _say()
    recorder = "poll_tuning_jobs" if chosen == "gemini" else "track_status"
    _say(f"5. Job {job['job_id']}: its model and eval metrics (recorded by {recorder})")
    _say(f"   model: {job.get('model')}")
    for metric, value in sorted((job.get("metrics") or {}).items()):
        _say(f"   {metric:<45} {value:.4f}")
    endpoint = job["endpoint"]
    _evaluation(job)
    _say(f"   promote_model: PROMOTED to {endpoint}")
    sample = evaluation[:8]
    _ask(deps, chosen, endpoint, sample)
    _say()

    worse_overrides = WORSE_RERUN[chosen]
    settings_text = ", ".join(f"{key} {value}" for key, value in worse_overrides.items())
    _say(f"6. A rerun with settings that make a worse model ({settings_text}):")
    rerun = LaunchRequest(
        rerun_of=job["job_id"],
        overrides=worse_overrides,
        request_id=f"{name}-worse-rerun",
        requested_by="demo",
    )
    deps.publisher.publish(settings.launch_topic, rerun.to_bytes())
    _say(f"   LaunchRequest published on {settings.launch_topic}: rerun_of {job['job_id']}")
    worse = wait_until(
        lambda: _first(
            records.list(settings.jobs_collection, where={"request_id": rerun.request_id})
        ),
        "the rerun's job",
        120,
    )
    final = _follow(deps, worse["job_id"])
    if final != "REJECTED":
        _say(f"   expected REJECTED, the rerun ended {final}")
        return 1
    worse = records.get(settings.jobs_collection, worse["job_id"]) or worse
    _evaluation(worse)
    _say("   rejected because:")
    for failure in (worse.get("promotion") or {}).get("failures") or [worse.get("reason")]:
        _say(f"   - {failure}")
    family = records.get(settings.models_collection, family_of(job)) or {}
    champion = family.get("champion") or {}
    _say(f"   champion unchanged: job {champion.get('job_id')}, model {champion.get('model')}")
    if chosen == "gemini":
        # A tuned Gemini champion serves from its own endpoint (crowned by record).
        answer = deps.require_tuning().generate(endpoint, sample[0].input_text)
        _say(f"   its endpoint still answers: {endpoint} -> {answer!r}")
    else:
        still = deps.require_endpoints().predict(endpoint, [sample[0].input_text])
        _say(f"   the endpoint still answers with it: {still.model} -> {still.contents[0]!r}")
    _say()
    if chosen == "gemini":
        if _step_by_step(deps, name, act=7) != 0:
            return 1
    else:
        _say(
            f"7. Distilling step-by-step from an unlabeled set: skipped on the {chosen} backend "
            "(the seed's pipeline labels inside its own template; the LABELING stage is the "
            "gemini backend's)"
        )
    _say()
    _closing(job)
    return 0


def _dataset_record(deps: Dependencies, info: ObjectInfo) -> dict[str, Any] | None:
    """The dataset record of the uploaded object ``info`` once its validation wrote a verdict."""
    settings = deps.settings
    record = deps.records.get(
        settings.datasets_collection, dataset_id(settings.bucket, info.name, info.generation)
    )
    return record if record and record.get("status") else None


def _validated(deps: Dependencies, info: ObjectInfo) -> dict[str, Any]:
    """The dataset record of ``info`` once validated and its launch decided (published, or
    none to publish).

    Raises:
        TimeoutError: not within the demo's time.
    """

    def decided() -> dict[str, Any] | None:
        found = _dataset_record(deps, info)
        launch_state = (found or {}).get("launch", {}).get("state")
        return found if launch_state in ("published", "not_applicable") else None

    return wait_until(decided, "validation", 120)


def _step_by_step(deps: Dependencies, name: str, *, act: int) -> int:
    """Act ``act``: an unlabeled training set (a family of its own) labeled and explained by the
    teacher, the student tuned on the two tasks, judged and decided; a promoted model asked the
    label task and the rationale task. The exit code (1: the job did not end PROMOTED).

    Raises:
        DistilleryError: the job did not end within the demo's time (or a port failed).
        TimeoutError: a step the demo waits for did not happen in time.
    """
    settings, objects, records = deps.settings, deps.objects, deps.records
    bucket, stem = settings.bucket, f"datasets/{name}-step-by-step"
    prompts, evaluation = generate(
        STEP_BY_STEP_EXAMPLES, STEP_BY_STEP_EVAL_EXAMPLES, seed=STEP_BY_STEP_SEED, labeled=False
    )
    _say(
        f"{act}. Distilling step-by-step: {len(prompts)} UNLABELED prompts (no output_text) "
        f"+ a labeled eval set of {len(evaluation)}, a family of its own"
    )
    _say(f"   e.g. {prompts[0].input_text!r} (no answer: the teacher writes it)")
    objects.write_bytes(bucket, f"{stem}.eval.jsonl", _jsonl(evaluation))
    info = objects.write_bytes(bucket, f"{stem}.jsonl", _jsonl(prompts))
    _say(f"   uploaded gs://{bucket}/{stem}.eval.jsonl, then gs://{bucket}/{info.name}")

    record = _validated(deps, info)
    _say(
        f"   validated: {record['status'].upper()}, {record['reports'][0]['examples']} "
        f"examples, {record.get('labeling')}"
    )
    if record["status"] != "valid":
        return 1
    job = wait_until(
        lambda: _first(records.list(settings.jobs_collection, where={"request_id": record["id"]})),
        "the launcher",
        120,
    )
    if not job.get("labeling"):
        _say(f"   job {job['job_id']} has no labeling stage: {job['state']} {job.get('reason')}")
        return 1
    spec = LabelingSpec.from_dict(job["labeling"])
    _say(
        f"   job {job['job_id']}: the teacher {spec.teacher_model} labels and explains every "
        "prompt in one batch prediction job (LABELING),"
    )
    _say(
        f"   then the student is tuned on two tasks, {spec.label_task_prefix!r}prompt -> label "
        f"and {spec.rationale_task_prefix!r}prompt -> rationale, and judged on the label task"
    )
    _say(
        f"   (the teacher's batch job is estimated at ${spec.estimated_cost_usd:.2f} on Google "
        "Cloud, at the batch price)"
    )
    _say("   Following the job live (the status topic):")

    def narrate(change: StateChange) -> None:
        current = records.get(settings.jobs_collection, change.job_id) or {}
        if change.state == JobState.LABELING and current.get("batch_prediction_job"):
            _say(f"   batch prediction job: {current['batch_prediction_job']}")
            _say(f"   teacher model: {spec.teacher.resource_name}")
        elif change.state in (JobState.SUBMITTED, JobState.FAILED):
            _labeling(deps, current)

    final = _follow(deps, job["job_id"], then=narrate)
    job = records.get(settings.jobs_collection, job["job_id"]) or job
    if final != "PROMOTED":
        _evaluation(job)
        reason = str(job.get("reason") or "no reason recorded")
        _say(f"   the job ended {final}: {reason}")
        if "no local teacher" in reason:
            _say(NO_TEACHER_HINT)
        return 1
    _evaluation(job)
    family = records.get(settings.models_collection, family_of(job)) or {}
    champion = family.get("champion") or {}
    prefix = champion_prefix(champion)
    endpoint = str(champion.get("endpoint") or job["endpoint"])
    _say(f"   promote_model: PROMOTED to {endpoint} (family {family_of(job)})")
    _say(f"   its champion entry's prompt_prefix: {prefix!r} (what `distillery predict` sends)")
    tuning = deps.require_tuning()
    _say("   the label task, asked as `distillery predict` asks a champion (:generateContent):")
    for example in evaluation[:2]:
        answer = tuning.generate(endpoint, with_prefix(example.input_text, prefix))
        text = example.input_text.rsplit("Text: ", 1)[-1]
        _say(f"   {prefix}{text[:60]:<60} -> {answer!r} (expected {example.output_text!r})")
    example = evaluation[0]
    explained = tuning.generate(
        endpoint, with_prefix(example.input_text, spec.rationale_task_prefix)
    )
    text = example.input_text.rsplit("Text: ", 1)[-1]
    _say("   the rationale task (its reasoning, which it learned from the teacher):")
    _say(f"   {spec.rationale_task_prefix}{text[:60]} -> {explained!r}")
    return 0


def _labeling(deps: Dependencies, job: dict[str, Any]) -> None:
    """Say what the teacher's batch job gave ``job``: the counts, the report, the labeled set
    and its lineage, one labeled line with its rationale, and the two-task file's tasks."""
    result = job.get("labeling_result") or {}
    counts = result.get("counts") or {}
    if not counts:
        return
    spec = LabelingSpec.from_dict(job["labeling"])
    shown = ", ".join(f"{outcome} {counts.get(outcome, 0)}" for outcome in OUTCOMES)
    _say(
        f"   the teacher's answers: {shown} (of {result.get('source_examples')}: "
        f"{result.get('labeled_fraction', 0):.1%} labeled, "
        f"{spec.min_labeled_fraction:.0%} needed)"
    )
    _say(f"   labeling report: {result.get('report_uri')}")
    labeled_uri, lineage_uri = result.get("labeled_uri"), result.get("lineage_uri")
    if not labeled_uri:
        return
    _say(f"   labeled set: {labeled_uri}")
    _say(f"   lineage:     {lineage_uri}")
    lines = deps.objects.read_bytes(*split_gcs_uri(str(labeled_uri))).splitlines()
    explained = [entry for entry in map(json.loads, lines) if entry.get("rationale")]
    if explained:
        entry = explained[0]
        prompt = entry["contents"][-1]["parts"][0]["text"].rsplit("Text: ", 1)[-1]
        _say(f"   e.g. line {entry['line']}: {prompt!r} -> {entry['label']!r}")
        _say(f"        rationale ({entry.get('rationale_by')}): {entry['rationale']!r}")
    _say(
        f"   two-task training file: {result.get('training_uri')}: "
        f"{result.get('label_tasks')} label tasks ({spec.label_task_prefix!r}) + "
        f"{result.get('rationale_tasks')} rationale tasks ({spec.rationale_task_prefix!r})"
    )


def _ask(deps: Dependencies, backend: str, endpoint: str, sample: Sequence[Example]) -> None:
    """Ask the promoted model ``sample``'s prompts and say how many it answered right: a tuned
    Gemini model through ``:generateContent``, a pipeline's model through ``:predict``."""
    prompts = [e.input_text for e in sample]
    if backend == "gemini":
        _say("   a few eval prompts sent to the endpoint (:generateContent):")
        tuning = deps.require_tuning()
        answers = [tuning.generate(endpoint, prompt) for prompt in prompts]
    else:
        _say("   a few eval prompts sent to the endpoint (:predict):")
        answers = list(deps.require_endpoints().predict(endpoint, prompts).contents)
    correct = 0
    for example, answer in zip(sample, answers, strict=True):
        correct += answer == example.output_text
        text = example.input_text.rsplit("Text: ", 1)[-1]
        _say(f"   {text[:60]:<60} -> {answer!r} (expected {example.output_text!r})")
    _say(f"   {correct}/{len(sample)} correct")


def _closing(job: dict[str, Any]) -> None:
    _say('The stack keeps running. Point a shell at it with `eval "$(distillery dev env)"`, then')
    _say("try `distillery jobs`, `distillery show JOB`, `distillery watch`, `distillery predict")
    _say(f"{family_of(job)} TEXT` or `distillery rollback FAMILY`.")
    _say("`distillery dev status` shows the stack and `distillery dev down` stops it.")


def _evaluation(job: dict[str, Any]) -> None:
    """Say what the golden-set evaluation of ``job`` found, side by side, and where its report
    is."""
    promotion = job.get("promotion") or {}
    evaluated = promotion.get("evaluation") or {}
    golden = evaluated.get("golden") or {}
    if golden:
        _say(
            f"   golden set: {golden.get('examples')} examples, {golden.get('source')} "
            f"({evaluated.get('task')}: {evaluated.get('task_how')})"
        )
    mine, theirs = evaluated.get("candidate") or {}, evaluated.get("champion") or {}
    for metric in sorted(mine):
        versus = f"   champion {theirs[metric]:.4f}" if metric in theirs else ""
        _say(f"   {metric:<12} candidate {mine[metric]:.4f}{versus}")
    comparison = evaluated.get("comparison")
    if comparison:
        _say(
            f"   paired difference {comparison['mean_difference']:+.4f}, "
            f"{comparison['confidence']:.0%} CI {comparison['low']:+.4f} to "
            f"{comparison['high']:+.4f} ({comparison['resamples']} resamples)"
        )
    report = promotion.get("report") or {}
    if report:
        _say(f"   decision report: {report.get('html') or report.get('json')}")
        _say(f"   (open it with `distillery report {job['job_id']}`)")


def _first(found: list[dict[str, Any]]) -> dict[str, Any] | None:
    return found[0] if found else None


class _Narrated(TextOutput):
    """A :class:`TextOutput` that calls ``then`` after each state's line."""

    def __init__(self, then: Callable[[StateChange], None]) -> None:
        super().__init__()
        self._then = then

    def state(self, change: StateChange) -> None:
        super().state(change)
        self._then(change)


def _follow(
    deps: Dependencies, job_id: str, then: Callable[[StateChange], None] | None = None
) -> str:
    """Follow ``job_id`` on the status topic until it ends; its final state. ``then`` is called
    after each state's line (in order: every state of the job's history)."""
    from distillery.adapters.pubsub import TemporarySubscription

    output = TextOutput() if then is None else _Narrated(then)
    with TemporarySubscription(deps.settings.project, deps.settings.status_topic) as feed:
        follower = Follower(deps, feed, output, job_id=job_id, poll_interval=0.5)
        state = follower.follow(timeout=900)
    if state not in FINAL_STATES:
        raise DistilleryError(f"job {job_id} is still {state} after 900 s")
    return str(state)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m distillery.local.demo [--state-dir DIR] [--name NAME] [--backend B]``."""
    parser = argparse.ArgumentParser(
        prog="distillery-demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--name", default=f"demo-{int(time.time())}")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="the backend the demo's job runs on (default: the stack's DISTILLERY_BACKEND)",
    )
    args = parser.parse_args(argv)
    try:
        return run(args.state_dir or default_state_dir(), args.name, args.backend)
    except (DistilleryError, TimeoutError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
