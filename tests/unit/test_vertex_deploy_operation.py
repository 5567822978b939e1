"""The endpoints adapter's deployments as long-running operations, on the local Vertex AI API.

``start_deploy`` returns at once with the operation's name; ``deploy_operation`` reads it back by
that name (as a redelivery or reconcile does) until it is done; ``deploy`` waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from distillery.adapters.vertex import VertexModelEndpointsAdapter
from distillery.core.settings import Settings
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import EmulatorServer, create_server
from tests.helpers import wait_for

SETTINGS = Settings(project="demo-project", bucket="demo-bucket")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    server = create_server(
        SETTINGS, object_store=InMemoryObjectStore(), publisher=InMemoryPublisher()
    ).start()
    yield server
    server.stop(timeout=5)


def _model(server: EmulatorServer, name: str) -> str:
    return server.models.register(
        project="demo-project",
        location="us-central1",
        display_name="family",
        artifact_uri=f"gs://demo-bucket/models/{name}",
        files=[],
    ).name


def test_a_deployment_is_started_and_finished_by_its_operation_name(
    server: EmulatorServer,
) -> None:
    adapter = VertexModelEndpointsAdapter("demo-project", api_endpoint=server.url)
    endpoint = adapter.create_endpoint("family", "us-central1").name
    model = _model(server, "a")
    started = time.monotonic()
    name = adapter.start_deploy(endpoint, model)
    assert time.monotonic() - started < 1.0  # no waiting for the operation
    assert name.startswith(f"{endpoint}/operations/")
    running = adapter.deploy_operation(name)
    assert not running.done and running.deployed_model_id is None
    assert adapter.get_endpoint(endpoint).deployed_models == ()
    # Another adapter (another process: a redelivery) reads the operation by its name.
    other = VertexModelEndpointsAdapter("demo-project", api_endpoint=server.url)
    done = wait_for(
        lambda: (op := other.deploy_operation(name)).done and op, timeout=10, interval=0.1
    )
    assert done.error is None and done.deployed_model_id
    info = adapter.get_endpoint(endpoint)
    assert info.deployed_id_of(model) == done.deployed_model_id
    assert info.traffic_split == {done.deployed_model_id: 100}


def test_a_deployment_whose_split_lost_a_model_fails_its_operation(
    server: EmulatorServer,
) -> None:
    adapter = VertexModelEndpointsAdapter("demo-project", api_endpoint=server.url)
    endpoint = adapter.create_endpoint("family", "us-central1").name
    first = _model(server, "a")
    first_id = adapter.deploy(endpoint, first)  # waits for the operation
    name = adapter.start_deploy(endpoint, _model(server, "b"), 10, first_id)
    adapter.undeploy(endpoint, first_id)  # while the canary's operation runs
    failed = wait_for(
        lambda: (op := adapter.deploy_operation(name)).done and op, timeout=10, interval=0.1
    )
    assert failed.deployed_model_id is None
    assert failed.error and first_id in failed.error
