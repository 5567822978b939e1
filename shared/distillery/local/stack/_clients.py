"""Official Google Cloud clients pointed at the emulators explicitly (not through os.environ).

Imported lazily: the clients cost ~0.5 s each to import.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1
    import google.cloud.storage as storage
    from google.cloud import firestore

_environ_lock = threading.Lock()


def publisher_client(pubsub_host: str) -> pubsub_v1.PublisherClient:
    """A Pub/Sub publisher talking plain gRPC to the emulator at ``host:port``."""
    import google.cloud.pubsub_v1 as pubsub_v1
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    transport = PublisherGrpcTransport(channel=grpc.insecure_channel(pubsub_host))
    return pubsub_v1.PublisherClient(transport=transport)


def subscriber_client(pubsub_host: str) -> pubsub_v1.SubscriberClient:
    """A Pub/Sub subscriber talking plain gRPC to the emulator at ``host:port``."""
    import google.cloud.pubsub_v1 as pubsub_v1
    import grpc
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    transport = SubscriberGrpcTransport(channel=grpc.insecure_channel(pubsub_host))
    return pubsub_v1.SubscriberClient(transport=transport)


def storage_client(storage_url: str, project: str) -> storage.Client:
    """A Cloud Storage client for fake-gcs-server at ``http://host:port``."""
    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": storage_url},
    )


def firestore_client(firestore_host: str, project: str) -> firestore.Client:
    """A Firestore client for the emulator at ``host:port``.

    The client only learns about an emulator from ``FIRESTORE_EMULATOR_HOST`` (read once, when it
    is built), so the variable is set for the duration of the construction.
    """
    from google.cloud import firestore

    with _environ_lock:
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
        try:
            return firestore.Client(project=project)
        finally:
            if previous is None:
                del os.environ["FIRESTORE_EMULATOR_HOST"]
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous
