"""The Google Cloud adapters against the real emulators (what the in-memory fakes cannot prove)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from distillery.adapters import FirestoreRecordStore, GcsObjectStore, PubsubPublisher
from distillery.adapters._errors import translate_google_errors
from distillery.core.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ObjectNotFoundError,
    PreconditionFailedError,
    RequestRejectedError,
)
from tests.unit.test_record_queries import check_queries

pytestmark = pytest.mark.integration


def test_gcs_store_reads_exact_generation(stack: Any) -> None:
    store = GcsObjectStore(project=stack.project)
    first = store.write_bytes(stack.bucket, "adapters/a.jsonl", b"one\n")
    second = store.write_bytes(stack.bucket, "adapters/a.jsonl", b"two\ntwo\n")
    assert second.generation != first.generation
    assert store.stat(stack.bucket, "adapters/a.jsonl").generation == second.generation
    with store.open_read(stack.bucket, "adapters/a.jsonl", second.generation) as reader:
        assert list(reader) == [b"two\n", b"two\n"]
    with pytest.raises(ObjectNotFoundError, match="at generation"):
        store.stat(stack.bucket, "adapters/a.jsonl", first.generation)


def test_gcs_store_streams_in_chunks(stack: Any) -> None:
    store = GcsObjectStore(project=stack.project)
    payload = b"".join(b"%08d\n" % i for i in range(400_000))  # 3.6 MB
    info = store.write_bytes(stack.bucket, "adapters/big.txt", payload)
    with store.open_read(stack.bucket, "adapters/big.txt", info.generation) as reader:
        lines = sum(1 for _ in reader)
    assert lines == 400_000


def test_gcs_store_conditional_writes_and_copies(stack: Any) -> None:
    store = GcsObjectStore(project=stack.project)
    source = store.write_bytes(stack.bucket, "adapters/src.txt", b"payload")
    copied = store.copy(
        stack.bucket, "adapters/src.txt", source.generation, stack.bucket, "adapters/dst.txt"
    )
    assert store.read_bytes(stack.bucket, "adapters/dst.txt") == b"payload"
    assert copied.name == "adapters/dst.txt"
    with pytest.raises(PreconditionFailedError):
        store.write_bytes(stack.bucket, "adapters/dst.txt", b"other", if_absent=True)
    with pytest.raises(ObjectNotFoundError):
        store.copy(stack.bucket, "adapters/src.txt", 1, stack.bucket, "adapters/x.txt")
    assert store.find(stack.bucket, "adapters/missing.txt") is None
    with pytest.raises(ValueError, match="larger than"):
        store.read_bytes(stack.bucket, "adapters/src.txt", limit=3)


def test_firestore_store_create_if_absent_and_transactions(stack: Any) -> None:
    records = FirestoreRecordStore(stack.project)
    assert records.create("adapter_tests", "d1", {"n": 1})
    assert not records.create("adapter_tests", "d1", {"n": 2})
    assert records.get("adapter_tests", "d1") == {"n": 1}
    assert records.get("adapter_tests", "missing") is None

    def increment(current: dict[str, Any] | None) -> dict[str, Any]:
        current = current or {"n": 0}
        current["n"] += 1
        return current

    # Concurrent writers of one document (first a create race, then updates): none is lost.
    def add_five() -> None:
        for _ in range(5):
            records.transact("adapter_tests", "counter", increment)

    threads = [threading.Thread(target=add_five) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert records.get("adapter_tests", "counter") == {"n": 40}

    # The new document replaces the old one: fields it drops are deleted; odd keys are kept.
    records.set("adapter_tests", "shape", {"a": 1, "gone": True, "nested": {"x": 1}})

    def reshape(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None
        return {"a": 2, "nested": {"y": 2}, "progress:step": 3, "dotted.key": 4}

    expected = {"a": 2, "nested": {"y": 2}, "progress:step": 3, "dotted.key": 4}
    assert records.transact("adapter_tests", "shape", reshape) == expected
    assert records.get("adapter_tests", "shape") == expected
    assert records.transact("adapter_tests", "d1", lambda current: None) == {"n": 1}
    records.set("adapter_tests", "d2", {"n": 1, "tag": "x"})
    assert sorted(d.get("tag", "-") for d in records.list("adapter_tests", where={"n": 1})) == [
        "-",
        "x",
    ]


def test_pubsub_publisher_publishes_with_attributes(stack: Any) -> None:
    subscription = stack.subscribe(stack.settings.status_topic)
    try:
        publisher = PubsubPublisher(stack.project)
        message_id = publisher.publish(stack.settings.status_topic, b'{"a": 1}', {"job_id": "j"})
        assert message_id
        messages = subscription.pull(max_messages=1, timeout=10)
        assert [(m.data, m.attributes["job_id"]) for m in messages] == [(b'{"a": 1}', "j")]
    finally:
        subscription.close()


def test_pubsub_publisher_names_a_missing_topic(stack: Any) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        PubsubPublisher(stack.project).publish("no-such-topic", b"x")


def test_firestore_store_orders_limits_pages_and_counts_as_the_fake_does(stack: Any) -> None:
    check_queries(FirestoreRecordStore(stack.project), f"adapter_queries_{uuid.uuid4().hex[:8]}")


def test_firestore_maps_its_errors_as_every_adapter_does(stack: Any) -> None:
    records = FirestoreRecordStore(stack.project)
    # Ids of the form __x__ are reserved: a 400 INVALID_ARGUMENT, permanent as everywhere.
    with pytest.raises(RequestRejectedError, match="rejected as invalid"):
        records.set("adapter_tests", "__reserved__", {"n": 1})
    # A 409 ALREADY_EXISTS is what create-if-absent turns into False.
    doc = records.client.collection("adapter_tests").document(f"d-{uuid.uuid4().hex[:8]}")
    doc.create({"n": 1})
    with pytest.raises(AlreadyExistsError), translate_google_errors("creating"):
        doc.create({"n": 2})
    # A 404 NOT_FOUND (an update of a missing document).
    missing = records.client.collection("adapter_tests").document(f"m-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ObjectNotFoundError, match="not found"), translate_google_errors("updating"):
        missing.update({"n": 1})


def test_gcs_store_lists_the_names_under_a_prefix(stack: Any) -> None:
    store = GcsObjectStore(project=stack.project)
    prefix = f"adapters/list-{uuid.uuid4().hex[:8]}/"
    for name in ("tb/b.tfevents", "tb/a.tfevents", "tb/deeper/c.tfevents", "tbx/other.txt"):
        store.write_bytes(stack.bucket, prefix + name, b"x")
    assert store.list_names(stack.bucket, prefix + "tb/") == [
        prefix + "tb/a.tfevents",
        prefix + "tb/b.tfevents",
        prefix + "tb/deeper/c.tfevents",
    ]
    assert store.list_names(stack.bucket, prefix + "nothing-here/") == []
    with pytest.raises(ObjectNotFoundError):
        store.list_names("no-such-bucket-for-adapters", "x/")


def test_gcs_maps_its_errors_as_every_adapter_does(stack: Any) -> None:
    store = GcsObjectStore(project=stack.project)
    with pytest.raises(ObjectNotFoundError):
        store.stat(stack.bucket, "adapters/never-written.txt")
    with pytest.raises(ObjectNotFoundError):
        store.stat("no-such-bucket-for-adapters", "x")
    store.write_bytes(stack.bucket, "adapters/412.txt", b"x")
    # A 412 PRECONDITION_FAILED: a conditional write lost.
    with pytest.raises(PreconditionFailedError, match="precondition failed"):
        store.write_bytes(stack.bucket, "adapters/412.txt", b"y", if_absent=True)


def test_firestore_transact_after_a_read_writes_on_that_read_and_loses_safely(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud.firestore_v1.document import DocumentReference

    ours, theirs = FirestoreRecordStore(stack.project), FirestoreRecordStore(stack.project)
    doc = f"recall-{uuid.uuid4().hex[:8]}"
    reads: list[str] = []
    real_get = DocumentReference.get

    def counting_get(self: DocumentReference, *args: Any, **kwargs: Any) -> Any:
        reads.append(self.id)
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(DocumentReference, "get", counting_get)

    def add(amount: int) -> Any:
        def mutate(current: dict[str, Any] | None) -> dict[str, Any]:
            assert current is not None
            return {**current, "n": current["n"] + amount}

        return mutate

    theirs.set("adapter_tests", doc, {"n": 1})
    assert ours.get("adapter_tests", doc) == {"n": 1}
    # The compare-and-set needs no second read of what this thread just read or wrote.
    assert ours.transact("adapter_tests", doc, add(1)) == {"n": 2}
    assert ours.transact("adapter_tests", doc, add(1)) == {"n": 3}
    assert reads == [doc]

    # Someone else wrote since: the conditional write loses and is redone on a fresh read.
    theirs.set("adapter_tests", doc, {"n": 10})
    assert ours.transact("adapter_tests", doc, add(1)) == {"n": 11}
    assert ours.get("adapter_tests", doc) == {"n": 11}

    # A mutation that changes nothing is not trusted to a recalled view: it is read again.
    theirs.set("adapter_tests", doc, {"n": 20})

    def unless_eleven(current: dict[str, Any] | None) -> dict[str, Any] | None:
        assert current is not None
        return None if current["n"] == 11 else {"n": current["n"] + 100}

    assert ours.transact("adapter_tests", doc, unless_eleven) == {"n": 120}
    assert theirs.get("adapter_tests", doc) == {"n": 120}
