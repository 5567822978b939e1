"""A started :class:`~distillery.local.stack.control.Stack` with the helpers tests want.

Official clients (built lazily, pointed at the emulators), uploads, publishing, throw-away
subscriptions that see only what is published after they were made, and :meth:`StackHarness.reset`,
which clears a running stack's data between tests (only tests reset a stack).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from distillery.core.settings import Settings
from distillery.facts import SUPPORTED_REGIONS
from distillery.local.stack import _clients
from distillery.local.stack.control import BRIDGE, FIRESTORE, GCS, PUBSUB, VERTEX, Stack
from distillery.local.stack.errors import ServiceStartError
from distillery.local.stack.processes import HOST, local_request

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1
    import google.cloud.storage as storage
    from google.cloud import firestore

logger = logging.getLogger(__name__)

#: Pipeline job states a reset cancels.
_UNFINISHED_PIPELINE_STATES = frozenset(
    {"PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING"}
)


@dataclass(frozen=True)
class PulledMessage:
    """A message pulled (and acknowledged) from a test subscription, decoded."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: datetime | None = None
    delivery_attempt: int = 0

    @property
    def text(self) -> str:
        """The data as UTF-8 text."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The data parsed as JSON.

        Raises:
            ValueError: the data is not JSON.
        """
        return json.loads(self.data)


class TopicSubscription:
    """A fresh pull subscription on one topic; sees only messages published after it was made."""

    def __init__(self, harness: StackHarness, topic: str, name: str) -> None:
        self.harness = harness
        self.topic = topic
        self.name = name
        self.path = harness.subscriber().subscription_path(harness.project, name)
        self.closed = False

    def pull(self, max_messages: int = 1, timeout: float = 10.0) -> list[PulledMessage]:
        """Pull and acknowledge until ``max_messages`` arrived or ``timeout`` seconds passed.

        Returns what arrived (possibly fewer than ``max_messages``, possibly none).
        """
        from google.api_core import exceptions as api_exceptions

        subscriber = self.harness.subscriber()
        deadline = time.monotonic() + timeout
        pulled: list[PulledMessage] = []
        while len(pulled) < max_messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                response = subscriber.pull(
                    request={"subscription": self.path, "max_messages": max_messages - len(pulled)},
                    timeout=max(0.5, min(left, 5.0)),
                    retry=None,
                )
            except api_exceptions.DeadlineExceeded:
                continue
            received = list(response.received_messages)
            if not received:
                continue
            subscriber.acknowledge(
                request={"subscription": self.path, "ack_ids": [r.ack_id for r in received]}
            )
            pulled.extend(
                PulledMessage(
                    message_id=r.message.message_id,
                    data=bytes(r.message.data),
                    attributes=dict(r.message.attributes),
                    publish_time=r.message.publish_time,
                    delivery_attempt=int(r.delivery_attempt),
                )
                for r in received
            )
        return pulled

    def close(self) -> None:
        """Delete the subscription (idempotent)."""
        if self.closed:
            return
        from google.api_core import exceptions as api_exceptions

        self.closed = True
        with contextlib.suppress(api_exceptions.NotFound):
            self.harness.subscriber().delete_subscription(request={"subscription": self.path})
        self.harness._forget(self)

    def __enter__(self) -> TopicSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class StackHarness:
    """A running stack plus clients and helpers (what the ``local_stack`` fixture yields)."""

    _counter = itertools.count(1)

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._lock = threading.Lock()
        self._storage: storage.Client | None = None
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._firestore: firestore.Client | None = None
        self._subscriptions: list[TopicSubscription] = []

    # --- addresses --------------------------------------------------------------------------

    @property
    def project(self) -> str:
        """The stack's project id."""
        return self.stack.project

    @property
    def bucket(self) -> str:
        """The datasets bucket."""
        return self.stack.bucket

    @property
    def settings(self) -> Settings:
        """The product settings of the stack (project, bucket, region, topic names…)."""
        return self.stack.settings

    @property
    def env(self) -> dict[str, str]:
        """The client environment: project, bucket, region and the emulator hosts."""
        return self.stack.env

    @property
    def host(self) -> str:
        """127.0.0.1."""
        return HOST

    @property
    def ports(self) -> Mapping[str, int]:
        """Service (``pubsub``, ``firestore``, ``gcs``, ``bridge``, ``function:NAME``) → port."""
        return dict(self.stack.ports)

    @property
    def pubsub_port(self) -> int:
        """The Pub/Sub emulator's port."""
        return self.stack.ports[PUBSUB]

    @property
    def firestore_port(self) -> int:
        """The Firestore emulator's port."""
        return self.stack.ports[FIRESTORE]

    @property
    def gcs_port(self) -> int:
        """fake-gcs-server's port."""
        return self.stack.ports[GCS]

    @property
    def pubsub_host(self) -> str:
        """``127.0.0.1:PORT`` (``PUBSUB_EMULATOR_HOST``)."""
        return self.stack.pubsub_host

    @property
    def firestore_host(self) -> str:
        """``127.0.0.1:PORT`` (``FIRESTORE_EMULATOR_HOST``)."""
        return self.stack.firestore_host

    @property
    def storage_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``STORAGE_EMULATOR_HOST``)."""
        return self.stack.storage_url

    @property
    def bridge_url(self) -> str:
        """The bridge's status server (``GET /healthz``)."""
        return f"http://{HOST}:{self.stack.ports[BRIDGE]}"

    def function_url(self, name: str) -> str:
        """Where function ``name`` (its target) listens, e.g. ``http://127.0.0.1:8101/``.

        Raises:
            KeyError: the stack runs no function of that name.
        """
        return self.stack.function_url(name)

    # --- clients ----------------------------------------------------------------------------

    def storage_client(self) -> storage.Client:
        """A Cloud Storage client for fake-gcs-server (one, built on first use)."""
        with self._lock:
            if self._storage is None:
                self._storage = _clients.storage_client(self.storage_url, self.project)
            return self._storage

    def publisher(self) -> pubsub_v1.PublisherClient:
        """A Pub/Sub publisher client for the emulator (one, built on first use)."""
        with self._lock:
            if self._publisher is None:
                self._publisher = _clients.publisher_client(self.pubsub_host)
            return self._publisher

    def subscriber(self) -> pubsub_v1.SubscriberClient:
        """A Pub/Sub subscriber client for the emulator (one, built on first use)."""
        with self._lock:
            if self._subscriber is None:
                self._subscriber = _clients.subscriber_client(self.pubsub_host)
            return self._subscriber

    def firestore_client(self) -> firestore.Client:
        """A Firestore client for the emulator (one, built on first use)."""
        with self._lock:
            if self._firestore is None:
                self._firestore = _clients.firestore_client(self.firestore_host, self.project)
            return self._firestore

    # --- helpers ----------------------------------------------------------------------------

    def upload(
        self, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> storage.Blob:
        """Upload ``data`` as object ``name`` of the datasets bucket; the blob (with generation).

        Raises:
            google.api_core.exceptions.GoogleAPICallError: fake-gcs-server refused.
        """
        blob = self.storage_client().bucket(self.bucket).blob(name)
        blob.upload_from_string(data, content_type=content_type)
        return blob

    def publish(self, topic: str, data: bytes | str | Any, **attributes: str) -> str:
        """Publish on ``topic`` (a short name); ``data`` bytes, text, or anything JSON. The id.

        Raises:
            google.api_core.exceptions.GoogleAPICallError: the emulator refused.
        """
        if isinstance(data, str):
            payload = data.encode("utf-8")
        elif isinstance(data, bytes):
            payload = data
        else:
            payload = json.dumps(data).encode("utf-8")
        publisher = self.publisher()
        future = publisher.publish(publisher.topic_path(self.project, topic), payload, **attributes)
        return str(future.result(timeout=30))

    def subscribe(self, topic: str) -> TopicSubscription:
        """A new pull subscription on ``topic`` (short name): only later messages reach it.

        Close it (or let the ``stack`` fixture's reset delete it).

        Raises:
            google.api_core.exceptions.GoogleAPICallError: e.g. NotFound for an unknown topic.
        """
        name = f"test-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        subscriber = self.subscriber()
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(self.project, name),
                "topic": self.publisher().topic_path(self.project, topic),
                "ack_deadline_seconds": 60,
            }
        )
        handle = TopicSubscription(self, topic, name)
        with self._lock:
            self._subscriptions.append(handle)
        return handle

    def dead_letters(self, topic: str) -> TopicSubscription:
        """The stack's own pull subscription on ``<topic>-dlq`` (not deleted by ``close``).

        Raises:
            KeyError: the stack has no dead-letter topic for ``topic``.
        """
        dlq = f"{topic}-dlq"
        name = self.stack.dead_letter_subscriptions()[dlq]
        handle = TopicSubscription(self, dlq, name)
        handle.closed = True  # owned by the stack: never deleted from here
        return handle

    # --- reset: only tests clear a running stack -------------------------------------------

    def reset(self, *, idle_timeout: float = 30.0) -> None:
        """Clear all data without restarting anything: messages, documents, objects.

        Unfinished pipeline jobs on the local Vertex AI API are cancelled (so no training from an
        earlier test runs on), pending messages of the stack's subscriptions are acknowledged (seek
        to now), every other subscription (the test subscriptions too) is deleted, deliveries in
        flight are waited for, then Firestore is wiped and the bucket emptied. Missing topics or
        subscriptions (after an emulator ``/reset``) are created again.

        Raises:
            ServiceStartError: an emulator did not do as asked.
        """
        with self._lock:
            handles, self._subscriptions = self._subscriptions, []
        for handle in handles:
            handle.closed = True  # deleted below with every other foreign subscription
        self.cancel_pipeline_jobs()
        self.stack.provision_pubsub()
        self._drop_foreign_subscriptions()
        self._seek_to_now()
        self._wait_bridge_idle(idle_timeout)
        # Again: a delivery that was in flight may have published on a managed topic meanwhile.
        self._seek_to_now()
        self.wipe_firestore()
        self.empty_bucket()

    def pipeline_jobs(self, regions: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Pipeline jobs on the local Vertex AI API by resource name, in ``regions`` (default:
        the stack's region and every supported one).

        Raises:
            ServiceStartError: the local Vertex AI API did not answer as expected.
        """
        if regions is None:
            regions = (self.stack.config.region, *SUPPORTED_REGIONS)
        found: dict[str, dict[str, Any]] = {}
        for location in dict.fromkeys(regions):
            parent = f"{self.stack.vertex_url}/v1/projects/{self.project}/locations/{location}"
            token = ""
            while True:
                query = urllib.parse.urlencode({"pageSize": 100, "pageToken": token})
                status, body = local_request("GET", f"{parent}/pipelineJobs?{query}")
                if status != 200:
                    raise ServiceStartError(
                        f"the local Vertex AI API answered {status} listing jobs: {body[:200]!r}"
                    )
                page = json.loads(body or b"{}")
                found.update((job["name"], job) for job in page.get("pipelineJobs", []))
                token = page.get("nextPageToken", "")
                if not token:
                    break
        return found

    def cancel_pipeline_jobs(self) -> int:
        """Cancel every unfinished pipeline job on the local Vertex AI API; how many.

        Raises:
            ServiceStartError: the local Vertex AI API did not answer as expected.
        """
        if VERTEX not in self.stack.ports:
            return 0
        cancelled = 0
        for name, job in self.pipeline_jobs().items():
            if job.get("state") in _UNFINISHED_PIPELINE_STATES:
                local_request("POST", f"{self.stack.vertex_url}/v1/{name}:cancel", payload={})
                cancelled += 1
        return cancelled

    def wipe_firestore(self) -> None:
        """Delete every document of the stack's project in the Firestore emulator.

        Raises:
            ServiceStartError: the emulator refused.
        """
        url = (
            f"http://{self.firestore_host}/emulator/v1/projects/"
            f"{urllib.parse.quote(self.project)}/databases/(default)/documents"
        )
        status, body = local_request("DELETE", url)
        if status != 200:
            raise ServiceStartError(f"could not wipe Firestore: {status} {body!r}")

    def empty_bucket(self) -> None:
        """Delete every object in the datasets bucket.

        Raises:
            ServiceStartError: fake-gcs-server refused, or objects kept appearing.
        """
        bucket_url = f"{self.storage_url}/storage/v1/b/{urllib.parse.quote(self.bucket, safe='')}"
        for _ in range(100):
            status, body = local_request("GET", f"{bucket_url}/o?maxResults=1000")
            if status != 200:
                raise ServiceStartError(f"could not list {self.bucket}: {status} {body!r}")
            items = json.loads(body).get("items", [])
            if not items:
                return
            for item in items:
                name = urllib.parse.quote(item["name"], safe="")
                status, body = local_request("DELETE", f"{bucket_url}/o/{name}")
                if status not in (200, 204, 404):
                    raise ServiceStartError(f"could not delete {item['name']}: {status}")
        raise ServiceStartError(f"the bucket {self.bucket} would not empty")

    def _seek_to_now(self) -> None:
        """Acknowledge every pending message of the stack's own subscriptions."""
        subscriber = self.subscriber()
        now = datetime.now(UTC)
        for name in self.stack.managed_subscriptions():
            subscriber.seek(
                request={
                    "subscription": subscriber.subscription_path(self.project, name),
                    "time": now,
                }
            )

    def _drop_foreign_subscriptions(self) -> None:
        """Delete every subscription of the project that the stack does not own."""
        from google.api_core import exceptions as api_exceptions

        subscriber = self.subscriber()
        keep = {
            subscriber.subscription_path(self.project, name)
            for name in self.stack.managed_subscriptions()
        }
        for subscription in subscriber.list_subscriptions(
            request={"project": f"projects/{self.project}"}
        ):
            if subscription.name not in keep:
                with contextlib.suppress(api_exceptions.NotFound):
                    subscriber.delete_subscription(request={"subscription": subscription.name})

    def _wait_bridge_idle(self, timeout: float) -> None:
        """Wait until the bridge has no delivery in flight (a warning after ``timeout`` s)."""
        if BRIDGE not in self.stack.services:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = local_request("GET", f"{self.bridge_url}/healthz")
            if status == 200 and json.loads(body).get("inflight") == 0:
                return
            time.sleep(0.05)
        logger.warning("the bridge still has deliveries in flight after %.0f s", timeout)

    def close(self) -> None:
        """Close the clients (the stack itself is stopped by its owner)."""
        for handle in list(self._subscriptions):
            with contextlib.suppress(Exception):
                handle.close()
        for client in (self._publisher, self._subscriber):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.transport.close()
        if self._storage is not None:
            with contextlib.suppress(Exception):
                self._storage.close()
        if self._firestore is not None:
            with contextlib.suppress(Exception):
                self._firestore.close()  # type: ignore[no-untyped-call]
        self._publisher = self._subscriber = None
        self._storage = self._firestore = None

    def _forget(self, handle: TopicSubscription) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscriptions.remove(handle)
