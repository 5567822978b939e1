"""launch_job end to end on the local stack: upload → validation → LaunchRequest → the launch_job
function → one pipeline job on the local Vertex AI API, recorded in Firestore and announced."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from distillery import policy
from distillery.adapters.vertex import VertexPipelineAdapter
from distillery.core.errors import ObjectNotFoundError, ServiceUnavailableError
from distillery.core.models import LaunchRequest, StatusEvent
from distillery.core.ports import PipelineJobInfo
from distillery.core.runtime import Dependencies
from distillery.local.example_data import generate
from distillery.services.launcher import launch
from tests.helpers import jsonl, post_cloudevent, wait_for

pytestmark = pytest.mark.integration


ENDPOINT = "DISTILLERY_VERTEX_API_ENDPOINT"


def _vertex(stack: Any) -> VertexPipelineAdapter:
    return VertexPipelineAdapter(stack.project, api_endpoint=stack.env[ENDPOINT])


def _jobs(stack: Any) -> dict[str, dict[str, Any]]:
    docs = stack.firestore_client().collection("jobs").stream()
    return {doc.id: doc.to_dict() for doc in docs}


#: A submitted job moves on by itself (track_status follows the pipeline job), so "SUBMITTED"
#: means "reached SUBMITTED": it is in the job's history.
def _job_in_state(stack: Any, state: str, *, count: int = 1) -> dict[str, dict[str, Any]]:
    def probe() -> dict[str, dict[str, Any]] | None:
        jobs = {
            k: v
            for k, v in _jobs(stack).items()
            if state in [h["state"] for h in v.get("history", [])]
        }
        return jobs if len(jobs) >= count else None

    found: dict[str, dict[str, Any]] = wait_for(probe, timeout=60, what=f"{count} job(s) {state}")
    return found


def _upload_dataset(stack: Any, name: str = "news", config: bytes | None = None) -> LaunchRequest:
    train, evaluation = generate(240, 20)
    launches = stack.subscribe(stack.settings.launch_topic)
    stack.upload(f"datasets/{name}.eval.jsonl", jsonl(evaluation))
    if config is not None:
        stack.upload(f"datasets/{name}.config.json", config)
    stack.upload(f"datasets/{name}.jsonl", jsonl(train))
    [message] = launches.pull(max_messages=1, timeout=60)
    launches.close()
    return LaunchRequest.model_validate(message.json())


def test_launch_job_upload_creates_one_pipeline_job_with_the_exact_request(stack: Any) -> None:
    statuses = stack.subscribe(stack.settings.status_topic)
    request = _upload_dataset(stack, config=b'{"train_steps": 120, "learning_rate_multiplier": 2}')
    [(job_id, record)] = _job_in_state(stack, "SUBMITTED").items()

    job = _vertex(stack).get(record["pipeline_job"])
    assert job.name == f"projects/{stack.project}/locations/us-central1/pipelineJobs/{job_id}"
    assert job.resource is not None
    assert job.resource["templateUri"] == (
        "https://us-kfp.pkg.dev/ml-pipeline/distillation/distillation/v1.0.0"
    )
    assert job.resource["displayName"] == "news-distilled"
    runtime = job.resource["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == f"gs://{stack.bucket}/pipeline-root/news-distilled"
    assert runtime["parameterValues"] == {
        "project": stack.project,
        "model_display_name": "news-distilled",
        "dataset_uri": request.dataset_uri,
        "location": "us-central1",
        "accelerator_type": "GPU",
        "teacher_model_reference": "text-unicorn@001",
        "student_model_reference": "text-bison@002",
        "train_steps": 120,
        "learning_rate_multiplier": 2,
        "evaluation_data_uri": request.eval_dataset_uri,
        "evaluation_interval": 20,
        "enable_early_stopping": True,
        "enable_checkpoint_selection": "default",
    }
    assert "encryptionSpec" not in job.resource or not job.resource["encryptionSpec"]
    assert record["spec"]["batch_size"] == 8
    assert record["spec"]["epochs"] == pytest.approx(120 * 8 / 240)

    seen: list[StatusEvent] = []

    def submitted_announced() -> bool:
        seen.extend(StatusEvent.model_validate(m.json()) for m in statuses.pull(5, timeout=2))
        return any(e.state.value == "SUBMITTED" for e in seen)

    wait_for(submitted_announced, timeout=30, what="SUBMITTED on the status topic")
    # At least once, in order: the launcher and track_status may both announce a state.
    states = list(dict.fromkeys((e.job_id, e.state.value) for e in seen))
    assert states[:2] == [(job_id, "REQUESTED"), (job_id, "SUBMITTED")]
    submitted = next(e for e in seen if e.state.value == "SUBMITTED")
    assert submitted.pipeline_job == job.name


def test_launch_job_twenty_redeliveries_make_one_job(stack: Any) -> None:
    request = _upload_dataset(stack)
    [job_id] = _job_in_state(stack, "SUBMITTED")
    # The same message delivered 20 more times, as Eventarc would, 4 at a time; each delivery is
    # acknowledged (2xx) only once it has been handled.
    url = stack.function_url("launch_job")
    event = _published(stack, request.to_bytes())
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: _deliver_until_acknowledged(url, event), range(20)))
    assert list(_jobs(stack)) == [job_id]
    assert _vertex(stack).get(_jobs(stack)[job_id]["pipeline_job"]).job_id == job_id


def _deliver_until_acknowledged(url: str, event: CloudEvent) -> None:
    """Deliver ``event`` until the function acknowledges it (2xx), as Pub/Sub redelivers after a
    500 (e.g. a transaction that lost to concurrent writers on the emulator)."""
    wait_for(lambda: post_cloudevent(url, event) == 200, timeout=60, interval=1.0)


def _published(stack: Any, data: bytes) -> CloudEvent:
    """The messagePublished CloudEvent Eventarc delivers for ``data`` on the launch topic."""
    topic = f"projects/{stack.project}/topics/{stack.settings.launch_topic}"
    return CloudEvent(
        {
            "id": "redelivered-launch-1",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/{topic}",
        },
        {
            "message": {"data": base64.b64encode(data).decode(), "messageId": "1"},
            "subscription": f"projects/{stack.project}/subscriptions/redelivery-test",
        },
    )


def test_launch_job_rerun_launches_a_second_job_once(stack: Any) -> None:
    _upload_dataset(stack)
    [original] = _job_in_state(stack, "SUBMITTED")
    rerun = LaunchRequest(rerun_of=original, overrides={"train_steps": 500}, request_id="rerun-1")
    stack.publish(stack.settings.launch_topic, rerun.to_bytes())
    stack.publish(stack.settings.launch_topic, rerun.to_bytes())
    jobs = _job_in_state(stack, "SUBMITTED", count=2)
    [rerun_id] = [job_id for job_id in jobs if job_id != original]
    record = jobs[rerun_id]
    assert record["rerun_of"] == original
    job = _vertex(stack).get(record["pipeline_job"])
    assert job.resource is not None
    assert job.resource["runtimeConfig"]["parameterValues"]["train_steps"] == 500
    # One more delivery of the rerun, answered only once handled: still two jobs.
    _deliver_until_acknowledged(
        stack.function_url("launch_job"), _published(stack, rerun.to_bytes())
    )
    assert len(_jobs(stack)) == 2


def test_launch_job_policy_refusal_submits_nothing(stack: Any) -> None:
    _upload_dataset(stack)
    [original] = _job_in_state(stack, "SUBMITTED")
    statuses = stack.subscribe(stack.settings.status_topic)
    key = f"projects/{stack.project}/locations/us-central1/keyRings/ring/cryptoKeys/key"
    refused = LaunchRequest(
        rerun_of=original,
        overrides={"accelerator_type": "TPU", "encryption_spec_key_name": key},
        request_id="tpu-with-cmek",
    )
    stack.publish(stack.settings.launch_topic, refused.to_bytes())
    [(job_id, record)] = _job_in_state(stack, "REJECTED_BY_POLICY").items()
    assert any("CMEK" in reason or "cmek" in reason.lower() for reason in record["refusals"])
    with pytest.raises(ObjectNotFoundError):
        _vertex(stack).get(f"projects/{stack.project}/locations/us-central1/pipelineJobs/{job_id}")

    def refusal_announced() -> list[StatusEvent]:
        pulled = [StatusEvent.model_validate(m.json()) for m in statuses.pull(5, timeout=2)]
        return [e for e in pulled if e.job_id == job_id]  # the original job moves on meanwhile

    [announced] = wait_for(refusal_announced, timeout=30, what="the refusal's StatusEvent")
    assert announced.state.value == "REJECTED_BY_POLICY"
    assert announced.reason


def test_launch_job_invalid_message_is_recorded_and_acknowledged(stack: Any) -> None:
    stack.publish(stack.settings.launch_topic, b'{"dataset_uri": "gs://b/x.jsonl", "colour": 1}')

    def failures() -> list[dict[str, Any]]:
        docs = stack.firestore_client().collection("failed_events").stream()
        # Only the launcher's: events of jobs cancelled by the reset may still reach track_status.
        return [d.to_dict() for d in docs if d.to_dict()["function"] == "launch_job"]

    [failure] = wait_for(failures, timeout=30, what="the failure record")
    assert failure["function"] == "launch_job"
    assert "colour" in failure["reason"] and "request_id" in failure["reason"]
    assert _jobs(stack) == {}
    dead = stack.dead_letters(stack.settings.launch_topic)
    assert dead.pull(max_messages=1, timeout=3) == []  # acknowledged, not dead-lettered


class _CrashAfterCreate(VertexPipelineAdapter):
    """The process 'dies' right after Vertex AI created the job, before anything is recorded."""

    crashed = False

    def create(self, location: str, job_id: str, body: Mapping[str, Any]) -> PipelineJobInfo:
        info = super().create(location, job_id, body)
        if not self.crashed:
            self.crashed = True
            raise ServiceUnavailableError("injected crash after the Vertex AI call")
        return info


def test_launch_job_crash_between_vertex_and_firestore_converges(
    stack: Any, stack_deps: Dependencies
) -> None:
    request = _upload_dataset(stack)
    _job_in_state(stack, "SUBMITTED")  # the function's own launch of this dataset
    deps = dataclasses.replace(
        stack_deps, vertex=_CrashAfterCreate(stack.project, api_endpoint=stack.env[ENDPOINT])
    )
    crash_request = request.model_copy(update={"request_id": "crash-injection"})
    with pytest.raises(ServiceUnavailableError, match="injected"):
        launch(crash_request, deps)
    crashed = [k for k, v in _jobs(stack).items() if v["request_id"] == "crash-injection"]
    [job_id] = crashed
    name = f"projects/{stack.project}/locations/us-central1/pipelineJobs/{job_id}"
    assert _vertex(stack).get(name).job_id == job_id  # the job was created before the crash

    assert launch(crash_request, deps) == job_id  # the redelivery converges
    record = _jobs(stack)[job_id]
    assert record["pipeline_job"] == name
    history = [h["state"] for h in record["history"]]
    assert history[0] == "REQUESTED" and len(history) >= 2  # moved on, whoever moved it first
    assert [k for k, v in _jobs(stack).items() if v["request_id"] == "crash-injection"] == [job_id]


def test_launch_job_budget_fallback_after_a_crash_makes_one_pipeline_job(
    stack: Any, stack_deps: Dependencies
) -> None:
    # Finding 1: TPU preferred, GPU the fallback, a daily budget. Vertex AI accepts the job, then
    # the process dies. If the redelivery counted the job's own record against the budget, TPU
    # would no longer fit, GPU would, and a second pipeline job would be created.
    request = _upload_dataset(stack)
    [(_, launched)] = _job_in_state(stack, "SUBMITTED").items()  # the function's own launch
    spent = float(launched["estimated_accelerator_hours"])
    preferred = dataclasses.replace(stack_deps.settings, accelerators="TPU,GPU")
    hours = {
        accelerator: policy.resolve(
            request,
            dataclasses.replace(preferred, accelerators=accelerator),
            dataset_examples=240,
            eval_examples=20,
            usage=policy.PolicyUsage(running_jobs=0, accelerator_hours_today=0.0),
        ).spec.estimated_accelerator_hours
        for accelerator in ("TPU", "GPU")
    }
    assert hours["TPU"] > hours["GPU"]
    budget = spent + hours["TPU"] + hours["GPU"]  # TPU fits once; counted twice only GPU would
    deps = dataclasses.replace(
        stack_deps,
        settings=dataclasses.replace(preferred, daily_accelerator_hours=budget),
        vertex=_CrashAfterCreate(stack.project, api_endpoint=stack.env[ENDPOINT]),
    )
    crash_request = request.model_copy(update={"request_id": "budget-crash"})
    before = _pipeline_jobs(stack)
    with pytest.raises(ServiceUnavailableError, match="injected"):
        launch(crash_request, deps)
    job_id = launch(crash_request, deps)  # the redelivery
    assert launch(crash_request, deps) == job_id  # and one more
    mine = {k: v for k, v in _jobs(stack).items() if v["request_id"] == "budget-crash"}
    assert list(mine) == [job_id]
    assert mine[job_id]["spec"]["accelerator_type"] == "TPU"
    assert mine[job_id]["pipeline_job"].endswith(f"/pipelineJobs/{job_id}")
    job = _vertex(stack).get(mine[job_id]["pipeline_job"])
    assert job.resource is not None
    assert job.resource["runtimeConfig"]["parameterValues"]["accelerator_type"] == "TPU"
    # Exactly one pipeline job more on the local Vertex AI API than before the crash.
    assert _pipeline_jobs(stack) - before == {mine[job_id]["pipeline_job"]}


def _pipeline_jobs(stack: Any) -> set[str]:
    """The names of every pipeline job the local Vertex AI API holds in us-central1."""
    client = _vertex(stack)._client("us-central1")
    parent = f"projects/{stack.project}/locations/us-central1"
    return {job.name for job in client.list_pipeline_jobs(parent=parent)}
