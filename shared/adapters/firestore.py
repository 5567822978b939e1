"""Firestore adapter (google-cloud-firestore, native mode)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from distillery.adapters._errors import translate_google_errors
from distillery.errors import ContentionError
from distillery.ports import Mutation, RecordStore

if TYPE_CHECKING:
    from google.cloud import firestore

#: The client's default (5) is not enough under contention on the emulator (LOCAL_STACK.md).
TRANSACTION_ATTEMPTS = 12


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

    @property
    def client(self) -> firestore.Client:
        """The Firestore client, built on first use."""
        if self._client is None:
            from google.cloud import firestore

            self._client = firestore.Client(project=self._project or None, database=self._database)
        return self._client

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        with translate_google_errors(f"reading {collection}/{doc_id}"):
            snapshot = self.client.collection(collection).document(doc_id).get()
        return snapshot.to_dict() if snapshot.exists else None

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        from google.api_core.exceptions import Conflict

        try:
            with translate_google_errors(f"creating {collection}/{doc_id}"):
                self.client.collection(collection).document(doc_id).create(dict(data))
        except Conflict:
            return False
        return True

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        with translate_google_errors(f"writing {collection}/{doc_id}"):
            self.client.collection(collection).document(doc_id).set(dict(data))

    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        from google.cloud import firestore

        ref = self.client.collection(collection).document(doc_id)

        @firestore.transactional
        def body(transaction: firestore.Transaction) -> dict[str, Any] | None:
            snapshot = ref.get(transaction=transaction)
            current = snapshot.to_dict() if snapshot.exists else None
            updated = mutate(current)
            if updated is None:
                return current
            transaction.set(ref, updated)
            return updated

        try:
            with translate_google_errors(f"updating {collection}/{doc_id}"):
                result: dict[str, Any] | None = body(
                    self.client.transaction(max_attempts=TRANSACTION_ATTEMPTS)
                )
                return result
        except ValueError as exc:
            # The client gives up with ValueError after max_attempts aborted commits.
            raise ContentionError(f"updating {collection}/{doc_id}: {exc}") from exc

    def list(
        self, collection: str, *, where: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query: Any = self.client.collection(collection)
        for field, value in (where or {}).items():
            query = query.where(filter=FieldFilter(field, "==", value))
        with translate_google_errors(f"listing {collection}"):
            return [snapshot.to_dict() for snapshot in query.stream()]
