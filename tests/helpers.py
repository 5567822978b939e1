"""Test helpers shared by unit and integration tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudevents.http import CloudEvent

from distillery.core.errors import ContentionError
from distillery.core.jobs import new_record
from distillery.core.models import JobState, LaunchRequest, StorageObject
from distillery.core.ports import Mutation
from distillery.core.runtime import Dependencies
from distillery.core.settings import Settings
from distillery.fakes import (
    InMemoryBatchPredictions,
    InMemoryModelEndpoints,
    InMemoryObjectStore,
    InMemoryPublisher,
    InMemoryRecordStore,
    InMemoryTuningJobs,
    InMemoryVertexPipelines,
)
from distillery.labeling import (
    DEFAULT_LABEL_TASK_PREFIX,
    DEFAULT_RATIONALE_TASK_PREFIX,
    INSTRUCTION_VERSION,
    LabelingSpec,
    instruction_sha256,
    labeling_paths,
)
from distillery.local.example_data import generate
from distillery.local.judged import EXAMPLES, WRONG, write_eval_set
from distillery.services.datasets import handle_object
from distillery.services.status import apply_tuning_state

EVENTS = Path(__file__).parent / "events"

#: The project and bucket of :func:`fake_dependencies`.
PROJECT = "p"
BUCKET = "bkt-test"


def fake_dependencies(**settings: Any) -> Dependencies:
    """Dependencies on fresh in-memory fakes of every port; ``settings`` change the defaults.

    What the ``deps`` fixture gives; call it for settings of a test's own, or a second world.
    The backend is ``pipeline`` unless ``settings`` name another: most tests written on these
    fakes test that backend (the gemini ones say ``backend="gemini"``).
    """
    endpoints = InMemoryModelEndpoints(PROJECT)
    objects = InMemoryObjectStore()
    return Dependencies(
        settings=Settings(
            **{"project": PROJECT, "bucket": BUCKET, "backend": "pipeline", **settings}
        ),
        objects=objects,
        records=InMemoryRecordStore(),
        publisher=InMemoryPublisher(),
        vertex=InMemoryVertexPipelines(PROJECT),
        endpoints=endpoints,
        # A succeeded tuning job's model and endpoint are ordinary ones, as on Vertex AI.
        tuning=InMemoryTuningJobs(PROJECT, endpoints=endpoints),
        # The teacher's batch jobs read their requests from, and write their output to, objects.
        batch=InMemoryBatchPredictions(objects, PROJECT),
    )


def fake_tuning(deps: Dependencies) -> InMemoryTuningJobs:
    """The in-memory tuning service of ``deps`` (typed for its test-only methods)."""
    assert isinstance(deps.tuning, InMemoryTuningJobs)
    return deps.tuning


def fake_endpoints(deps: Dependencies) -> InMemoryModelEndpoints:
    """The in-memory endpoints of ``deps`` (typed for its test-only methods)."""
    assert isinstance(deps.endpoints, InMemoryModelEndpoints)
    return deps.endpoints


def fake_batch(deps: Dependencies) -> InMemoryBatchPredictions:
    """The in-memory batch prediction service of ``deps`` (typed for its test-only methods)."""
    assert isinstance(deps.batch, InMemoryBatchPredictions)
    return deps.batch


def labeling_spec(
    bucket: str,
    validated_prefix: str,
    job_id: str,
    *,
    source_uri: str,
    source_examples: int,
    mode: str = "labels_and_rationales",
    **changes: Any,
) -> LabelingSpec:
    """The labeling stage the policy freezes for job ``job_id`` on ``source_uri``: its files
    where :func:`~distillery.labeling.labeling_paths` puts them, the instruction of ``mode``,
    the default teacher, prefixes and mixture, no estimates; ``changes`` set any other field."""
    paths = labeling_paths(bucket, validated_prefix, job_id)
    fields: dict[str, Any] = {
        "mode": mode,
        "teacher_model": "gemini-2.5-pro",
        "location": "us-central1",
        "source_uri": source_uri,
        "source_examples": source_examples,
        "input_uri": paths.input_uri,
        "output_prefix": paths.output_prefix,
        "labeled_uri": paths.labeled_uri,
        "lineage_uri": paths.lineage_uri,
        "training_uri": paths.training_uri,
        "instruction_sha256": instruction_sha256(mode),
        "instruction_version": INSTRUCTION_VERSION,
        "min_labeled_fraction": 0.9,
        "rationale_mixture": 1.0,
        "label_task_prefix": DEFAULT_LABEL_TASK_PREFIX,
        "rationale_task_prefix": DEFAULT_RATIONALE_TASK_PREFIX,
        "estimated_input_tokens": 0,
        "estimated_output_tokens": 0,
        "estimated_cost_usd": 0.0,
        "job_label": job_id,
    }
    return LabelingSpec(**(fields | changes))


def succeeded_gemini_job(
    deps: Dependencies,
    job_id: str,
    correct: float,
    *,
    family: str,
    prompt_prefix: str = "",
    labeling: dict[str, Any] | None = None,
) -> str:
    """A gemini job tuned by the fake service and SUCCEEDED through the status service; its
    model's endpoint.

    The model answers the first ``correct`` share of the golden set right when asked in the form
    it was trained on, ``prompt_prefix`` before each prompt, and wrong when asked any other way,
    so a prefix sent wrong shows in a decision. ``labeling`` (given) is the record's and its
    spec's ``labeling``: the job's training set went through the teacher.
    """
    tuning = fake_tuning(deps)
    created = tuning.create(
        "us-central1",
        {
            "baseModel": "gemini-2.5-flash",
            "supervisedTuningSpec": {"trainingDatasetUri": f"gs://{BUCKET}/validated/x/a.jsonl"},
            "tunedModelDisplayName": family,
            "labels": {"distillery-job-id": job_id},
        },
    )
    while (info := tuning.get(created.name)).state != "JOB_STATE_SUCCEEDED":
        pass
    assert info.endpoint is not None
    right = round(correct * len(EXAMPLES))
    tuning.teach(
        info.endpoint,
        {
            prompt_prefix + prompt: (answer if i < right else WRONG)
            for i, (prompt, answer) in enumerate(EXAMPLES)
        },
        WRONG,
    )
    stage = {"labeling": labeling} if labeling is not None else {}
    spec = {
        "tuned_model_display_name": family,
        "backend": "gemini",
        "validation_dataset_uri": write_eval_set(deps, BUCKET),
        **stage,
    }
    record = new_record(
        job_id,
        JobState.RUNNING,
        deps.clock(),
        {
            "backend": "gemini",
            "tuning_job": created.name,
            "location": "us-central1",
            "spec": spec,
            **stage,
            "request": {"dataset_uri": f"gs://{BUCKET}/validated/x/a.jsonl", "overrides": {}},
        },
    )
    record["announced"] = ["RUNNING"]
    deps.records.set("jobs", job_id, record)
    apply_tuning_state(job_id, info, deps)
    stored = deps.records.get("jobs", job_id)
    assert stored is not None and stored["state"] == "SUCCEEDED", stored
    return info.endpoint


class AskedModels:
    """Every call the fake tuned models (``generate``) and the fake ``:predict`` endpoints of
    ``deps`` get from now on: ``(api, endpoint, prompts)``, in order.

    A fake tuned model answers by asking the fake endpoints in turn: that inner call is not one
    of ``:predict`` and is not counted.
    """

    def __init__(self, deps: Dependencies) -> None:
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        tuning, endpoints = fake_tuning(deps), fake_endpoints(deps)
        real_generate, real_predict = tuning.generate, endpoints.predict
        inside = [False]

        def generate(endpoint: str, prompt: str) -> str:
            self.calls.append(("generate", endpoint, (prompt,)))
            inside[0] = True
            try:
                return real_generate(endpoint, prompt)
            finally:
                inside[0] = False

        def predict(endpoint: str, prompts: Any, parameters: Any = None) -> Any:
            if not inside[0]:
                self.calls.append(("predict", endpoint, tuple(prompts)))
            return real_predict(endpoint, prompts, parameters)

        tuning.generate = generate  # type: ignore[method-assign]
        endpoints.predict = predict  # type: ignore[method-assign]

    @property
    def generated(self) -> list[str]:
        """The endpoint of each ``generate`` call."""
        return [endpoint for api, endpoint, _ in self.calls if api == "generate"]

    @property
    def predicted(self) -> list[str]:
        """The endpoint of each ``:predict`` call."""
        return [endpoint for api, endpoint, _ in self.calls if api == "predict"]

    @property
    def by_endpoint(self) -> dict[str, list[str]]:
        """Endpoint → the prompts it was asked, in order, through either API."""
        asked: dict[str, list[str]] = {}
        for _, endpoint, prompts in self.calls:
            asked.setdefault(endpoint, []).extend(prompts)
        return asked


def load_event(file_stem: str, /, **data_changes: Any) -> CloudEvent:
    """A CloudEvent from ``tests/events/<file_stem>.json``, with ``data`` fields replaced."""
    raw = json.loads((EVENTS / f"{file_stem}.json").read_text())
    data = raw.pop("data")
    data.update(data_changes)
    raw.pop("specversion", None)
    return CloudEvent(raw, data)


def storage_event(bucket: str, name: str, generation: int, event_id: str = "evt-1") -> CloudEvent:
    """A storage finalized CloudEvent for ``gs://bucket/name#generation``."""
    event = load_event(
        "storage_finalized",
        bucket=bucket,
        name=name,
        generation=str(generation),
        id=f"{bucket}/{name}/{generation}",
    )
    event["id"] = event_id
    event["source"] = f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    event["subject"] = f"objects/{name}"
    return event


