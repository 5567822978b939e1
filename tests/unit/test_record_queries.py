"""Ordering, limits, cursors and counts of the record store, with Firestore's semantics.

:func:`check_queries` is run here on the fake and, in tests/integration/test_adapters.py, on the
Firestore emulator: both must answer the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from distillery.core.ports import Order, RecordStore, orders_of
from distillery.fakes import InMemoryRecordStore, firestore_key

DOCS = {
    "a": {"job_id": "a", "state": "RUNNING", "created_at": "2026-11-01T10:00:00", "n": 3},
    "b": {"job_id": "b", "state": "FAILED", "created_at": "2026-11-03T10:00:00", "n": 1.5},
    "c": {"job_id": "c", "state": "RUNNING", "created_at": "2026-11-02T10:00:00", "n": 2},
    "d": {"job_id": "d", "state": "RUNNING", "created_at": "2026-11-02T10:00:00"},
    "e": {"job_id": "e", "state": None, "n": True},
    "ab": {"job_id": "ab", "state": "SUCCEEDED", "created_at": "2026-11-04T10:00:00", "n": "x"},
}


def _ids(docs: list[dict[str, object]]) -> list[object]:
    return [d["job_id"] for d in docs]


def check_queries(store: RecordStore, collection: str) -> None:
    """Assert Firestore's query semantics on ``store`` (``collection`` must be new)."""
    for doc_id, doc in DOCS.items():
        store.set(collection, doc_id, doc)

    # Newest first, ties broken by document id in the same direction; "e" has no created_at.
    newest = store.list(collection, order_by=Order("created_at", descending=True))
    assert _ids(newest) == ["ab", "b", "d", "c", "a"]
    assert _ids(store.list(collection, order_by=[Order("created_at", True)], limit=2)) == [
        "ab",
        "b",
    ]
    oldest = store.list(collection, order_by="created_at", limit=3)
    assert _ids(oldest) == ["a", "c", "d"]

    # Equality and ordering together (a composite index in production).
    running = store.list(
        collection, where={"state": "RUNNING"}, order_by=Order("created_at", True), limit=2
    )
    assert _ids(running) == ["d", "c"]

    # Mixed types: booleans, then numbers (integers and floats together), then strings.
    assert _ids(store.list(collection, order_by="n")) == ["e", "b", "c", "a", "ab"]

    # Cursors: a page after the last one seen, and a prefix lookup by document field.
    page = store.list(collection, order_by=Order("created_at", True), limit=2)
    after = page[-1]
    rest = store.list(
        collection,
        order_by=[Order("created_at", True), Order("job_id", True)],
        start_after=[after["created_at"], after["job_id"]],
        limit=10,
    )
    assert _ids(rest) == ["d", "c", "a"]
    prefixed = store.list(collection, order_by="job_id", start_at=["a"], limit=3)
    assert _ids(prefixed) == ["a", "ab", "b"]

    # A missing field equals nothing, not even None; null is a value.
    assert _ids(store.list(collection, where={"state": None})) == ["e"]
    assert store.list(collection, where={"nothing": None}) == []
    # 2 == 2.0, but True is not 1.
    assert _ids(store.list(collection, where={"n": 2.0})) == ["c"]
    assert store.list(collection, where={"n": 1}) == []

    # Counts, without reading.
    assert store.count(collection) == 6
    assert store.count(collection, where={"state": "RUNNING"}) == 3
    assert store.count(collection, where={"state": "CANCELLED"}) == 0
    assert store.count(f"{collection}-empty") == 0

    # What Firestore refuses.
    with pytest.raises(ValueError, match="needs an order_by"):
        store.list(collection, start_after=["a"])
    with pytest.raises(ValueError, match="2 values but the query orders by 1"):
        store.list(collection, order_by="job_id", start_at=["a", "b"])
    with pytest.raises(ValueError, match="at least 1"):
        store.list(collection, order_by="job_id", limit=0)
    with pytest.raises(ValueError, match="not both"):
        store.list(collection, order_by="job_id", start_at=["a"], start_after=["a"])


def test_the_fake_has_firestores_query_semantics() -> None:
    check_queries(InMemoryRecordStore(), "jobs")


def test_firestore_key_orders_by_type_then_value() -> None:
    values = [
        {"a": 1},
        [1, 2],
        b"\x00",
        "b",
        "a",
        datetime(2026, 1, 1, tzinfo=UTC),
        3,
        1.5,
        True,
        False,
        None,
    ]
    ordered = sorted(values, key=firestore_key)
    assert ordered == [
        None,
        False,
        True,
        1.5,
        3,
        datetime(2026, 1, 1, tzinfo=UTC),
        "a",
        "b",
        b"\x00",
        [1, 2],
        {"a": 1},
    ]
    with pytest.raises(TypeError, match="cannot store a set"):
        firestore_key({1})


def test_orders_of_accepts_a_name_an_order_or_several() -> None:
    assert orders_of("a") == (Order("a"),)
    assert orders_of(Order("a", True)) == (Order("a", True),)
    assert orders_of(["a", Order("b", True)]) == (Order("a"), Order("b", True))
    assert orders_of(()) == ()
