"""Pub/Sub publishing adapter (google-cloud-pubsub)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from distillery.adapters._errors import translate_google_errors
from distillery.errors import ConfigurationError, ObjectNotFoundError
from distillery.ports import Publisher

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

            self._client = pubsub_v1.PublisherClient()
        return self._client

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        path = f"projects/{self._project}/topics/{topic}"
        try:
            with translate_google_errors(f"publishing to {path}"):
                future = self.client.publish(path, data, **dict(attributes or {}))
                return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
        except ObjectNotFoundError as exc:
            raise ConfigurationError(f"the topic {path} does not exist") from exc
