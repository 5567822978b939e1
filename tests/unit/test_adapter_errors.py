"""The one error mapping: the same Google error is the same Distillery error in every adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import requests
from google.api_core import exceptions as gexc

from distillery.adapters import FirestoreRecordStore, GcsObjectStore, PubsubPublisher
from distillery.adapters._errors import translate, translate_google_errors
from distillery.adapters.vertex import VertexModelEndpointsAdapter, VertexPipelineAdapter
from distillery.core.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ContentionError,
    DistilleryError,
    ObjectNotFoundError,
    PermanentError,
    PreconditionFailedError,
    QuotaExceededError,
    RequestRejectedError,
    RetryableError,
    ServiceUnavailableError,
)

#: Google error → the Distillery error every adapter raises for it.
MAPPING: list[tuple[Exception, type[DistilleryError]]] = [
    (gexc.BadRequest("bad"), RequestRejectedError),
    (gexc.InvalidArgument("bad field"), RequestRejectedError),
    (gexc.FailedPrecondition("not ready"), RequestRejectedError),
    (gexc.OutOfRange("too far"), RequestRejectedError),
    (gexc.Unauthenticated("who"), ConfigurationError),
    (gexc.FailedPrecondition("The query requires an index. Create it here: x"), ConfigurationError),
    (gexc.PermissionDenied("no"), ConfigurationError),
    (gexc.NotFound("gone"), ObjectNotFoundError),
    (gexc.Aborted("lost"), ContentionError),
    (gexc.AlreadyExists("there"), AlreadyExistsError),
    (gexc.Conflict("there"), AlreadyExistsError),
    (gexc.PreconditionFailed("changed"), PreconditionFailedError),
    (gexc.TooManyRequests("slow down"), QuotaExceededError),
    (gexc.ResourceExhausted("quota"), QuotaExceededError),
    (gexc.Cancelled("cancelled"), ServiceUnavailableError),
    (gexc.InternalServerError("oops"), ServiceUnavailableError),
    (gexc.ServiceUnavailable("down"), ServiceUnavailableError),
    (gexc.DeadlineExceeded("slow"), ServiceUnavailableError),
    (gexc.RetryError("gave up", cause=None), ServiceUnavailableError),
    (requests.exceptions.ConnectionError("refused"), ServiceUnavailableError),
    (ConnectionResetError("reset"), ServiceUnavailableError),
    (gexc.MethodNotAllowed("no"), RequestRejectedError),
]


def _firestore(error: Exception) -> Callable[[], Any]:
    client = mock.MagicMock()
    client.collection.return_value.document.return_value.get.side_effect = error
    return lambda: FirestoreRecordStore(client=client).get("jobs", "j1")


def _firestore_set(error: Exception) -> Callable[[], Any]:
    client = mock.MagicMock()
    client.collection.return_value.document.return_value.set.side_effect = error
    return lambda: FirestoreRecordStore(client=client).set("jobs", "j1", {"a": 1})


def _gcs(error: Exception) -> Callable[[], Any]:
    client = mock.MagicMock()
    client.bucket.return_value.get_blob.side_effect = error
    return lambda: GcsObjectStore(client=client).stat("bkt", "a.jsonl")


def _gcs_write(error: Exception) -> Callable[[], Any]:
    client = mock.MagicMock()
    client.bucket.return_value.blob.return_value.upload_from_string.side_effect = error
    return lambda: GcsObjectStore(client=client).write_bytes("bkt", "a.jsonl", b"{}")


def _pubsub(error: Exception) -> Callable[[], Any]:
    client = mock.MagicMock()
    client.publish.return_value.result.side_effect = error
    return lambda: PubsubPublisher("p", client=client).publish("distill-job-status", b"{}")


def _pipelines(error: Exception) -> Callable[[], Any]:
    adapter = VertexPipelineAdapter("p")
    client = mock.MagicMock()
    client.create_pipeline_job.side_effect = error
    client.get_pipeline_job.side_effect = error
    adapter._clients["us-central1"] = client
    return lambda: adapter.create("us-central1", "job-1", {"displayName": "job-1"})


def _endpoints(error: Exception) -> Callable[[], Any]:
    adapter = VertexModelEndpointsAdapter("p")
    client = mock.MagicMock()
    client.update_endpoint.side_effect = error
    adapter._endpoint_clients["us-central1"] = client
    return lambda: adapter.set_traffic("projects/p/locations/us-central1/endpoints/1", {"1": 100})


ADAPTERS: dict[str, Callable[[Exception], Callable[[], Any]]] = {
    "firestore get": _firestore,
    "firestore set": _firestore_set,
    "gcs stat": _gcs,
    "gcs write": _gcs_write,
    "pubsub publish": _pubsub,
    "vertex pipelines create": _pipelines,
    "vertex endpoints set_traffic": _endpoints,
}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@pytest.mark.parametrize(("error", "expected"), MAPPING, ids=[type(e).__name__ for e, _ in MAPPING])
def test_every_adapter_maps_a_google_error_the_same_way(
    adapter: str, error: Exception, expected: type[DistilleryError]
) -> None:
    if adapter == "pubsub publish" and isinstance(error, gexc.NotFound):
        # The one refinement: a missing topic is a deployment to fix, so the event is kept.
        expected = ConfigurationError
    call = ADAPTERS[adapter](error)
    with pytest.raises(expected) as caught:
        call()
    assert type(caught.value) is expected
    cause = caught.value.__cause__
    assert cause is error or (cause is not None and cause.__cause__ is error)


def test_a_400_is_permanent_and_429_and_503_are_retried_everywhere() -> None:
    assert isinstance(translate(gexc.InvalidArgument("x"), "w"), PermanentError)
    assert isinstance(translate(gexc.FailedPrecondition("x"), "w"), PermanentError)
    assert isinstance(translate(gexc.ResourceExhausted("x"), "w"), RetryableError)
    assert isinstance(translate(gexc.ServiceUnavailable("x"), "w"), RetryableError)
    assert isinstance(translate(gexc.Aborted("x"), "w"), RetryableError)


def test_the_message_names_what_was_being_done() -> None:
    error = translate(gexc.InvalidArgument("field x is bad"), "creating pipeline job j1")
    assert str(error) == "creating pipeline job j1: rejected as invalid (field x is bad)"


def test_errors_that_are_not_googles_pass_through() -> None:
    assert translate(ValueError("x"), "w") is None
    with pytest.raises(ValueError, match="ours"), translate_google_errors("w"):
        raise ValueError("ours")
    with pytest.raises(ContentionError, match="already ours"), translate_google_errors("w"):
        raise ContentionError("already ours")
