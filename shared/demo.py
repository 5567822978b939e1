"""The local demo: drop a dataset into the emulated bucket and follow it through the product.

``scripts/demo`` runs this after making sure the local stack runs (``distillery dev up``). It
generates the example datasets, uploads a broken one (to show a validation report) and a good
one with its eval set, then follows the good one live: validated, copied, launch requested, job
submitted to the local Vertex AI API, and the pipeline job's state. It prints what a user would
look at and leaves the stack running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from distillery.datasets import dataset_id
from distillery.errors import DistilleryError
from distillery.example_data import generate
from distillery.localstack.stack import StackState, default_state_dir
from distillery.pipeline_outputs import read_progress
from distillery.settings import Settings

T = TypeVar("T")

TERMINAL_PIPELINE_STATES = {
    "PIPELINE_STATE_SUCCEEDED",
    "PIPELINE_STATE_FAILED",
    "PIPELINE_STATE_CANCELLED",
}


def _say(text: str = "") -> None:
    print(text, flush=True)


def _wait(probe: Callable[[], T | None], what: str, timeout: float = 120.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DistilleryError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def _jsonl(examples: Sequence[Any]) -> bytes:
    return "".join(e.to_json() + "\n" for e in examples).encode()


def _predict(api_endpoint: str, endpoint: str, prompt: str) -> str:
    """One prediction from a local endpoint (the text-model ``:predict`` shape)."""
    body = json.dumps({"instances": [{"prompt": prompt}]}).encode()
    request = urllib.request.Request(
        f"{api_endpoint}/v1/{endpoint}:predict",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: str = json.loads(response.read())["predictions"][0]["content"]
    return answer


def run(state_dir: Path, name: str) -> int:
    """Run the demo against the stack recorded in ``state_dir``; the exit code."""
    state = StackState.load(state_dir)
    if state is None or not state.any_running():
        _say("No local stack is running: start it with `distillery dev up` (scripts/demo does).")
        return 3
    os.environ.update(state.env)
    from distillery.adapters import FirestoreRecordStore, GcsObjectStore
    from distillery.adapters.vertex import VertexPipelineAdapter

    settings = Settings.from_env()
    objects = GcsObjectStore(project=settings.project)
    records = FirestoreRecordStore(settings.project)
    vertex = VertexPipelineAdapter(settings.project, api_endpoint=settings.vertex_api_endpoint)
    bucket = settings.bucket

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
    record = _wait(lambda: record_of(info.name, info.generation), "the broken dataset's report")
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
    info = objects.write_bytes(bucket, f"datasets/{name}.jsonl", _jsonl(train))
    _say(f"   uploaded gs://{bucket}/{info.name} (generation {info.generation})")

    def validated() -> dict[str, Any] | None:
        found = record_of(info.name, info.generation)
        launch_state = (found or {}).get("launch", {}).get("state")
        return found if launch_state in ("published", "not_applicable") else None

    record = _wait(validated, "validation")
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

    def job() -> dict[str, Any] | None:
        found = records.list(settings.jobs_collection, where={"request_id": record["id"]})
        return found[0] if found and found[0]["state"] != "REQUESTED" else None

    launched = _wait(job, "the launcher")
    _say(f"3. Job {launched['job_id']}: {launched['state']}")
    for reason in launched.get("reasons", []):
        _say(f"   - {reason}")
    if launched["state"] != "SUBMITTED":
        _say(f"   reason: {launched.get('reason')}")
        return 1
    _say(f"   pipeline job: {launched['pipeline_job']}")
    _say("   request body sent to pipelineJobs.create:")
    for line in json.dumps(launched["request_body"], indent=2).splitlines():
        _say(f"     {line}")
    _say()

    _say("4. The pipeline job on the local Vertex AI API (training on this machine's CPU):")
    seen: set[str] = set()
    last_step: list[Any] = [None]

    def pipeline_done() -> str | None:
        info = vertex.get(launched["pipeline_job"])
        if info.state not in seen:
            seen.add(info.state)
            _say(f"   {info.state}")
        progress = read_progress(info)
        if progress.get("step") not in (None, last_step[0]):
            last_step[0] = progress["step"]
            loss = progress.get("train_total_loss")
            accuracy = progress.get("eval_fraction_of_correct_next_step_preds")
            # Struct values come back as floats.
            line = f"   step {int(progress['step'])}/{int(progress.get('train_steps') or 0)}"
            if isinstance(loss, int | float):
                line += f"  loss {loss:.4f}"
            if isinstance(accuracy, int | float):
                line += f"  eval token accuracy {accuracy:.3f}"
            _say(line)
        return info.state if info.state in TERMINAL_PIPELINE_STATES else None

    final = _wait(pipeline_done, "the pipeline job to finish", timeout=900)
    if final != "PIPELINE_STATE_SUCCEEDED":
        _say(f"   {vertex.get(launched['pipeline_job']).error}")
        return 1

    def tracked() -> dict[str, Any] | None:
        job = records.get(settings.jobs_collection, launched["job_id"])
        # promote_model may already have moved it on (PROMOTED or REJECTED): look at its history.
        reached = [entry["state"] for entry in (job or {}).get("history", [])]
        return job if job and "SUCCEEDED" in reached else None

    finished = _wait(tracked, "track_status to record the result")
    _say(f"5. Job {finished['job_id']}: SUCCEEDED (recorded by track_status)")
    _say(f"   model: {finished.get('model')}")
    for name, value in sorted((finished.get("metrics") or {}).items()):
        _say(f"   {name:<45} {value:.4f}")
    _say()

    def decided() -> dict[str, Any] | None:
        job = records.get(settings.jobs_collection, launched["job_id"])
        return job if job and job["state"] in ("PROMOTED", "REJECTED") else None

    decision = _wait(decided, "promote_model's decision")
    _say(f"6. promote_model: {decision['state']}")
    if decision["state"] != "PROMOTED":
        _say(f"   reason: {decision.get('reason')}")
        return 1
    endpoint = decision["endpoint"]
    _say(f"   endpoint: {endpoint}")
    _say("   a few eval prompts sent to the endpoint (:predict):")
    correct = 0
    sample = evaluation[:8]
    for example in sample:
        answer = _predict(settings.vertex_api_endpoint, endpoint, example.input_text)
        correct += answer == example.output_text
        text = example.input_text.rsplit("Text: ", 1)[-1]
        _say(f"   {text[:60]:<60} -> {answer!r} (expected {example.output_text!r})")
    _say(f"   {correct}/{len(sample)} correct")
    _say()
    _say('The stack keeps running: `eval "$(distillery dev env)"` points gcloud-style clients')
    _say("at it, `distillery dev status` shows it, and `distillery dev down` stops it.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m distillery.demo [--state-dir DIR] [--name NAME]``."""
    parser = argparse.ArgumentParser(prog="distillery-demo", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--name", default=f"demo-{int(time.time())}")
    args = parser.parse_args(argv)
    try:
        return run(args.state_dir or default_state_dir(), args.name)
    except DistilleryError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
