"""The session stack: every service answers, clients work, and a reset clears everything."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from distillery.core.settings import EMULATOR_VARIABLES
from distillery.local.stack.harness import StackHarness
from distillery.local.stack.processes import is_running, probe

pytestmark = pytest.mark.integration


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_localstack_every_service_answers(local_stack: StackHarness) -> None:
    services = local_stack.stack.services
    assert {"pubsub", "firestore", "gcs", "bridge", "function:validate_dataset"} <= set(services)
    for record in services.values():
        assert is_running(record), record.name
        assert probe(record), record.name
        assert record.url.startswith("http://127.0.0.1:")
    assert _status(local_stack.function_url("validate_dataset")) == 405
    assert _status(f"{local_stack.bridge_url}/healthz") == 200


def test_localstack_sets_the_client_environment(local_stack: StackHarness) -> None:
    for name in EMULATOR_VARIABLES:
        assert os.environ[name] == local_stack.env[name]
    assert os.environ["GOOGLE_CLOUD_PROJECT"] == local_stack.project == "distillery-local"
    assert os.environ["DISTILLERY_BUCKET"] == local_stack.bucket
    assert local_stack.env["STORAGE_EMULATOR_HOST"] == local_stack.storage_url
    assert local_stack.settings.project == local_stack.project
    # The session stack runs the pipeline backend, and says so to the shell it configures.
    assert local_stack.settings.backend == "pipeline"
    assert os.environ["DISTILLERY_BACKEND"] == local_stack.env["DISTILLERY_BACKEND"] == "pipeline"


def test_localstack_creates_topics_subscriptions_and_bucket(local_stack: StackHarness) -> None:
    settings = local_stack.settings
    publisher = local_stack.publisher()
    topics = {
        t.name.rsplit("/", 1)[1]
        for t in publisher.list_topics(request={"project": f"projects/{local_stack.project}"})
    }
    for topic in (settings.launch_topic, settings.job_events_topic, settings.status_topic):
        assert {topic, f"{topic}-dlq"} <= topics
    assert {"distill-local-storage-notifications", "distill-local-storage-notifications-dlq"} <= (
        topics
    )
    subscriber = local_stack.subscriber()
    bridge = subscriber.get_subscription(
        request={"subscription": f"projects/{local_stack.project}/subscriptions/"
                 "eventarc-local-validate_dataset"}
    )  # fmt: skip
    assert bridge.topic.endswith("/topics/distill-local-storage-notifications")
    assert bridge.dead_letter_policy.dead_letter_topic.endswith(
        "/topics/distill-local-storage-notifications-dlq"
    )
    assert bridge.dead_letter_policy.max_delivery_attempts == 5
    assert bridge.ack_deadline_seconds == 600
    names = [b.name for b in local_stack.storage_client().list_buckets()]
    assert local_stack.bucket in names


def test_localstack_helpers_upload_publish_subscribe(stack: StackHarness) -> None:
    blob = stack.upload("notes/hello.txt", b"hi", content_type="text/plain")
    assert blob.generation
    assert stack.storage_client().bucket(stack.bucket).blob("notes/hello.txt").download_as_bytes()
    subscription = stack.subscribe(stack.settings.status_topic)
    message_id = stack.publish(stack.settings.status_topic, {"job_id": "j-1"}, state="RUNNING")
    [message] = subscription.pull(max_messages=1, timeout=10)
    assert (message.message_id, message.json(), message.attributes) == (
        message_id,
        {"job_id": "j-1"},
        {"state": "RUNNING"},
    )
    subscription.close()
    document = stack.firestore_client().collection("things").document("one")
    document.set({"n": 1})
    assert document.get().to_dict() == {"n": 1}


def test_localstack_reset_clears_documents_objects_and_messages(local_stack: StackHarness) -> None:
    topic = local_stack.settings.status_topic
    local_stack.firestore_client().collection("things").document("stale").set({"n": 1})
    local_stack.upload("notes/stale.txt", b"stale")
    stale = local_stack.subscribe(topic)
    local_stack.publish(topic, b"stale")
    # A message dead-lettered earlier must not survive either.
    local_stack.publish(f"{topic}-dlq", b"stale dead letter")

    local_stack.reset()

    assert not local_stack.firestore_client().collection("things").document("stale").get().exists
    assert list(local_stack.storage_client().list_blobs(local_stack.bucket)) == []
    assert stale.closed
    subscriptions = [
        s.name
        for s in local_stack.subscriber().list_subscriptions(
            request={"project": f"projects/{local_stack.project}"}
        )
    ]
    assert not any(name.endswith(stale.name) for name in subscriptions)
    assert local_stack.dead_letters(topic).pull(max_messages=1, timeout=2) == []
    # Still working afterwards, without a restart.
    fresh = local_stack.subscribe(topic)
    local_stack.publish(topic, b"fresh")
    assert [m.data for m in fresh.pull(max_messages=1, timeout=10)] == [b"fresh"]
    fresh.close()
