"""The dataset service for the ``gemini`` backend: the converted copy a tuning job trains on."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from distillery.core.models import LaunchRequest, StorageObject
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.example_data import generate
from distillery.services.datasets import Outcome, _backend_of, dataset_id, handle_object
from distillery.validation import DatasetKind, to_contents, validated_copy
from distillery.validation._convert import dump_line
from tests.helpers import BUCKET, fake_dependencies, jsonl


def _gemini_deps() -> Dependencies:
    """Fakes whose ``DISTILLERY_BACKEND`` is ``gemini``."""
    return fake_dependencies(backend="gemini")


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


def _record(deps: Dependencies, obj: StorageObject) -> dict[str, Any]:
    record = deps.records.get("datasets", dataset_id(BUCKET, obj.name, obj.generation))
    assert record is not None
    return record


def _examples(train: int, evaluation: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Generated training and eval examples, as the dictionaries their lines hold."""
    a, b = generate(train, evaluation)
    return (
        [json.loads(line) for line in jsonl(a).splitlines()],
        [json.loads(line) for line in jsonl(b).splitlines()],
    )


def _lines(examples: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(example).encode() + b"\n" for example in examples)


def _converted(examples: list[dict[str, Any]]) -> bytes:
    return b"".join(dump_line(to_contents(example)) for example in examples)


def _contents_line(prompt: str, answer: str, *, role: str = "model") -> dict[str, Any]:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": prompt}]},
            {"role": role, "parts": [{"text": answer}]},
        ]
    }


def test_gemini_training_set_trains_on_the_converted_copy() -> None:
    deps = _gemini_deps()
    train, _ = _examples(150, 20)
    obj = _upload(deps, "datasets/news.jsonl", _lines(train))
    assert handle_object(obj, deps, event_id="e1") is Outcome.LAUNCH_REQUESTED

    record = _record(deps, obj)
    expected = _converted(train)
    sha = hashlib.sha256(expected).hexdigest()
    assert record["status"] == "valid"
    assert record["backend"] == "gemini"
    assert record["validated_uri"] == f"gs://{BUCKET}/validated/{sha}/news.jsonl"
    assert deps.objects.read_bytes(BUCKET, f"validated/{sha}/news.jsonl") == expected
    # The report still describes the upload itself; the copy is addressed by its own digest.
    assert record["reports"][0]["sha256"] == hashlib.sha256(_lines(train)).hexdigest() != sha
    reference = validated_copy(
        io.BytesIO(_lines(train)), backend="gemini", kind=DatasetKind.TRAINING, source="x"
    )
    reference.drain()
    assert record["dataset_tokens"] == reference.dataset_tokens > 0
    [request] = _launches(deps)
    assert request.dataset_uri == record["validated_uri"]
    assert request.request_id == record["id"]
    assert request.eval_dataset_uri is None


def test_gemini_eval_set_is_converted_likewise() -> None:
    deps = _gemini_deps()
    train, evaluation = _examples(150, 20)
    _upload(deps, "datasets/news.eval.jsonl", _lines(evaluation))
    obj = _upload(deps, "datasets/news.jsonl", _lines(train))
    assert handle_object(obj, deps) is Outcome.LAUNCH_REQUESTED

    record = _record(deps, obj)
    expected = _converted(evaluation)
    sha = hashlib.sha256(expected).hexdigest()
    assert record["validated_eval_uri"] == f"gs://{BUCKET}/validated/{sha}/news.eval.jsonl"
    assert deps.objects.read_bytes(BUCKET, f"validated/{sha}/news.eval.jsonl") == expected
    assert record["eval_uri"] == f"gs://{BUCKET}/datasets/news.eval.jsonl"
    [request] = _launches(deps)
    assert request.eval_dataset_uri == record["validated_eval_uri"]


def test_gemini_native_contents_lines_are_copied_normalized() -> None:
    deps = _gemini_deps()
    lines = [_contents_line(f"Classify: headline {i}", "business") for i in range(120)]
    # Spacing and key order of the upload are not the copy's: it is one compact object a line.
    upload = b"".join(json.dumps(line, indent=None).encode() + b"\n" for line in lines)
    obj = _upload(deps, "datasets/native.jsonl", upload)
    assert handle_object(obj, deps) is Outcome.LAUNCH_REQUESTED

    record = _record(deps, obj)
    name = record["validated_uri"].removeprefix(f"gs://{BUCKET}/")
    copy = deps.objects.read_bytes(BUCKET, name, limit=1 << 24)
    assert [json.loads(line) for line in copy.splitlines()] == lines
    assert copy == b"".join(dump_line(line) for line in lines)
    assert name == f"validated/{hashlib.sha256(copy).hexdigest()}/native.jsonl"