def wait_for(probe: Any, *, timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    """Call ``probe`` until it returns something truthy; that value. Fails after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or probe}")
        time.sleep(interval)


def post_cloudevent(url: str, event: CloudEvent, timeout: float = 120.0) -> int:
    """POST ``event`` to a function in binary content mode, as Eventarc does; the HTTP status."""
    import urllib.error
    import urllib.request

    from cloudevents.conversion import to_binary

    headers, body = to_binary(event)
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def jsonl(examples: list[Any]) -> bytes:
    """Examples (with ``to_json``) as JSON Lines bytes."""
    return "".join(e.to_json() + "\n" for e in examples).encode()


class CrashOnSubmitted(InMemoryRecordStore):
    """Fails the first write that records SUBMITTED: a crash between the backend's create (Vertex
    AI accepted the job) and the job's record of it."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        def guarded(current: dict[str, Any] | None) -> dict[str, Any] | None:
            updated = mutate(current)
            if updated and updated.get("state") == "SUBMITTED" and not self.crashed:
                self.crashed = True
                raise ContentionError("injected crash between the create and the record")
            return updated

        return super().transact(collection, doc_id, guarded)


def validated_request(deps: Dependencies, config: bytes | None = None) -> LaunchRequest:
    """Upload the example task (240 training examples, a 20-example eval set ``generate(240, 20)``
    makes, and ``config`` as its sidecar when given) as ``datasets/news*``, validate it through
    the datasets service, and return the one LaunchRequest it published."""
    train, evaluation = generate(240, 20)
    assert isinstance(deps.objects, InMemoryObjectStore)
    deps.objects.put(BUCKET, "datasets/news.eval.jsonl", jsonl(evaluation))
    if config is not None:
        deps.objects.put(BUCKET, "datasets/news.config.json", config)
    info = deps.objects.put(BUCKET, "datasets/news.jsonl", jsonl(train))
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    assert isinstance(deps.publisher, InMemoryPublisher)
    [message] = deps.publisher.on(deps.settings.launch_topic)
    return LaunchRequest.model_validate_json(message.data)
