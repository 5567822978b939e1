"""The local Eventarc bridge delivers production-shaped CloudEvents, retries and dead-letters.

A stack of its own runs a small recording function module (written into a temp folder) behind a
custom route table, so these tests do not depend on the product's functions.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillery.local.stack import MessagePublished, Route, Stack, StackConfig, StorageFinalized
from distillery.local.stack.harness import StackHarness
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

FUNCTIONS = textwrap.dedent(
    '''
    """Test functions: each appends what it receives to RECORD_DIR/<name>.jsonl."""
    import json
    import os
    import time
    from pathlib import Path

    import functions_framework
    from flask import request

    RECORDS = Path(os.environ["RECORD_DIR"])


    def _record(name, cloud_event):
        entry = {
            "attributes": dict(cloud_event.get_attributes()),
            "data": cloud_event.data,
            "content_type": request.headers.get("Content-Type"),
            "ce_id_header": request.headers.get("ce-id"),
            "at": time.time(),
        }
        with open(RECORDS / f"{name}.jsonl", "a") as out:
            out.write(json.dumps(entry) + "\\n")


    def _count(name, event_id):
        path = RECORDS / f"{name}.jsonl"
        if not path.exists():
            return 0
        lines = path.read_text().splitlines()
        return sum(json.loads(line)["attributes"]["id"] == event_id for line in lines)


    @functions_framework.cloud_event
    def on_upload(cloud_event):
        _record("on_upload", cloud_event)


    @functions_framework.cloud_event
    def on_message(cloud_event):
        attributes = cloud_event.data["message"].get("attributes", {})
        time.sleep(float(attributes.get("sleep", "0")))
        _record("on_message", cloud_event)


    @functions_framework.cloud_event
    def flaky(cloud_event):
        _record("flaky", cloud_event)
        if _count("flaky", cloud_event["id"]) < 3:
            raise RuntimeError("not yet")


    @functions_framework.cloud_event
    def broken(cloud_event):
        _record("broken", cloud_event)
        raise RuntimeError("always")
    '''
)

ROUTES = (
    Route("on_upload", StorageFinalized()),
    Route("on_message", MessagePublished(topic="test-events")),
    Route("flaky", MessagePublished(topic="test-flaky")),
    Route("broken", MessagePublished(topic="test-broken")),
)


class Recorder:
    """Reads what the test functions recorded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def entries(self, name: str) -> list[dict[str, Any]]:
        path = self.folder / f"{name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def wait(self, name: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """What ``name`` recorded, once it recorded at least ``count`` events (``count`` > 0)."""

        def enough() -> list[dict[str, Any]] | None:
            entries = self.entries(name)
            return entries if len(entries) >= count else None

        entries: list[dict[str, Any]] = wait_for(
            enough, timeout=timeout, interval=0.05, what=f"{count} event(s) recorded by {name}"
        )
        return entries


@pytest.fixture(scope="module")
def bridge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHarness]:
    folder = tmp_path_factory.mktemp("bridge")
    source = folder / "functions" / "main.py"
    source.parent.mkdir()
    source.write_text(FUNCTIONS)
    records = folder / "records"
    records.mkdir()
    config = StackConfig.ephemeral(
        folder / "state",
        project="bridge-test",
        bucket="bridge-test-bucket",
        routes=ROUTES,
        functions_source=source,
        function_env={"RECORD_DIR": str(records)},
        max_backoff_seconds=1,
        startup_timeout=120.0,
    )
    stack = Stack(config).start()
    harness = StackHarness(stack)
    try:
        yield harness
    finally:
        harness.close()
        stack.stop()


@pytest.fixture
def recorder(bridge_stack: StackHarness) -> Recorder:
    bridge_stack.reset()
    folder = Path(bridge_stack.stack.config.function_env["RECORD_DIR"])
    for path in folder.glob("*.jsonl"):
        path.unlink()
    return Recorder(folder)


def test_bridge_delivers_storage_finalized_event(
    bridge_stack: StackHarness, recorder: Recorder
) -> None:
    blob = bridge_stack.upload("datasets/news.jsonl", b'{"a": 1}\n', "application/jsonl")

    [entry] = recorder.wait("on_upload", 1)

    bucket = bridge_stack.bucket
    attributes, data = entry["attributes"], entry["data"]
    assert attributes["type"] == "google.cloud.storage.object.v1.finalized"
    assert attributes["source"] == f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    assert attributes["subject"] == "objects/datasets/news.jsonl"
    assert attributes["specversion"] == "1.0"
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["id"] and attributes["time"].startswith(time.strftime("%Y-"))
    # Binary content mode: the attributes travel as ce-* headers, the body is the data.
    assert entry["ce_id_header"] == attributes["id"]
    assert entry["content_type"] == "application/json"
    assert data["bucket"] == bucket
    assert data["name"] == "datasets/news.jsonl"
    assert data["generation"] == str(blob.generation)
    assert data["id"] == f"{bucket}/datasets/news.jsonl/{blob.generation}"
    assert data["metageneration"] == "1"
    assert data["size"] == "9"
    assert data["contentType"] == "application/jsonl"


def test_bridge_delivers_message_published_event(
    bridge_stack: StackHarness, recorder: Recorder
) -> None:
    message_id = bridge_stack.publish("test-events", b'{"hello": "world"}', origin="test")

    [entry] = recorder.wait("on_message", 1)

    project = bridge_stack.project
    attributes, data = entry["attributes"], entry["data"]
    assert attributes["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert attributes["source"] == f"//pubsub.googleapis.com/projects/{project}/topics/test-events"
    assert attributes["id"] == message_id
    assert entry["ce_id_header"] == message_id
    message = data["message"]
    assert json.loads(base64.b64decode(message["data"])) == {"hello": "world"}
    assert message["attributes"] == {"origin": "test"}
    assert message["messageId"] == message_id
    assert message["publishTime"].endswith("Z")
    assert data["subscription"] == f"projects/{project}/subscriptions/eventarc-local-on_message"


def test_bridge_slow_handler_does_not_block_others(
    bridge_stack: StackHarness, recorder: Recorder
) -> None:
    slow = bridge_stack.publish("test-events", b"slow", sleep="3")
    time.sleep(0.3)
    fast = bridge_stack.publish("test-events", b"fast")

    first = recorder.wait("on_message", 1)
    assert [e["attributes"]["id"] for e in first] == [fast]
    both = recorder.wait("on_message", 2)
    assert [e["attributes"]["id"] for e in both] == [fast, slow]


def test_bridge_redelivers_after_a_failure(bridge_stack: StackHarness, recorder: Recorder) -> None:
    message_id = bridge_stack.publish("test-flaky", b"again")

    entries = recorder.wait("flaky", 3)

    assert [e["attributes"]["id"] for e in entries] == [message_id] * 3
    time.sleep(1.5)  # the third answer was 2xx: acknowledged, never delivered again
    assert len(recorder.entries("flaky")) == 3


def test_bridge_dead_letters_a_permanently_failing_event(
    bridge_stack: StackHarness, recorder: Recorder
) -> None:
    message_id = bridge_stack.publish("test-broken", b"poison", kind="poison")

    dead = bridge_stack.dead_letters("test-broken").pull(max_messages=1, timeout=30)

    assert [m.data for m in dead] == [b"poison"]
    assert dead[0].attributes["kind"] == "poison"
    assert dead[0].attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    entries = recorder.entries("broken")
    assert [e["attributes"]["id"] for e in entries] == [message_id] * 5


def test_bridge_survives_an_emulator_reset(bridge_stack: StackHarness, recorder: Recorder) -> None:
    request = urllib.request.Request(
        f"http://{bridge_stack.pubsub_host}/reset", data=b"", method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    time.sleep(1.0)  # the bridge's pulls hang or fail meanwhile: its subscriptions are gone

    bridge_stack.reset()  # recreates topics and subscriptions
    message_id = bridge_stack.publish("test-events", b"after reset")
    bridge_stack.upload("datasets/after.jsonl", b"{}\n")

    assert [e["attributes"]["id"] for e in recorder.wait("on_message", 1)] == [message_id]
    assert recorder.wait("on_upload", 1)[0]["data"]["name"] == "datasets/after.jsonl"

    def idle() -> bool:
        with urllib.request.urlopen(f"{bridge_stack.bridge_url}/healthz") as response:
            return bool(json.loads(response.read())["inflight"] == 0)

    # The function records an event before it answers: the delivery ends a moment later.
    wait_for(idle, timeout=10, interval=0.05, what="the bridge to have no delivery in flight")
