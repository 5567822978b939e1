"""The in-memory fakes are as unkind as the real services, where the ports allow it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from distillery.core.errors import RequestRejectedError
from distillery.fakes import InMemoryModelEndpoints, InMemoryObjectStore, InMemoryRecordStore
from tests.helpers import wait_for


def test_fakes_transact_runs_the_mutation_again_and_keeps_the_last_result() -> None:
    records = InMemoryRecordStore()
    records.set("c", "d", {"n": 1})
    seen: list[dict[str, Any] | None] = []

    def increment(current: dict[str, Any] | None) -> dict[str, Any] | None:
        seen.append(current)
        assert current is not None
        return {"n": current["n"] + 1, "run": len(seen)}

    assert records.transact("c", "d", increment) == {"n": 2, "run": 2}
    # Both runs saw the document as it stood: the first one's result was discarded.
    assert seen == [{"n": 1}, {"n": 1}]
    assert records.get("c", "d") == {"n": 2, "run": 2}


def test_fakes_transact_exposes_a_mutation_with_side_effects() -> None:
    records = InMemoryRecordStore()
    counter = {"n": 0}

    def impure(current: dict[str, Any] | None) -> dict[str, Any] | None:
        counter["n"] += 1  # state outside the document: counted once per run, not per write
        return {"count": counter["n"]}

    records.transact("c", "d", impure)
    assert records.get("c", "d") == {"count": 2}


def test_fakes_transact_gives_each_run_its_own_copy() -> None:
    records = InMemoryRecordStore()
    records.set("c", "d", {"items": [1]})

    def append(current: dict[str, Any] | None) -> dict[str, Any] | None:
        assert current is not None
        current["items"].append(2)  # changes this run's copy only
        return current

    assert records.transact("c", "d", append) == {"items": [1, 2]}
    assert records.transact("c", "d", lambda current: None) == {"items": [1, 2]}


def test_fakes_transact_lost_attempts_is_configurable() -> None:
    calls = {"n": 0}

    def count(current: dict[str, Any] | None) -> dict[str, Any] | None:
        calls["n"] += 1
        return {}

    InMemoryRecordStore(lost_attempts=0).transact("c", "d", count)
    assert calls["n"] == 1
    InMemoryRecordStore(lost_attempts=3).transact("c", "d", count)
    assert calls["n"] == 1 + 4
    with pytest.raises(ValueError, match="lost_attempts"):
        InMemoryRecordStore(lost_attempts=-1)


def _endpoints_with_model(poll_seconds: float) -> tuple[InMemoryModelEndpoints, str, str]:
    endpoints = InMemoryModelEndpoints("p", deploy_polls=3, poll_seconds=poll_seconds)
    model = endpoints.add_model("m1", "family")
    endpoint = endpoints.create_endpoint("family", "us-central1").name
    return endpoints, endpoint, model


def test_fakes_deploy_is_an_operation_the_model_is_listed_only_once_it_is_done() -> None:
    endpoints, endpoint, model = _endpoints_with_model(poll_seconds=0.5)
    result: list[str] = []
    deploying = threading.Thread(target=lambda: result.append(endpoints.deploy(endpoint, model)))
    deploying.start()
    try:
        [operation] = wait_for(lambda: endpoints.operations, timeout=5, interval=0.01)
        # While the operation runs, readers see the endpoint without the model.
        assert not operation.done
        assert endpoints.get_endpoint(endpoint).deployed_models == ()
        assert endpoints.find_endpoint("family", "us-central1") is not None
        assert endpoints.serving(endpoint) == {}
        with pytest.raises(RequestRejectedError):
            endpoints.predict(endpoint, ["hello"])
    finally:
        deploying.join(timeout=10)
    [deployed_id] = result
    assert operation.done and operation.error is None
    assert operation.endpoint == endpoint and operation.model == model
    assert endpoints.get_endpoint(endpoint).deployed_id_of(model) == deployed_id
    assert endpoints.serving(endpoint) == {model: 100}
    assert endpoints.predict(endpoint, ["hello"]).contents == ("hello",)


def test_fakes_deploy_fails_when_its_split_names_a_model_undeployed_meanwhile() -> None:
    endpoints, endpoint, first = _endpoints_with_model(poll_seconds=0.0)
    first_id = endpoints.deploy(endpoint, first)
    second = endpoints.add_model("m2", "family")
    endpoints.poll_seconds = 0.5
    errors: list[Exception] = []

    def deploy_canary() -> None:
        try:
            endpoints.deploy(endpoint, second, traffic_percent=10, incumbent=first_id)
        except RequestRejectedError as exc:
            errors.append(exc)

    deploying = threading.Thread(target=deploy_canary)
    deploying.start()
    try:
        wait_for(lambda: len(endpoints.operations) == 2, timeout=5, interval=0.01)
        # Undeployed while the canary's operation runs; its split still gives it 90 %.
        endpoints.set_traffic(endpoint, {first_id: 100})
        endpoints.undeploy(endpoint, first_id)
    finally:
        deploying.join(timeout=10)
    [error] = errors
    assert first_id in str(error) and "undeployed" in str(error)
    assert endpoints.operations[-1].done and endpoints.operations[-1].error
    assert endpoints.get_endpoint(endpoint).deployed_models == ()


def test_fakes_list_names_lists_every_level_under_the_prefix_sorted() -> None:
    store = InMemoryObjectStore()
    for name in ("out/tb/b", "out/tb/a", "out/tb/deeper/c", "out/tbx", "other/tb/a"):
        store.put("bucket", name, b"x")
    store.put("elsewhere", "out/tb/z", b"x")
    assert store.list_names("bucket", "out/tb/") == ["out/tb/a", "out/tb/b", "out/tb/deeper/c"]
    assert store.list_names("bucket", "out/none/") == []
