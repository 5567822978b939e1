"""The ports: the small interfaces core code talks to.

Google Cloud adapters (:mod:`distillery.adapters`) implement them with the official clients, the
in-memory fakes (:mod:`distillery.fakes`) implement them for fast tests. Adapters translate every
Google API error into :mod:`distillery.errors`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    """What the product needs to know of one stored object generation."""

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str | None = None

    @property
    def uri(self) -> str:
        """``gs://bucket/name``."""
        return f"gs://{self.bucket}/{self.name}"


class ObjectStore(ABC):
    """Cloud Storage, as the product uses it."""

    @abstractmethod
    def stat(self, bucket: str, name: str, generation: int | None = None) -> ObjectInfo:
        """The object (its live generation, or exactly ``generation``).

        Raises:
            ObjectNotFoundError: no such object or generation.
        """

    @abstractmethod
    def open_read(
        self, bucket: str, name: str, generation: int | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """A streaming binary reader over the object; the whole object is never held in memory.

        Raises:
            ObjectNotFoundError: no such object or generation.
        """

    @abstractmethod
    def write_bytes(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Store ``data`` at ``name`` (only when nothing is there, with ``if_absent``).

        Raises:
            PreconditionFailedError: ``if_absent`` and the object exists.
        """

    @abstractmethod
    def copy(
        self,
        bucket: str,
        name: str,
        generation: int,
        dest_bucket: str,
        dest_name: str,
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Copy one exact generation to ``dest_name`` (only when absent, with ``if_absent``).

        Raises:
            ObjectNotFoundError: the source generation is gone.
            PreconditionFailedError: ``if_absent`` and the destination exists.
        """

    def read_bytes(
        self, bucket: str, name: str, generation: int | None = None, *, limit: int = 1 << 20
    ) -> bytes:
        """A small object's content, at most ``limit`` bytes (for sidecars, not datasets).

        Raises:
            ObjectNotFoundError: no such object or generation.
            ValueError: the object is larger than ``limit``.
        """
        with self.open_read(bucket, name, generation) as reader:
            data = reader.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"gs://{bucket}/{name} is larger than {limit} bytes")
        return data

    def find(self, bucket: str, name: str) -> ObjectInfo | None:
        """The live object at ``name``, or ``None`` when there is none."""
        from distillery.errors import ObjectNotFoundError

        try:
            return self.stat(bucket, name)
        except ObjectNotFoundError:
            return None


class Publisher(ABC):
    """Pub/Sub publishing."""

    @abstractmethod
    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Publish one message to ``topic`` (a short name); returns the message id.

        Raises:
            ServiceUnavailableError: Pub/Sub did not take the message.
        """


#: A transaction body: sees the current document (``None`` when absent) and returns the new
#: document, or ``None`` to leave it unchanged. It may run several times; keep it pure.
Mutation = Callable[[dict[str, Any] | None], dict[str, Any] | None]


class RecordStore(ABC):
    """Firestore documents, addressed by collection and id."""

    @abstractmethod
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """The document, or ``None``."""

    @abstractmethod
    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        """Create the document if absent; ``False`` (and no change) when it exists."""

    @abstractmethod
    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create or replace the document."""

    @abstractmethod
    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        """Read-modify-write the document atomically; returns the document as it now stands.

        Raises:
            ContentionError: concurrent writers kept winning; retry the operation later.
        """

    @abstractmethod
    def list(
        self, collection: str, *, where: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Documents of ``collection`` whose fields equal ``where`` (all of them when omitted)."""


@dataclass(frozen=True)
class PipelineJobInfo:
    """What the product reads of a Vertex AI pipeline job."""

    name: str
    state: str
    error: str | None = None
    resource: Mapping[str, Any] | None = None

    @property
    def job_id(self) -> str:
        """The last segment of the resource name."""
        return self.name.rsplit("/", 1)[-1]


class VertexPipelines(ABC):
    """Vertex AI pipeline jobs (``pipelineJobs`` REST resource)."""

    @abstractmethod
    def create(self, location: str, job_id: str, body: Mapping[str, Any]) -> PipelineJobInfo:
        """Create pipeline job ``job_id`` in ``location`` from a pipelineJobs.create ``body``.

        Raises:
            AlreadyExistsError: a job with that id exists (an idempotent retry: success).
            RequestRejectedError: the service refused the request (permanent).
            QuotaExceededError: out of quota for now (transient).
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def get(self, name: str) -> PipelineJobInfo:
        """The pipeline job with resource name ``name``.

        Raises:
            ObjectNotFoundError: no such job.
            ServiceUnavailableError: the service did not answer (transient).
        """
