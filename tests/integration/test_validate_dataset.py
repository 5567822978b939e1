"""validate_dataset end to end on the local stack: real uploads, the real function process, the
Eventarc bridge, Firestore, fake-gcs-server and Pub/Sub emulators."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from distillery.core.models import LaunchRequest
from distillery.local.example_data import generate
from distillery.services.datasets import dataset_id
from tests.helpers import jsonl, post_cloudevent, storage_event, wait_for

pytestmark = pytest.mark.integration


def _record(stack: Any, name: str, generation: int) -> dict[str, Any] | None:
    doc = (
        stack.firestore_client()
        .collection("datasets")
        .document(dataset_id(stack.bucket, name, generation))
        .get()
    )
    return doc.to_dict() if doc.exists else None


def _final_record(stack: Any, name: str, generation: int) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        record = _record(stack, name, generation)
        finished = ("published", "not_applicable", None)
        if (
            record
            and record.get("status") in ("valid", "invalid", "superseded")
            and record.get("launch", {}).get("state") in finished
        ):
            return record
        return None

    result: dict[str, Any] = wait_for(probe, timeout=60, what=f"the record of {name}")
    return result


def test_validate_dataset_upload_valid_training_set(stack: Any) -> None:
    train, evaluation = generate(150, 20)
    launches = stack.subscribe(stack.settings.launch_topic)
    stack.upload("datasets/news.eval.jsonl", jsonl(evaluation))
    blob = stack.upload("datasets/news.jsonl", jsonl(train))

    [message] = launches.pull(max_messages=1, timeout=60)
    request = LaunchRequest.model_validate(message.json())
    record = _final_record(stack, "datasets/news.jsonl", blob.generation)

    assert record["status"] == "valid"
    assert record["launch"]["state"] == "published"
    assert record["launch"]["message_id"] == message.message_id
    assert request.request_id == record["id"]
    assert message.attributes["dataset_id"] == record["id"]
    assert [r["kind"] for r in record["reports"]] == ["training", "eval"]
    assert record["reports"][0]["examples"] == 150
    sha = record["reports"][0]["sha256"]
    assert request.dataset_uri == f"gs://{stack.bucket}/validated/{sha}/news.jsonl"
    assert request.eval_dataset_uri == record["validated_eval_uri"]

    bucket = stack.storage_client().bucket(stack.bucket)
    assert bucket.blob(f"validated/{sha}/news.jsonl").download_as_bytes() == jsonl(train)
    report = json.loads(bucket.blob(f"reports/{record['id']}.json").download_as_bytes())
    assert report["valid"] is True
    assert report["object"] == f"gs://{stack.bucket}/datasets/news.jsonl"
    # The reports and copies it wrote did not trigger anything: still exactly one launch.
    assert launches.pull(max_messages=1, timeout=3) == []


def test_validate_dataset_upload_invalid_training_set(stack: Any) -> None:
    launches = stack.subscribe(stack.settings.launch_topic)
    lines = [
        {"input_text": "Classify: a", "output_text": "x"},
        {"input_text": "", "output_text": "y"},
        {"prompt": "Classify: b"},
    ]
    data = ("\n".join(json.dumps(line) for line in lines) + "\n{broken\n").encode()
    blob = stack.upload("datasets/broken.jsonl", data)

    record = _final_record(stack, "datasets/broken.jsonl", blob.generation)
    assert record["status"] == "invalid"
    errors = {e["rule"]: e for e in record["reports"][0]["errors"]}
    located = {(f["line"], f.get("field")) for e in errors.values() for f in e["findings"]}
    assert (2, "input_text") in located  # empty input_text
    assert (3, "input_text") in located  # missing input_text
    assert any(line == 4 for line, _ in located)  # not JSON
    assert launches.pull(max_messages=1, timeout=3) == []
    listed = stack.storage_client().list_blobs(stack.bucket, prefix="validated/")
    assert [b.name for b in listed] == []


def test_validate_dataset_same_event_five_times_launches_once(stack: Any) -> None:
    train, _ = generate(120, 20)
    launches = stack.subscribe(stack.settings.launch_topic)
    blob = stack.upload("datasets/redelivered.jsonl", jsonl(train))
    [first] = launches.pull(max_messages=1, timeout=60)  # the bridge's delivery

    url = stack.function_url("validate_dataset")
    event = storage_event(stack.bucket, blob.name, blob.generation, event_id="redelivered-1")
    for _ in range(5):
        # A 500 asks for redelivery (the bridge's delivery may still be marking its publish).
        wait_for(lambda: post_cloudevent(url, event) == 200, timeout=60, interval=1.0)
    assert launches.pull(max_messages=1, timeout=3) == []
    record = _record(stack, blob.name, blob.generation)
    assert record is not None and record["launch"]["message_id"] == first.message_id


def test_validate_dataset_concurrent_deliveries_launch_once(stack: Any) -> None:
    train, _ = generate(120, 20)
    launches = stack.subscribe(stack.settings.launch_topic)
    # The bridge delivers the upload once; five more deliveries race it.
    name = "datasets/concurrent.jsonl"
    blob = stack.upload(name, jsonl(train))
    url = stack.function_url("validate_dataset")
    event = storage_event(stack.bucket, name, blob.generation, event_id="concurrent-1")
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(post_cloudevent(url, event)))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A delivery that lost the race asked for a retry (500): deliver it again with backoff, as
    # Pub/Sub would, until it is acknowledged (the bridge's own delivery may still hold the claim).
    assert set(statuses) <= {200, 500}
    for _ in range(statuses.count(500)):
        wait_for(lambda: post_cloudevent(url, event) == 200, timeout=60, interval=1.0)
    received = launches.pull(max_messages=5, timeout=8)
    assert len(received) == 1


def test_validate_dataset_malformed_event_is_recorded_and_acknowledged(stack: Any) -> None:
    url = stack.function_url("validate_dataset")
    event = storage_event(stack.bucket, "datasets/x.jsonl", 7, event_id="malformed-1")
    event.data.pop("name")
    event.data["generation"] = "not-a-number"
    assert post_cloudevent(url, event) == 200  # acknowledged: never a crash loop
    assert post_cloudevent(url, event) == 200

    docs = stack.firestore_client().collection("failed_events").stream()
    # Only the validator's: events of jobs cancelled by the reset may still reach track_status.
    failures = [d.to_dict() for d in docs if d.to_dict()["function"] == "validate_dataset"]
    assert len(failures) == 1  # one record per event, however often it is delivered
    assert failures[0]["function"] == "validate_dataset"
    assert failures[0]["event"]["id"] == "malformed-1"
    assert "name" in failures[0]["reason"] and "generation" in failures[0]["reason"]

    # The function is still healthy: a good upload goes through.
    train, _ = generate(120, 20)
    launches = stack.subscribe(stack.settings.launch_topic)
    stack.upload("datasets/after.jsonl", jsonl(train))
    assert len(launches.pull(max_messages=1, timeout=60)) == 1


def test_validate_dataset_eval_and_config_are_recorded_without_launch(stack: Any) -> None:
    launches = stack.subscribe(stack.settings.launch_topic)
    _, evaluation = generate(10, 30)
    eval_blob = stack.upload("datasets/solo.eval.jsonl", jsonl(evaluation))
    config_blob = stack.upload("datasets/solo.config.json", b'{"train_steps": 0}')
    eval_record = _final_record(stack, eval_blob.name, eval_blob.generation)
    config_record = _final_record(stack, config_blob.name, config_blob.generation)
    assert (eval_record["kind"], eval_record["status"]) == ("eval", "valid")
    assert (config_record["kind"], config_record["status"]) == ("config", "invalid")
    [error] = config_record["reports"][0]["errors"]
    assert error["findings"][0]["field"] == "train_steps"
    assert launches.pull(max_messages=1, timeout=3) == []
