"""The dataset service on the in-memory ports: verdicts, records, copies and the one launch."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from distillery.core.errors import InvalidEventError, RetryableError
from distillery.core.models import LaunchRequest, StorageObject
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.example_data import generate
from distillery.services.datasets import Outcome, dataset_id, handle_object, handle_storage_event
from tests.helpers import BUCKET, jsonl, storage_event


def _upload(deps: Dependencies, name: str, data: bytes) -> StorageObject:
    assert isinstance(deps.objects, InMemoryObjectStore)
    info = deps.objects.put(BUCKET, name, data)
    return StorageObject(bucket=BUCKET, name=name, generation=info.generation, size=info.size)


def _launches(deps: Dependencies) -> list[LaunchRequest]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [
        LaunchRequest.model_validate_json(m.data)
        for m in deps.publisher.on(deps.settings.launch_topic)
    ]


def test_handle_object_valid_training_set_is_copied_recorded_and_launched(
    deps: Dependencies,
) -> None:
    train, _ = generate(300, 20)
    obj = _upload(deps, "datasets/news.jsonl", jsonl(train))
    assert handle_object(obj, deps, event_id="e1") is Outcome.LAUNCH_REQUESTED

    record = deps.records.get("datasets", dataset_id(BUCKET, obj.name, obj.generation))
    assert record is not None
    assert record["status"] == "valid"
    assert record["reports"][0]["examples"] == 300
    assert record["launch"]["state"] == "published"
    sha = record["reports"][0]["sha256"]
    assert record["validated_uri"] == f"gs://{BUCKET}/validated/{sha}/news.jsonl"
    assert deps.objects.read_bytes(BUCKET, f"validated/{sha}/news.jsonl") == jsonl(train)
    report = json.loads(deps.objects.read_bytes(BUCKET, f"reports/{record['id']}.json"))
    assert report["valid"] is True
    [request] = _launches(deps)
    assert request.dataset_uri == record["validated_uri"]
    assert request.request_id == record["id"]
    assert request.eval_dataset_uri is None


def test_handle_object_invalid_training_set_launches_nothing(deps: Dependencies) -> None:
    obj = _upload(
        deps, "datasets/bad.jsonl", b'{"input_text": "x", "output_text": "y"}\nnot json\n'
    )
    assert handle_object(obj, deps) is Outcome.INVALID
    record = deps.records.get("datasets", dataset_id(BUCKET, obj.name, obj.generation))
    assert record is not None and record["status"] == "invalid"
    rules = {r["rule"] for r in record["reports"][0]["errors"]}
    assert any("json" in rule for rule in rules)
    assert _launches(deps) == []
    assert isinstance(deps.objects, InMemoryObjectStore)
    assert deps.objects.names(BUCKET, "validated/") == []


def test_handle_object_ignores_other_prefixes_and_own_outputs(deps: Dependencies) -> None:
    for name in ("reports/x.json", "validated/abc/x.jsonl", "datasets/readme.txt", "other.jsonl"):
        obj = _upload(deps, name, b"{}")
        assert handle_object(obj, deps) is Outcome.IGNORED
    assert deps.records.list("datasets") == []


def test_handle_object_redelivered_five_times_publishes_once(deps: Dependencies) -> None:
    train, _ = generate(150, 20)
    obj = _upload(deps, "datasets/news.jsonl", jsonl(train))
    outcomes = [handle_object(obj, deps, event_id="same") for _ in range(5)]
    assert outcomes[0] is Outcome.LAUNCH_REQUESTED
    assert set(outcomes[1:]) == {Outcome.ALREADY_LAUNCHED}
    assert len(_launches(deps)) == 1


def test_handle_object_concurrent_deliveries_publish_once(deps: Dependencies) -> None:
    train, _ = generate(150, 20)
    obj = _upload(deps, "datasets/news.jsonl", jsonl(train))
    results: list[Any] = []

    def deliver() -> None:
        try:
            results.append(handle_object(obj, deps, event_id="same"))
        except RetryableError as exc:
            results.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_launches(deps)) == 1
    # A delivery that lost the race either found the launch published or asked to be retried.
    for result in results:
        assert result in (Outcome.LAUNCH_REQUESTED, Outcome.ALREADY_LAUNCHED) or isinstance(
            result, RetryableError
        )
    # Retried deliveries then find it done.
    assert handle_object(obj, deps, event_id="same") is Outcome.ALREADY_LAUNCHED


def test_handle_object_overwritten_generation_is_superseded(deps: Dependencies) -> None:
    train, _ = generate(150, 20)
    old = _upload(deps, "datasets/news.jsonl", jsonl(train))
    _upload(deps, "datasets/news.jsonl", jsonl(train[:120]))
    assert handle_object(old, deps) is Outcome.SUPERSEDED
    record = deps.records.get("datasets", dataset_id(BUCKET, old.name, old.generation))
    assert record is not None and record["status"] == "superseded"
    assert _launches(deps) == []


def test_handle_object_uses_eval_set_and_config_sidecar(deps: Dependencies) -> None:
    train, evaluation = generate(200, 30)
    _upload(deps, "datasets/news.eval.jsonl", jsonl(evaluation))
    _upload(deps, "datasets/news.config.json", b'{"train_steps": 400, "evaluation_interval": 10}')
    obj = _upload(deps, "datasets/news.jsonl", jsonl(train))
    assert handle_object(obj, deps) is Outcome.LAUNCH_REQUESTED
    [request] = _launches(deps)
    assert request.overrides == {"train_steps": 400, "evaluation_interval": 10}
    assert request.eval_dataset_uri is not None
    assert request.eval_dataset_uri.endswith("/news.eval.jsonl")
    assert request.eval_dataset_uri.startswith(f"gs://{BUCKET}/validated/")
    record = deps.records.get("datasets", dataset_id(BUCKET, obj.name, obj.generation))
    assert record is not None
    assert [r["kind"] for r in record["reports"]] == ["training", "eval", "config"]


def test_handle_object_invalid_eval_set_blocks_the_launch(deps: Dependencies) -> None:
    train, evaluation = generate(200, 5)
    _upload(deps, "datasets/news.eval.jsonl", jsonl(evaluation))  # fewer than 10 examples
    obj = _upload(deps, "datasets/news.jsonl", jsonl(train))
    assert handle_object(obj, deps) is Outcome.INVALID
    record = deps.records.get("datasets", dataset_id(BUCKET, obj.name, obj.generation))
    assert record is not None
    assert "news.eval.jsonl is invalid" in record["blocking"][0]
    assert _launches(deps) == []


def test_handle_object_eval_overlap_is_a_warning(deps: Dependencies) -> None:
    train, evaluation = generate(200, 20)
    _upload(deps, "datasets/news.eval.jsonl", jsonl(evaluation + train[:3]))
    obj = _upload(deps, "datasets/news.jsonl", jsonl(train))
    assert handle_object(obj, deps) is Outcome.LAUNCH_REQUESTED
    record = deps.records.get("datasets", dataset_id(BUCKET, obj.name, obj.generation))
    assert record is not None
    warnings = {w["rule"]: w for w in record["reports"][0]["warnings"]}
    overlap = [w for rule, w in warnings.items() if "overlap" in rule]
    assert overlap and overlap[0]["count"] == 3


def test_handle_object_eval_and_config_files_are_recorded_only(deps: Dependencies) -> None:
    _, evaluation = generate(10, 30)
    obj = _upload(deps, "datasets/news.eval.jsonl", jsonl(evaluation))
    assert handle_object(obj, deps) is Outcome.RECORDED
    config = _upload(deps, "datasets/news.config.json", b'{"train_steps": "many"}')
    assert handle_object(config, deps) is Outcome.INVALID
    record = deps.records.get("datasets", dataset_id(BUCKET, config.name, config.generation))
    assert record is not None and record["kind"] == "config"
    assert _launches(deps) == []


def test_handle_object_judges_a_config_by_the_deployments_backend(deps: Dependencies) -> None:
    # deps run the pipeline backend, whose CMEK cannot protect a TPU job.
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    sidecar = json.dumps({"encryption_spec_key_name": key, "accelerator_type": "TPU"}).encode()
    config = _upload(deps, "datasets/news.config.json", sidecar)
    assert handle_object(config, deps) is Outcome.INVALID
    record = deps.records.get("datasets", dataset_id(BUCKET, config.name, config.generation))
    assert record is not None
    rules = {rule["rule"] for rule in record["reports"][0]["errors"]}
    assert rules == {"config_cmek_unsupported"}, rules


def test_handle_storage_event_rejects_malformed_events(deps: Dependencies) -> None:
    event = storage_event(BUCKET, "datasets/a.jsonl", 5)
    event.data.pop("name")
    with pytest.raises(InvalidEventError, match="name"):
        handle_storage_event(event, deps)


def test_dataset_id_is_deterministic_and_distinct_per_generation() -> None:
    a = dataset_id("b", "datasets/Team A/news.jsonl", 1)
    assert a == dataset_id("b", "datasets/Team A/news.jsonl", 1)
    assert a != dataset_id("b", "datasets/Team A/news.jsonl", 2)
    assert "/" not in a and a.startswith("datasets-team-a-news-jsonl-1-")
