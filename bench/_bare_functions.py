"""Bare CloudEvent functions: what the benchmarks measure the product's functions against.

A functions-framework source of its own (``--source bench/_bare_functions.py --target NAME``);
at load it imports functions-framework and nothing else, so a process serving ``bare`` costs what
any function costs. The others import what they need on their first event, as the product does:

- ``bare``: returns at once (the cold-start and throughput baseline);
- ``receipt``: appends the storage object's name, generation and the wall-clock time the event
  arrived to the JSON Lines file named by ``BENCH_RECEIPTS_FILE`` (the delivery baseline);
- ``bare_validate_clients``: builds the Google clients ``validate_dataset`` uses (Firestore,
  Cloud Storage, Pub/Sub) and makes one request with each, and nothing of ours;
- ``bare_launch_clients``: the same for ``launch_job`` (Firestore, the Vertex AI
  ``PipelineServiceClient`` over REST, Pub/Sub).

The client functions take what to ask for from their event's data (:func:`clients_event_data`
lists the keys), so they need no settings of the product. Clients are built once per process, as
the product's adapters are.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

#: The environment variable naming the file ``receipt`` appends to.
RECEIPTS_VARIABLE = "BENCH_RECEIPTS_FILE"
#: Seconds a publish may take before the function fails (the product's adapter waits as long).
PUBLISH_TIMEOUT = 30.0

_clients: dict[str, Any] = {}


@functions_framework.cloud_event
def bare(cloud_event: CloudEvent) -> None:
    """Do nothing."""
    return None


@functions_framework.cloud_event
def receipt(cloud_event: CloudEvent) -> None:
    """Record when a storage event arrived (object, generation, wall clock); nothing else.

    Raises:
        KeyError: ``BENCH_RECEIPTS_FILE`` is not set.
    """
    received = time.time()
    data = cloud_event.get_data() or {}
    line = {"name": data.get("name"), "generation": str(data.get("generation")), "at": received}
    with Path(os.environ[RECEIPTS_VARIABLE]).open("a") as out:
        out.write(json.dumps(line) + "\n")


def clients_event_data(
    *,
    project: str,
    bucket: str,
    name: str,
    collection: str,
    topic: str,
    location: str,
    vertex_endpoint: str,
) -> dict[str, str]:
    """The data of an event for ``bare_validate_clients`` or ``bare_launch_clients``: the object
    to read, the collection to read a document of, the topic to publish to, and for the launcher
    the Vertex AI location and API endpoint (``http://`` for the local emulator)."""
    return {
        "project": project,
        "bucket": bucket,
        "name": name,
        "collection": collection,
        "topic": topic,
        "location": location,
        "vertex_endpoint": vertex_endpoint,
    }


def _firestore_read(data: dict[str, str]) -> None:
    from google.cloud import firestore

    if "firestore" not in _clients:
        _clients["firestore"] = firestore.Client(project=data["project"])
    _clients["firestore"].collection(data["collection"]).document("bare-function").get()


def _publish(data: dict[str, str]) -> None:
    import google.cloud.pubsub_v1 as pubsub_v1

    if "pubsub" not in _clients:
        _clients["pubsub"] = pubsub_v1.PublisherClient()
    publisher = _clients["pubsub"]
    topic = publisher.topic_path(data["project"], data["topic"])
    publisher.publish(topic, b'{"bare": true}').result(timeout=PUBLISH_TIMEOUT)


@functions_framework.cloud_event
def bare_validate_clients(cloud_event: CloudEvent) -> None:
    """Read a Firestore document, the event's object's metadata and publish one message.

    Raises:
        LookupError: the object does not exist (the benchmark gave a wrong event).
    """
    import google.cloud.storage as storage

    data: dict[str, str] = dict(cloud_event.get_data() or {})
    _firestore_read(data)
    if "storage" not in _clients:
        _clients["storage"] = storage.Client(project=data["project"])
    if _clients["storage"].bucket(data["bucket"]).get_blob(data["name"]) is None:
        raise LookupError(f"gs://{data['bucket']}/{data['name']} does not exist")
    _publish(data)


@functions_framework.cloud_event
def bare_launch_clients(cloud_event: CloudEvent) -> None:
    """Read a Firestore document, list one pipeline job of the location and publish one message."""
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient

    data: dict[str, str] = dict(cloud_event.get_data() or {})
    _firestore_read(data)
    if "vertex" not in _clients:
        options: dict[str, Any] = {"api_endpoint": data["vertex_endpoint"]}
        credentials = None
        if data["vertex_endpoint"].startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        _clients["vertex"] = PipelineServiceClient(
            transport="rest", credentials=credentials, client_options=options
        )
    parent = f"projects/{data['project']}/locations/{data['location']}"
    # A list call sends its first page's request at once.
    _clients["vertex"].list_pipeline_jobs(request={"parent": parent, "page_size": 1})
    _publish(data)
