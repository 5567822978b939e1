"""Pub/Sub adapters (google-cloud-pubsub): publishing, and temporary pull subscriptions."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from distillery.adapters._errors import translate_google_errors
from distillery.core.errors import ConfigurationError, ObjectNotFoundError, ServiceUnavailableError
from distillery.core.ports import Publisher

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

#: Below the launch claim (DISTILLERY_LAUNCH_CLAIM_SECONDS), so a slow publish never outlives it.
PUBLISH_TIMEOUT_SECONDS = 20.0


class PubsubPublisher(Publisher):
    """Publishes to topics of one project (or the emulator through ``PUBSUB_EMULATOR_HOST``)."""

    def __init__(self, project: str, client: pubsub_v1.PublisherClient | None = None) -> None:
        if not project:
            raise ConfigurationError("a Pub/Sub publisher needs GOOGLE_CLOUD_PROJECT")
        self._project = project
        self._client = client

    @property
    def client(self) -> pubsub_v1.PublisherClient:
        """The publisher client, built on first use."""
        if self._client is None:
            import google.cloud.pubsub_v1 as pubsub_v1

            # Every publish is waited for before the next: a batch never gets a second message,
            # and waiting for one (10 ms by default) only delays each publish.
            self._client = pubsub_v1.PublisherClient(
                batch_settings=pubsub_v1.types.BatchSettings(max_messages=1)
            )
        return self._client

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        path = f"projects/{self._project}/topics/{topic}"
        try:
            with translate_google_errors(f"publishing to {path}"):
                future = self.client.publish(path, data, **dict(attributes or {}))
                return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
        except ObjectNotFoundError as exc:
            raise ConfigurationError(f"the topic {path} does not exist") from exc


@dataclass(frozen=True)
class ReceivedMessage:
    """A message pulled (and acknowledged) from a :class:`TemporarySubscription`."""

    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""


class TemporarySubscription:
    """A pull subscription of one's own on a topic, deleted on :meth:`close`.

    It sees only what is published after it was made. In case the process dies before closing it,
    it expires after a day without pulls (the shortest expiration Pub/Sub allows) and keeps
    unacknowledged messages for ten minutes only.
    """

    def __init__(
        self,
        project: str,
        topic: str,
        *,
        prefix: str = "distillery-watch",
        client: pubsub_v1.SubscriberClient | None = None,
    ) -> None:
        """Create the subscription.

        Raises:
            ConfigurationError: the topic does not exist, or no permission to subscribe.
            ServiceUnavailableError: Pub/Sub did not answer (transient).
        """
        import google.cloud.pubsub_v1 as pubsub_v1

        if not project:
            raise ConfigurationError("a Pub/Sub subscription needs GOOGLE_CLOUD_PROJECT")
        self._client = client or pubsub_v1.SubscriberClient()
        self.topic = f"projects/{project}/topics/{topic}"
        self.path = f"projects/{project}/subscriptions/{prefix}-{uuid.uuid4().hex[:12]}"
        self._closed = False
        try:
            with translate_google_errors(f"subscribing to {self.topic}"):
                self._client.create_subscription(
                    request={
                        "name": self.path,
                        "topic": self.topic,
                        "ack_deadline_seconds": 60,
                        "message_retention_duration": {"seconds": 600},
                        "expiration_policy": {"ttl": {"seconds": 86400}},
                    }
                )
        except ObjectNotFoundError as exc:
            raise ConfigurationError(f"the topic {self.topic} does not exist") from exc

    def pull(self, timeout: float, max_messages: int = 100) -> list[ReceivedMessage]:
        """What arrives within ``timeout`` seconds (acknowledged; possibly nothing).

        Raises:
            ServiceUnavailableError: Pub/Sub did not answer (transient).
        """
        from google.api_core import exceptions as gexc

        try:
            with translate_google_errors(f"pulling from {self.path}"):
                response = self._client.pull(
                    request={"subscription": self.path, "max_messages": max_messages},
                    timeout=max(timeout, 0.1),
                    retry=None,
                )
        except ServiceUnavailableError as exc:
            if isinstance(exc.__cause__, gexc.DeadlineExceeded):
                return []  # Nothing arrived in time.
            raise
        received = list(response.received_messages)
        if received:
            with translate_google_errors(f"acknowledging on {self.path}"):
                self._client.acknowledge(
                    request={"subscription": self.path, "ack_ids": [r.ack_id for r in received]}
                )
        return [
            ReceivedMessage(
                data=bytes(r.message.data),
                attributes=dict(r.message.attributes),
                message_id=str(r.message.message_id),
            )
            for r in received
        ]

    def close(self) -> None:
        """Delete the subscription (idempotent; a failure is left to its expiration)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._client.delete_subscription(request={"subscription": self.path}, timeout=10)

    def __enter__(self) -> TemporarySubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
