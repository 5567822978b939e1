"""Firestore adapter (google-cloud-firestore, native mode)."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from distillery.adapters._errors import translate_google_errors
from distillery.core.errors import AlreadyExistsError, ContentionError
from distillery.core.ports import Mutation, Order, OrderKey, RecordStore, check_query

if TYPE_CHECKING:
    from google.cloud import firestore

#: How many times a compare-and-set is tried before the contention is reported (retryable).
TRANSACTION_ATTEMPTS = 12

#: How long a thread's last view of a document may stand in for a compare-and-set's read. Any
#: age is safe (the write is conditional on it); an old view only makes losing more likely.
RECALL_SECONDS = 2.0


class FirestoreRecordStore(RecordStore):
    """Documents in Firestore (or its emulator through ``FIRESTORE_EMULATOR_HOST``)."""

    def __init__(
        self,
        project: str | None = None,
        *,
        database: str = "(default)",
        client: firestore.Client | None = None,
    ) -> None:
        self._project = project
        self._database = database
        self._client = client
        self._recent = threading.local()

    @property
    def client(self) -> firestore.Client:
        """The Firestore client, built on first use."""
        if self._client is None:
            from google.cloud import firestore

            self._client = firestore.Client(project=self._project or None, database=self._database)
        return self._client

    def _remember(
        self, collection: str, doc_id: str, update_time: Any, data: Mapping[str, Any]
    ) -> None:
        """Keep this thread's latest view of one document, for the next compare-and-set on it."""
        self._recent.entry = (
            collection,
            doc_id,
            update_time,
            copy.deepcopy(dict(data)),
            time.monotonic(),
        )

    def _recall(self, collection: str, doc_id: str) -> tuple[Any, dict[str, Any]] | None:
        entry = getattr(self._recent, "entry", None)
        if entry is None or entry[:2] != (collection, doc_id):
            return None
        if time.monotonic() - entry[4] > RECALL_SECONDS:
            return None
        return entry[2], copy.deepcopy(entry[3])

    def _forget(self) -> None:
        self._recent.entry = None

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        with translate_google_errors(f"reading {collection}/{doc_id}"):
            snapshot = self.client.collection(collection).document(doc_id).get()
        if not snapshot.exists:
            self._forget()
            return None
        data: dict[str, Any] = snapshot.to_dict() or {}
        self._remember(collection, doc_id, snapshot.update_time, data)
        return data

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        try:
            with translate_google_errors(f"creating {collection}/{doc_id}"):
                result = self.client.collection(collection).document(doc_id).create(dict(data))
        except AlreadyExistsError:
            return False
        self._remember(collection, doc_id, result.update_time, data)
        return True

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        with translate_google_errors(f"writing {collection}/{doc_id}"):
            result = self.client.collection(collection).document(doc_id).set(dict(data))
        self._remember(collection, doc_id, result.update_time, data)

    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        """Read-modify-write as a compare-and-set on the document's update time.

        The document is read without a lock and written only if nobody wrote it since (a
        ``last_update_time`` precondition; a create for a new document). A write that lost is
        tried again from a fresh read after a random, growing delay. Unlike a Firestore
        transaction, concurrent writers never hold locks on each other, so they cannot
        deadlock (the emulator resolves such deadlocks only by a lock timeout of seconds).

        The read is skipped when this thread has just read or written the document (a
        ``get`` then a ``transact``, or two ``transact`` in a row): the precondition proves that
        view current, and a write that loses falls back to a fresh read. A mutation that
        changes nothing is always confirmed on a fresh read, since no write proved the view.
        """
        from google.api_core import exceptions as gexc

        ref = self.client.collection(collection).document(doc_id)
        what = f"updating {collection}/{doc_id}"
        recalled = self._recall(collection, doc_id)
        current: dict[str, Any] | None
        attempt = 0
        while True:
            if recalled is not None:
                update_time, current = recalled
            else:
                with translate_google_errors(what):
                    snapshot = ref.get()
                current = snapshot.to_dict() if snapshot.exists else None
                update_time = snapshot.update_time if snapshot.exists else None
            updated = mutate(copy.deepcopy(current) if current is not None else None)
            if updated is None:
                if recalled is not None:
                    recalled = None
                    continue
                return current
            with translate_google_errors(what):
                try:
                    written = self._compare_and_set(ref, update_time, current, updated)
                except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound) as exc:
                    self._forget()
                    attempt += 1
                    if attempt == TRANSACTION_ATTEMPTS:
                        raise ContentionError(
                            f"{what}: concurrent writers won {TRANSACTION_ATTEMPTS} times ({exc})"
                        ) from exc
                else:
                    self._remember(collection, doc_id, written or update_time, updated)
                    return updated
            if recalled is None:
                time.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))
            recalled = None

    def _compare_and_set(
        self,
        ref: Any,
        update_time: Any,
        current: Mapping[str, Any] | None,
        updated: Mapping[str, Any],
    ) -> Any:
        """Write ``updated`` over ``current`` unless the document changed since ``update_time``.

        Returns the document's new update time (None when nothing needed writing).

        Raises:
            google.api_core.exceptions.Conflict: it was created meanwhile.
            google.api_core.exceptions.FailedPrecondition: it was changed meanwhile.
            google.api_core.exceptions.NotFound: it was deleted meanwhile.
        """
        from google.cloud import firestore
        from google.cloud.firestore_v1.field_path import FieldPath

        if current is None:
            return ref.create(dict(updated)).update_time
        changes: dict[str, Any] = {
            FieldPath(key).to_api_repr(): value for key, value in updated.items()
        }
        for key in current.keys() - updated.keys():
            changes[FieldPath(key).to_api_repr()] = firestore.DELETE_FIELD
        if not changes:
            return None  # An empty document stays empty.
        option = self.client.write_option(last_update_time=update_time)
        return ref.update(changes, option=option).update_time

    def _query(self, collection: str, where: Mapping[str, Any] | None) -> Any:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query: Any = self.client.collection(collection)
        for field, value in (where or {}).items():
            query = query.where(filter=FieldFilter(field, "==", value))
        return query

    def list(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: OrderKey | Sequence[OrderKey] = (),
        limit: int | None = None,
        start_at: Sequence[Any] | None = None,
        start_after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        orders, cursor = check_query(order_by, limit, start_at, start_after)
        query = self._query(collection, where)
        for order in orders:
            query = query.order_by(order.field, direction=_direction(order))
        if cursor is not None:
            query = (
                query.start_at(list(cursor))
                if start_at is not None
                else query.start_after(list(cursor))
            )
        if limit is not None:
            query = query.limit(limit)
        with translate_google_errors(f"listing {collection}"):
            return [snapshot.to_dict() for snapshot in query.stream()]

    def count(self, collection: str, *, where: Mapping[str, Any] | None = None) -> int:
        query = self._query(collection, where)
        with translate_google_errors(f"counting {collection}"):
            results = query.count(alias="n").get()
        # One result set (one per aggregation query) of one aggregation, aliased "n".
        return sum(int(r.value) for batch in results for r in batch if r.alias == "n")


def _direction(order: Order) -> str:
    from google.cloud.firestore_v1.base_query import BaseQuery

    return BaseQuery.DESCENDING if order.descending else BaseQuery.ASCENDING
