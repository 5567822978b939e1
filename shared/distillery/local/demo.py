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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distillery.commands.ops import dependencies
from distillery.commands.watch import FINAL_STATES, Follower, TextOutput, wait_until
from distillery.core.errors import DistilleryError
from distillery.core.models import LaunchRequest
from distillery.core.runtime import Dependencies
from distillery.core.settings import BACKENDS
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

    def record_of(object_name: str, generation: int) -> dict[str, Any] | None:
        record = records.get(
            settings.datasets_collection, dataset_id(bucket, object_name, generation)
        )
        return record if record and record.get("status") else None

    _say(f"1. A broken dataset: gs://{bucket}/datasets/{name}-broken.jsonl")
    broken = b'{"input_text": "Classify: great film", "output_text": "entertainment"}\n' + (
        b'{"input_text": "", "output_text": "sports"}\n{"prompt": "no input_text here"}\nnot json\n'
    )
    info = objects.write_bytes(bucket, f"datasets/{name}-broken.jsonl", broken)
    record = wait_until(
        lambda: record_of(info.name, info.generation), "the broken dataset's report", 120
    )
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

    def validated() -> dict[str, Any] | None:
        found = record_of(info.name, info.generation)
        launch_state = (found or {}).get("launch", {}).get("state")
        return found if launch_state in ("published", "not_applicable") else None

    record = wait_until(validated, "validation", 120)
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
    _closing(job)
    return 0


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


def _follow(deps: Dependencies, job_id: str) -> str:
    """Follow ``job_id`` on the status topic until it ends; its final state."""
    from distillery.adapters.pubsub import TemporarySubscription

    with TemporarySubscription(deps.settings.project, deps.settings.status_topic) as feed:
        follower = Follower(deps, feed, TextOutput(), job_id=job_id, poll_interval=0.5)
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