def test_gemini_invalid_contents_line_has_line_findings_and_no_launch() -> None:
    deps = _gemini_deps()
    lines = [_contents_line(f"Classify: headline {i}", "business") for i in range(120)]
    lines[6] = _contents_line("Classify: headline 6", "business", role="assistant")
    obj = _upload(deps, "datasets/bad.jsonl", b"".join(dump_line(line) for line in lines))
    assert handle_object(obj, deps) is Outcome.INVALID

    record = _record(deps, obj)
    assert record["status"] == "invalid"
    assert record["backend"] == "gemini"
    errors = record["reports"][0]["errors"]
    assert errors, record["reports"][0]
    assert any(finding.get("line") == 7 for error in errors for finding in error["findings"])
    assert _launches(deps) == []
    assert isinstance(deps.objects, InMemoryObjectStore)
    assert deps.objects.names(BUCKET, "validated/") == []
    assert "validated_uri" not in record


def test_gemini_prompt_only_line_cannot_be_trained_on() -> None:
    deps = _gemini_deps()
    train, _ = _examples(150, 20)
    train[3] = {"input_text": train[3]["input_text"]}
    obj = _upload(deps, "datasets/unlabeled.jsonl", _lines(train))
    assert handle_object(obj, deps) is Outcome.INVALID
    errors = _record(deps, obj)["reports"][0]["errors"]
    assert any(finding.get("line") == 4 for error in errors for finding in error["findings"])
    assert _launches(deps) == []


def test_gemini_copy_is_written_only_when_absent() -> None:
    deps = _gemini_deps()
    assert isinstance(deps.objects, InMemoryObjectStore)
    train, _ = _examples(150, 20)
    first = _upload(deps, "datasets/news.jsonl", _lines(train))
    assert handle_object(first, deps) is Outcome.LAUNCH_REQUESTED
    name = _record(deps, first)["validated_uri"].removeprefix(f"gs://{BUCKET}/")
    written = deps.objects.stat(BUCKET, name).generation

    # The same bytes uploaded again (a new generation) train on the very same copy.
    again = _upload(deps, "datasets/news.jsonl", _lines(train))
    assert handle_object(again, deps) is Outcome.LAUNCH_REQUESTED
    assert _record(deps, again)["validated_uri"] == f"gs://{BUCKET}/{name}"
    assert deps.objects.stat(BUCKET, name).generation == written


def test_pipeline_backend_records_its_backend_and_copies_the_upload(deps: Dependencies) -> None:
    train, _ = _examples(150, 20)
    obj = _upload(deps, "datasets/news.jsonl", _lines(train))
    assert handle_object(obj, deps) is Outcome.LAUNCH_REQUESTED
    record = _record(deps, obj)
    assert record["backend"] == "pipeline"
    assert "dataset_tokens" not in record
    sha = hashlib.sha256(_lines(train)).hexdigest()
    assert deps.objects.read_bytes(BUCKET, f"validated/{sha}/news.jsonl") == _lines(train)


def test_the_sidecar_backend_wins_over_the_setting(deps: Dependencies) -> None:
    blocking: list[str] = []
    assert _backend_of({"backend": "gemini"}, deps, blocking) == ("gemini", None)
    gemini = _gemini_deps()
    assert _backend_of({"backend": "pipeline"}, gemini, blocking) == ("pipeline", None)
    assert _backend_of({}, gemini, blocking) == ("gemini", None)
    assert _backend_of({}, deps, blocking) == ("pipeline", None)
    assert _backend_of({"base_model": "gemini-2.5-pro"}, gemini, blocking) == (
        "gemini",
        "gemini-2.5-pro",
    )
    assert blocking == []


def test_an_unknown_backend_blocks_the_launch(deps: Dependencies) -> None:
    blocking: list[str] = []
    assert _backend_of({"backend": "palm"}, deps, blocking) == ("pipeline", None)
    assert blocking == ["backend 'palm' is unknown: expected one of gemini, pipeline"]
