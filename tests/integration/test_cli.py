"""The operator's commands on the local stack, and what status subscribers see.

One story runs end to end through ``distillery`` commands: submit a dataset and watch it to
PROMOTED, a better rerun replaces the champion and answers the eval prompts, a worse rerun is
REJECTED with the champion unchanged, and a rollback gives the endpoint back to the previous
champion. A raw subscriber of the status topic sees every state each job reached. Apart from it,
duplicated and shuffled pipeline events posted concurrently to track_status end every job in its
right state.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from distillery.commands.cli import main
from distillery.core.jobs import new_record
from distillery.core.models import JobState, StatusEvent
from distillery.core.ports import same_model
from distillery.local.example_data import generate, write_jsonl
from tests.helpers import post_cloudevent, wait_for

pytestmark = pytest.mark.integration

FAMILY = "cli-news"
STATES = ["REQUESTED", "SUBMITTED", "RUNNING", "SUCCEEDED", "EVALUATING"]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _followed(documents: list[dict[str, Any]], last: str) -> tuple[str, list[dict[str, Any]]]:
    """The job a watch followed, after checking it saw each of its states once, in order."""
    states = [d for d in documents if d.get("event") == "state"]
    job_ids = {d["job_id"] for d in states}
    assert len(job_ids) == 1, states
    seen = [d["state"] for d in states]
    # A short job's RUNNING may be overtaken by its end (a job never moves backwards).
    assert seen in ([*STATES, last], [*STATES[:2], *STATES[3:], last]), seen
    assert [d.get("previous_state") for d in states] == [None, *seen[:-1]]
    progress = [d for d in documents if d.get("event") == "progress"]
    return job_ids.pop(), progress


def _family(stack: Any) -> dict[str, Any]:
    doc = stack.firestore_client().collection("models").document(FAMILY).get()
    found: dict[str, Any] = doc.to_dict()
    return found


# Three trainings, each judged on the golden set beside the champion: longer than the default.
@pytest.mark.timeout(900)
def test_cli_submit_watch_rerun_predict_and_rollback(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    statuses = stack.subscribe(stack.settings.status_topic)
    train, evaluation = generate(300, 30)
    write_jsonl(tmp_path / "news.jsonl", train)
    write_jsonl(tmp_path / "news.eval.jsonl", evaluation)
    config = tmp_path / "news.config.json"
    # A weak first champion: 30 steps, eval token accuracy well below what 200 steps reach.
    config.write_text(json.dumps({"train_steps": 30, "model_display_name": FAMILY}))
    wait = ("--watch", "--json", "--timeout", "400", "--interval", "0.5")

    code, out, err = _cli(
        capsys,
        "submit",
        str(tmp_path / "news.jsonl"),
        "--eval",
        str(tmp_path / "news.eval.jsonl"),
        "--config",
        str(config),
        "--name",
        "team/news",
        *wait,
    )
    assert code == 0, err
    documents = _json_lines(out)
    uploaded = [u["uri"] for u in documents[0]["uploaded"]]
    assert uploaded == [
        f"gs://{stack.bucket}/datasets/team/news.eval.jsonl",
        f"gs://{stack.bucket}/datasets/team/news.config.json",
        f"gs://{stack.bucket}/datasets/team/news.jsonl",
    ]
    first, progress = _followed(documents[1:], "PROMOTED")
    steps = [p["step"] for p in progress]
    assert steps and steps == sorted(set(steps)) and steps[-1] <= 30
    assert all(p["train_steps"] == 30 for p in progress)

    code, out, _ = _cli(capsys, "jobs", "--json")
    assert code == 0 and [(j["job_id"], j["state"]) for j in json.loads(out)] == [
        (first, "PROMOTED")
    ]

    # A better rerun (200 steps) replaces the champion; the endpoint answers the eval prompts.
    code, out, err = _cli(capsys, "rerun", first, "--set", "train_steps=200", *wait)
    assert code == 0, err
    better, _ = _followed(_json_lines(out)[1:], "PROMOTED")
    assert _family(stack)["champion"]["job_id"] == better
    prompts = [e.input_text for e in evaluation]
    code, out, err = _cli(capsys, "predict", FAMILY, *prompts, "--json")
    assert code == 0, err
    answer = json.loads(out)
    # The answer names the model without its version; the champion's name may carry ``@1``.
    assert same_model(answer["model"], _family(stack)["champion"]["model"])
    contents = [p["content"].strip() for p in answer["predictions"]]
    correct = sum(c == e.output_text for c, e in zip(contents, evaluation, strict=True))
    assert correct / len(evaluation) >= 0.9, contents

    # A worse rerun (one step) is REJECTED, with the champion's figures; the champion stays.
    code, out, _ = _cli(capsys, "rerun", better, "--set", "train_steps=1", *wait)
    assert code == 1
    worse, _ = _followed(_json_lines(out)[1:], "REJECTED")
    code, out, _ = _cli(capsys, "show", worse, "--json")
    record = json.loads(out)
    assert record["state"] == "REJECTED" and record["request"]["rerun_of"] == better
    assert "on the golden set: mean paired difference" in record["reason"]
    assert "does not beat" in record["reason"] and better in record["reason"]
    assert _family(stack)["champion"]["job_id"] == better

    # Rollback: the first champion serves again; the better job is ROLLED_BACK and announced.
    code, out, err = _cli(capsys, "rollback", FAMILY, "--job", better, "--json")
    assert code == 0, err
    family = json.loads(out)
    assert family["champion"]["job_id"] == first
    assert [r["job_id"] for r in family["rolled_back"]] == [better]
    code, out, _ = _cli(capsys, "predict", FAMILY, prompts[0], "--json")
    assert same_model(json.loads(out)["model"], family["champion"]["model"])
    assert _cli(capsys, "rollback", FAMILY, "--job", better)[0] == 0  # a repeat changes nothing
    assert _cli(capsys, "rollback", FAMILY)[0] == 1  # the first champion has no predecessor
    code, out, _ = _cli(capsys, "jobs", "--state", "ROLLED_BACK", "--json")
    assert [j["job_id"] for j in json.loads(out)] == [better]

    # A raw subscriber saw every state of every job (at least once: it dedupes on job + state).
    histories = {
        job: [h["state"] for h in json.loads(_cli(capsys, "show", job, "--json")[1])["history"]]
        for job in (first, better, worse)
    }
    expected = {(job, state) for job, states in histories.items() for state in states}
    seen: set[tuple[str, str]] = set()

    def everything() -> bool:
        for message in statuses.pull(max_messages=100, timeout=1):
            event = StatusEvent.model_validate_json(message.data)
            assert message.attributes == {"job_id": event.job_id, "state": event.state.value}
            seen.add((event.job_id, event.state.value))
        return seen >= expected

    wait_for(everything, timeout=30, what=f"the status events {sorted(expected - seen)}")
    assert seen == expected
    assert histories[better][-2:] == ["PROMOTED", "ROLLED_BACK"]


def test_cli_show_and_watch_an_unknown_job_exit_1(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("show", "watch", "rerun"):
        code, _, err = _cli(capsys, command, "no-such-job")
        assert code == 1 and "there is no job 'no-such-job'" in err


def test_cli_predict_on_an_endpoint_without_a_model_exit_1(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from distillery.adapters.vertex import VertexModelEndpointsAdapter

    endpoints = VertexModelEndpointsAdapter(
        stack.project, api_endpoint=stack.env["DISTILLERY_VERTEX_API_ENDPOINT"]
    )
    empty = endpoints.create_endpoint("empty-family", "us-central1")
    code, _, err = _cli(capsys, "predict", "empty-family", "hello")
    assert code == 1 and "no deployed model that receives traffic" in err, err
    code, _, err = _cli(capsys, "predict", empty.name.rsplit("/", 1)[-1] + "0", "hello")
    assert code == 1 and "there is no endpoint" in err


def _job_event(job_id: str, state: str) -> CloudEvent:
    entry = {
        "insertId": uuid.uuid4().hex,
        "logName": "projects/p/logs/aiplatform.googleapis.com%2Fpipeline_job_events",
        "resource": {
            "type": "aiplatform.googleapis.com/PipelineJob",
            "labels": {"pipeline_job_id": job_id},
        },
        "jsonPayload": {"state": state},
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return CloudEvent(
        {
            "id": uuid.uuid4().hex,
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/distill-job-events",
        },
        {
            "message": {
                "data": base64.b64encode(json.dumps(entry).encode()).decode(),
                "messageId": uuid.uuid4().hex,
            },
            "subscription": "projects/p/subscriptions/track-status",
        },
    )


def test_track_status_duplicated_shuffled_concurrent_events_end_in_the_right_states(
    stack: Any,
) -> None:
    statuses = stack.subscribe(stack.settings.status_topic)
    endings = {
        "PIPELINE_STATE_FAILED": "FAILED",
        "PIPELINE_STATE_CANCELLED": "CANCELLED",
        "PIPELINE_STATE_RUNNING": "RUNNING",
    }
    plans: dict[str, tuple[list[str], str]] = {}
    jobs = stack.firestore_client().collection("jobs")
    for index in range(9):
        ending, final = list(endings.items())[index % 3]
        job_id = f"shuffled-{index}"
        sequence = ["PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING"]
        if ending != "PIPELINE_STATE_RUNNING":
            sequence.append(ending)
        plans[job_id] = (sequence, final)
        jobs.document(job_id).set(
            new_record(job_id, JobState.SUBMITTED, datetime.now(UTC), {"location": "us-central1"})
        )
    events = [(job, state) for job, (sequence, _) in plans.items() for state in sequence]
    rng = random.Random(11)
    events += rng.sample(events, k=len(events) // 5)  # 20% duplicates
    rng.shuffle(events)
    url = stack.function_url("track_status")

    def deliver(event: tuple[str, str]) -> int:
        # Redelivered on 500, as Pub/Sub does (a transaction may lose to a concurrent one).
        return int(
            wait_for(
                lambda: post_cloudevent(url, _job_event(*event)) == 200,
                timeout=60,
                what=f"track_status to take {event}",
            )
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(deliver, events))

    expected: set[tuple[str, str]] = set()
    for job_id, (_, final) in plans.items():
        record = jobs.document(job_id).get().to_dict()
        history = [h["state"] for h in record["history"]]
        assert record["state"] == final, (job_id, history)
        assert history[0] == "SUBMITTED" and history[-1] == final
        assert len(history) == len(set(history)), history
        if final == "RUNNING":
            assert history == ["SUBMITTED", "RUNNING"]
        else:  # RUNNING is skipped when the end arrived first: nothing moves backwards.
            assert history in (["SUBMITTED", "RUNNING", final], ["SUBMITTED", final]), history
        expected |= {(job_id, state) for state in history}  # SUBMITTED was never announced
    seen: set[tuple[str, str]] = set()

    def announced() -> bool:
        for message in statuses.pull(max_messages=100, timeout=1):
            seen.add((message.attributes["job_id"], message.attributes["state"]))
        return seen >= expected

    wait_for(announced, timeout=30, what=f"the announcements {sorted(expected - seen)}")
    assert seen == expected  # nothing announced that the records do not hold
