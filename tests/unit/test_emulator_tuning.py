"""The emulator's ``tuningJobs`` and ``:generateContent``: validation, states, the tuned model.

Validation is tested on :func:`validate_tuning_job` and over raw HTTP (a client cannot send an
unknown field); the lifecycle through the official GAPIC REST clients against an in-process
emulator that trains with :mod:`tests.unit.test_emulator_fake_trainer` in worker processes.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import (
    Content,
    EndpointServiceClient,
    GenAiTuningServiceClient,
    GenerateContentRequest,
    GenerationConfig,
    ListTuningJobsRequest,
    ModelServiceClient,
    Part,
    PredictionServiceClient,
    TuningJob,
)

from distillery.adapters.tuning import VertexTuningJobsAdapter
from distillery.core.errors import (
    ConfigurationError,
    ObjectNotFoundError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from distillery.core.settings import Settings
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import EmulatorServer, TrainerOptions, create_server
from distillery.local.emulator._contents import (
    ContentError,
    count_tokens,
    cut_tokens,
    parse_tuning_example,
    parse_turns,
    render_prompt,
)
from distillery.local.emulator._status import ApiError
from distillery.local.emulator._tuning import (
    DEFAULT_EPOCHS,
    TUNABLE_MODELS,
    check_labels,
    validate_tuning_job,
)
from distillery.local.emulator._tuning_runner import tuning_steps
from tests.helpers import wait_for
from tests.unit import test_emulator_fake_trainer as fake

PROJECT = "p-1"
BUCKET = "bkt"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
SETTINGS = Settings(project=PROJECT, bucket=BUCKET)
FAKE_MODULE = "tests.unit.test_emulator_fake_trainer"
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
TRAIN = f"gs://{BUCKET}/validated/news/train.jsonl"


def line(prompt: str, answer: str, system: str | None = None) -> dict[str, Any]:
    example: dict[str, Any] = {
        "contents": [
            {"role": "user", "parts": [{"text": prompt}]},
            {"role": "model", "parts": [{"text": answer}]},
        ]
    }
    if system is not None:
        example["systemInstruction"] = {"parts": [{"text": system}]}
    return example


def lines(examples: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in examples).encode()


def body(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": TRAIN,
            "hyperParameters": {"epochCount": "2", "adapterSize": "ADAPTER_SIZE_FOUR"},
        },
        "tunedModelDisplayName": "news-tuned",
        "labels": {"distillery-job-id": "job-1"},
    }
    request.update(changes)
    return request


def refused(location: str, request: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validate_tuning_job(location, request)
    return caught.value


# --- Validation ---------------------------------------------------------------------------


def test_a_valid_body_is_normalised() -> None:
    request = validate_tuning_job(
        REGION,
        body(
            serviceAccount="tuner@p-1.iam.gserviceaccount.com",
            encryptionSpec={"kmsKeyName": f"{PARENT}/keyRings/r/cryptoKeys/k"},
            description="news",
        ),
    )
    assert request.base_model == "gemini-2.5-flash"
    assert request.training_dataset_uri == TRAIN
    assert request.epoch_count == 2
    assert request.learning_rate_multiplier == 1.0
    assert request.adapter_size == "ADAPTER_SIZE_FOUR"
    assert request.labels == {"distillery-job-id": "job-1"}
    assert request.kms_key_name.endswith("/cryptoKeys/k")
    assert request.service_account == "tuner@p-1.iam.gserviceaccount.com"
    echoed = request.echo()
    assert echoed["supervisedTuningSpec"]["hyperParameters"] == {
        "epochCount": "2",
        "learningRateMultiplier": 1.0,
        "adapterSize": "ADAPTER_SIZE_FOUR",
    }


def test_proto_names_enum_numbers_and_output_only_fields_are_accepted() -> None:
    request = validate_tuning_job(
        REGION,
        {
            "base_model": "publishers/google/models/gemini-2.0-flash-001",
            "supervised_tuning_spec": {
                "training_dataset_uri": TRAIN,
                "hyper_parameters": {"epoch_count": 4, "adapter_size": 2},
            },
            "state": "JOB_STATE_SUCCEEDED",
            "name": "projects/x/locations/y/tuningJobs/1",
        },
    )
    assert request.adapter_size == "ADAPTER_SIZE_FOUR"
    assert request.epoch_count == 4
    assert request.tuned_model_display_name == ""
    assert validate_tuning_job(REGION, body(supervisedTuningSpec={"trainingDatasetUri": TRAIN}))


def test_defaults_fill_in_epochs_and_learning_rate() -> None:
    request = validate_tuning_job(REGION, body(supervisedTuningSpec={"trainingDatasetUri": TRAIN}))
    assert request.epoch_count == DEFAULT_EPOCHS
    assert request.learning_rate_multiplier == 1.0
    assert request.adapter_size == ""


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"baseModel": None}, "INVALID_ARGUMENT", "base_model is required"),
        ({"baseModel": "text-bison@002"}, "INVALID_ARGUMENT", "is not supported"),
        ({"supervisedTuningSpec": None}, "INVALID_ARGUMENT", "supervised_tuning_spec"),
        (
            {"supervisedTuningSpec": {"trainingDatasetUri": "data/x.jsonl"}},
            "INVALID_ARGUMENT",
            "gs://BUCKET/OBJECT",
        ),
        ({"supervisedTuningSpec": {}}, "INVALID_ARGUMENT", "trainingDatasetUri is required"),
        ({"bogus": 1}, "INVALID_ARGUMENT", "Unknown name \"bogus\" at 'tuning_job'"),
        (
            {"supervisedTuningSpec": {"trainingDatasetUri": TRAIN, "steps": 3}},
            "INVALID_ARGUMENT",
            "Unknown name \"steps\" at 'tuning_job.supervised_tuning_spec'",
        ),
        (
            {"supervisedTuningSpec": {"trainingDatasetUri": TRAIN, "hyperParameters": {"x": 1}}},
            "INVALID_ARGUMENT",
            "Unknown name \"x\" at 'tuning_job.supervised_tuning_spec.hyper_parameters'",
        ),
        (
            {
                "supervisedTuningSpec": {
                    "trainingDatasetUri": TRAIN,
                    "hyperParameters": {"epochCount": 0},
                }
            },
            "INVALID_ARGUMENT",
            "epoch_count must be between 1 and",
        ),
        (
            {
                "supervisedTuningSpec": {
                    "trainingDatasetUri": TRAIN,
                    "hyperParameters": {"epochCount": "two"},
                }
            },
            "INVALID_ARGUMENT",
            "(TYPE_INT64)",
        ),
        (
            {
                "supervisedTuningSpec": {
                    "trainingDatasetUri": TRAIN,
                    "hyperParameters": {"learningRateMultiplier": 0},
                }
            },
            "INVALID_ARGUMENT",
            "learning_rate_multiplier must be positive",
        ),
        (
            {
                "supervisedTuningSpec": {
                    "trainingDatasetUri": TRAIN,
                    "hyperParameters": {"adapterSize": "ADAPTER_SIZE_THREE"},
                }
            },
            "INVALID_ARGUMENT",
            "AdapterSize",
        ),
        (
            {
                "baseModel": "gemini-2.5-pro",
                "supervisedTuningSpec": {
                    "trainingDatasetUri": TRAIN,
                    "hyperParameters": {"adapterSize": "ADAPTER_SIZE_SIXTEEN"},
                },
            },
            "INVALID_ARGUMENT",
            "not supported for base model gemini-2.5-pro",
        ),
        ({"tunedModelDisplayName": "x" * 129}, "INVALID_ARGUMENT", "up to 128 characters"),
        ({"tunedModelDisplayName": 5}, "INVALID_ARGUMENT", "TYPE_STRING"),
        (
            {"encryptionSpec": {"kmsKeyName": "key"}},
            "INVALID_ARGUMENT",
            "kms_key_name must be",
        ),
        (
            {
                "encryptionSpec": {
                    "kmsKeyName": "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"
                }
            },
            "INVALID_ARGUMENT",
            "needs a key in the same region",
        ),
        ({"serviceAccount": "not an email"}, "INVALID_ARGUMENT", "service account email"),
        ({"preTunedModel": {"tunedModelName": "m"}}, "UNIMPLEMENTED", "continuous tuning"),
        (
            {"supervisedTuningSpec": {"trainingDatasetUri": TRAIN, "evaluationConfig": {"a": 1}}},
            "UNIMPLEMENTED",
            "evaluationConfig",
        ),
    ],
)
def test_invalid_bodies_are_refused_as_the_service_refuses_them(
    changes: dict[str, Any], status: str, words: str
) -> None:
    request = body(**changes)
    for key, value in changes.items():
        if value is None:
            del request[key]
    error = refused(REGION, request)
    assert error.status == status
    assert words in error.message, error.message


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ({"Upper": "x"}, "Label key 'Upper'"),
        ({"1st": "x"}, "Label key '1st'"),
        ({"": "x"}, "Label key ''"),
        ({"k" * 64: "x"}, "1-63 characters"),
        ({"k": "Value"}, "Label value 'Value'"),
        ({"k": "v" * 64}, "at most 63"),
        ({"k": 3}, "must be a string"),
        ({f"k{i}": "v" for i in range(65)}, "At most 64 labels"),
        (["k"], "map of strings"),
    ],
)
def test_labels_follow_googles_rules(labels: Any, words: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_labels(labels)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert words in caught.value.message


def test_international_lowercase_labels_are_allowed() -> None:
    assert check_labels({"é-clé_1": "données-ü", "k": ""}) == {"é-clé_1": "données-ü", "k": ""}


def test_the_tunable_models_are_one_list_with_adapter_sizes() -> None:
    assert "gemini-2.5-flash" in TUNABLE_MODELS
    assert all(model.adapter_sizes for model in TUNABLE_MODELS.values())


# --- Contents -------------------------------------------------------------------------------


def test_a_single_turn_prompt_is_its_text_and_a_conversation_is_rendered() -> None:
    example = parse_tuning_example(line("Classify: 5 stocks to buy", "business"))
    assert (example.prompt, example.target) == ("Classify: 5 stocks to buy", "business")
    assert example.input_tokens == 6 and example.output_tokens == 1
    chat = parse_tuning_example(
        {
            "systemInstruction": {"role": "system", "parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
                {"role": "user", "parts": [{"text": "Label: "}, {"text": "x"}]},
                {"role": "model", "parts": [{"text": "y"}]},
            ],
        }
    )
    assert chat.prompt == "Be brief.\nuser: Hi\nmodel: Hello\nuser: Label: x"
    assert chat.target == "y" and chat.turns == 4
    assert render_prompt(None, parse_turns([{"role": "user", "parts": [{"text": "a"}]}])) == "a"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "must be a JSON object"),
        ({"contents": []}, "non-empty list"),
        ({"contents": [{"role": "user", "parts": [{"text": "q"}]}]}, "last turn must be"),
        ({"contents": [{"role": "model", "parts": [{"text": "a"}]}]}, 'needs a "user" turn'),
        ({"contents": [{"role": "system", "parts": [{"text": "q"}]}]}, "contents[0].role"),
        ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {}}]}]},
            "serves text only; it has inlineData",
        ),
        ({**line("q", "a"), "systemInstruction": "be nice"}, "systemInstruction"),
    ],
)
def test_malformed_examples_name_the_field(data: Any, words: str) -> None:
    with pytest.raises(ContentError) as caught:
        parse_tuning_example(data)
    assert words in str(caught.value)


def test_tokens_are_counted_and_cut_as_written() -> None:
    assert count_tokens("Hello, world!") == 4
    assert cut_tokens("one two, three", 2) == "one two"
    assert cut_tokens("one two", 5) == "one two"


# --- The service through the official client ------------------------------------------------


@pytest.fixture
def store() -> InMemoryObjectStore:
    objects = InMemoryObjectStore()
    train = [line(f"Classify: news {i}", "business" if i % 3 else "sports") for i in range(12)]
    objects.put(BUCKET, "validated/news/train.jsonl", lines(train))
    objects.put(
        BUCKET, "validated/news/val.jsonl", lines([line("Classify: val 1", "business")] * 3)
    )
    objects.put(
        BUCKET, "validated/long/train.jsonl", lines([line("Summarise: a", "one two three four")])
    )
    objects.put(BUCKET, "validated/bad/train.jsonl", lines(train[:2]) + b'{"input_text": "x"}\n')
    return objects


@pytest.fixture
def start(store: InMemoryObjectStore, tmp_path: Path) -> Iterator[Callable[..., EmulatorServer]]:
    servers: list[EmulatorServer] = []

    def start_server(*, trained: bool = True, delay: float = 0.3) -> EmulatorServer:
        trainer = (
            TrainerOptions(trainer_module=FAKE_MODULE, data_dir=tmp_path / "data")
            if trained
            else None
        )
        server = create_server(
            SETTINGS,
            object_store=store,
            publisher=InMemoryPublisher(),
            trainer=trainer,
            tuning_start_delay_seconds=delay,
        )
        servers.append(server.start())
        return server

    yield start_server
    for server in servers:
        server.stop(timeout=10)


class Clients:
    def __init__(self, server: EmulatorServer) -> None:
        kwargs: dict[str, Any] = {
            "transport": "rest",
            "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
            "client_options": {"api_endpoint": server.url},
        }
        self.url = server.url
        self.tuning = GenAiTuningServiceClient(**kwargs)
        self.models = ModelServiceClient(**kwargs)
        self.endpoints = EndpointServiceClient(**kwargs)
        self.prediction = PredictionServiceClient(**kwargs)

    def create(self, **changes: Any) -> TuningJob:
        job = TuningJob.from_json(json.dumps(body(**changes)))
        return self.tuning.create_tuning_job(parent=PARENT, tuning_job=job)

    def wait(
        self, name: str, until: Callable[[TuningJob], bool] | None = None, timeout: float = 30
    ) -> TuningJob:
        def probe() -> TuningJob | None:
            job = self.tuning.get_tuning_job(name=name)
            return job if (until(job) if until else job.state.name in TERMINAL) else None

        job: TuningJob = wait_for(probe, timeout=timeout, interval=0.05, what=name)
        return job

    def generate(self, endpoint: str, prompt: str, **config: Any) -> Any:
        return self.prediction.generate_content(
            request=GenerateContentRequest(
                model=endpoint,
                contents=[Content(role="user", parts=[Part(text=prompt)])],
                generation_config=GenerationConfig(**config) if config else None,
            )
        )

    def list(self, filter_text: str = "", page_size: int = 0) -> list[TuningJob]:
        request = ListTuningJobsRequest(parent=PARENT, filter=filter_text, page_size=page_size)
        return list(self.tuning.list_tuning_jobs(request=request))

    def raw(self, method: str, path: str, data: Any = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url + path,
            data=None if data is None else json.dumps(data).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def clients(start: Callable[..., EmulatorServer]) -> Clients:
    return Clients(start())


def test_create_answers_the_job_with_an_id_the_service_made(clients: Clients) -> None:
    created = clients.create()
    assert created.name.startswith(f"{PARENT}/tuningJobs/")
    assert created.name.rsplit("/", 1)[-1].isdigit()
    assert created.state.name == "JOB_STATE_PENDING"
    assert created.base_model == "gemini-2.5-flash"
    assert created.tuned_model_display_name == "news-tuned"
    assert created.labels == {"distillery-job-id": "job-1"}
    assert created.create_time and created.update_time
    assert not created.tuned_model.model
    second = clients.create()
    assert second.name != created.name  # no client-chosen id: a second create is a second job


def test_a_job_runs_to_a_deployed_tuned_model_that_answers_generate_content(
    clients: Clients,
) -> None:
    created = clients.create(
        supervisedTuningSpec={
            "trainingDatasetUri": TRAIN,
            "validationDatasetUri": f"gs://{BUCKET}/validated/news/val.jsonl",
            "hyperParameters": {"epochCount": 2, "learningRateMultiplier": 0.5},
        }
    )
    running = clients.wait(created.name, lambda j: j.state.name != "JOB_STATE_PENDING")
    assert running.state.name in ("JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
    job = clients.wait(created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    assert job.start_time and job.end_time and job.end_time >= job.start_time
    assert not job.error.message
    model, endpoint = job.tuned_model.model, job.tuned_model.endpoint
    assert model.startswith(f"{PARENT}/models/") and model.endswith("@1")
    assert endpoint.startswith(f"{PARENT}/endpoints/")
    [checkpoint] = job.tuned_model.checkpoints
    assert (checkpoint.checkpoint_id, checkpoint.epoch) == ("1", 2)
    assert checkpoint.step == tuning_steps(12, 2)
    stats = job.tuning_data_stats.supervised_tuning_data_stats
    assert stats.tuning_dataset_example_count == 12
    assert stats.tuning_step_count == tuning_steps(12, 2)
    assert stats.user_output_token_distribution.sum == 12
    assert stats.user_input_token_distribution.sum == 12 * 4
    assert stats.total_billable_token_count == (12 * 4 + 12) * 2
    assert stats.user_message_per_example_distribution.max_ == 2
    assert len(stats.user_dataset_examples) == 3

    registered = clients.models.get_model(name=model)
    assert registered.display_name == "news-tuned"
    assert registered.version_id == "1"
    assert registered.labels["distillery-job-id"] == "job-1"
    served = clients.endpoints.get_endpoint(name=endpoint)
    assert served.display_name == "news-tuned"
    [deployed] = served.deployed_models
    assert deployed.model == model.split("@")[0]
    assert served.traffic_split == {deployed.id: 100}

    answer = clients.generate(endpoint, "Classify: news 3")
    [candidate] = answer.candidates
    assert candidate.content.role == "model"
    assert candidate.content.parts[0].text == "sports"
    assert candidate.finish_reason.name == "STOP"
    assert answer.usage_metadata.prompt_token_count == 4
    assert answer.usage_metadata.candidates_token_count == 1
    assert answer.usage_metadata.total_token_count == 5
    assert answer.model_version == f"{model.split('@')[0]}@1"
    assert clients.generate(endpoint, "Classify: news 4").candidates[0].content.parts[0].text == (
        "business"
    )


def test_list_filters_on_labels_and_pages(clients: Clients) -> None:
    first = clients.create(labels={"distillery-job-id": "a"})
    second = clients.create(labels={"distillery-job-id": "b"})
    third = clients.create(labels={"distillery-job-id": "b", "team": "x"})
    found = list(clients.list('labels.distillery-job-id="b"'))
    assert [j.name for j in found] == [third.name, second.name]
    assert [j.name for j in clients.list('labels.distillery-job-id="b" AND labels.team=x')] == [
        third.name
    ]
    assert not list(clients.list("labels.nope=1"))
    status, page = clients.raw("GET", f"/v1/{PARENT}/tuningJobs?pageSize=2")
    assert status == 200 and len(page["tuningJobs"]) == 2 and page["nextPageToken"]
    status, rest = clients.raw(
        "GET", f"/v1/{PARENT}/tuningJobs?pageSize=2&pageToken={page['nextPageToken']}"
    )
    assert [j["name"] for j in rest["tuningJobs"]] == [first.name]
    assert "nextPageToken" not in rest
    every = [j.name for j in clients.list(page_size=1)]
    assert every == [third.name, second.name, first.name]
    with pytest.raises(gexc.BadRequest):
        list(clients.list('state="DONE"'))
    with pytest.raises(gexc.BadRequest):
        list(clients.list("create_time>1"))


def test_cancel_of_a_job_that_has_not_started_is_immediate(
    start: Callable[..., EmulatorServer],
) -> None:
    clients = Clients(start(delay=30))
    created = clients.create()
    clients.tuning.cancel_tuning_job(name=created.name)
    job = clients.tuning.get_tuning_job(name=created.name)
    assert job.state.name == "JOB_STATE_CANCELLED"
    assert job.error.code == 1 and "cancelled" in job.error.message
    assert job.end_time
    with pytest.raises(gexc.BadRequest) as caught:
        clients.tuning.cancel_tuning_job(name=created.name)
    assert "already in state JOB_STATE_CANCELLED" in caught.value.message
    listed = clients.list("state=JOB_STATE_CANCELLED")
    assert [j.name for j in listed] == [created.name]


def test_cancel_of_a_running_job_stops_its_worker(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fake.MODE_VARIABLE, "hang")
    created = clients.create()
    clients.wait(created.name, lambda j: j.state.name == "JOB_STATE_RUNNING")
    clients.tuning.cancel_tuning_job(name=created.name)
    cancelling = clients.tuning.get_tuning_job(name=created.name)
    assert cancelling.state.name in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    job = clients.wait(created.name)
    assert job.state.name == "JOB_STATE_CANCELLED"
    assert job.error.code == 1
    assert not job.tuned_model.model
    with pytest.raises(gexc.BadRequest):
        clients.tuning.cancel_tuning_job(name=created.name)


def test_a_bad_dataset_line_fails_the_job_with_the_line(clients: Clients) -> None:
    bad = f"gs://{BUCKET}/validated/bad/train.jsonl"
    job = clients.wait(clients.create(supervisedTuningSpec={"trainingDatasetUri": bad}).name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert job.error.code == 3  # INVALID_ARGUMENT
    assert "line 3 is not a supervised tuning example" in job.error.message
    missing = f"gs://{BUCKET}/validated/none.jsonl"
    job = clients.wait(clients.create(supervisedTuningSpec={"trainingDatasetUri": missing}).name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert job.error.code == 5 and "does not exist" in job.error.message


def test_a_training_error_fails_the_job(clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fake.MODE_VARIABLE, "error")
    job = clients.wait(clients.create().name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert "the fake trainer refuses this dataset" in job.error.message
    assert job.tuning_data_stats.supervised_tuning_data_stats.tuning_dataset_example_count == 12


def test_without_a_trainer_the_job_reads_its_data_and_fails(
    start: Callable[..., EmulatorServer],
) -> None:
    clients = Clients(start(trained=False, delay=0))
    job = clients.wait(clients.create().name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert job.error.code == 9 and "no trainer is installed" in job.error.message
    assert "12 examples" in job.error.message


def test_http_errors_are_googles(clients: Clients) -> None:
    status, answer = clients.raw("POST", f"/v1/{PARENT}/tuningJobs", body(extra=True))
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "extra"' in answer["error"]["message"]
    assert answer["error"]["details"][0]["fieldViolations"][0]["field"] == "tuning_job"
    with pytest.raises(gexc.BadRequest) as caught:
        clients.create(baseModel="gemini-0-nano")
    assert "Supported base models" in caught.value.message
    with pytest.raises(gexc.NotFound):
        clients.tuning.get_tuning_job(name=f"{PARENT}/tuningJobs/42")
    with pytest.raises(gexc.NotFound):
        clients.tuning.cancel_tuning_job(name=f"{PARENT}/tuningJobs/42")


# --- generateContent ------------------------------------------------------------------------


@pytest.fixture
def tuned(clients: Clients) -> str:
    job = clients.wait(clients.create().name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    return str(job.tuned_model.endpoint)


def test_generation_config_cuts_and_stops_the_answer(clients: Clients, tuned: str) -> None:
    store_answer = clients.generate(tuned, "Classify: news 1").candidates[0]
    assert store_answer.content.parts[0].text == "business"
    stopped = clients.generate(tuned, "Classify: news 1", stop_sequences=["ness"])
    assert stopped.candidates[0].content.parts[0].text == "busi"
    assert stopped.candidates[0].finish_reason.name == "STOP"


def test_max_output_tokens_cuts_the_answer(clients: Clients) -> None:
    long = f"gs://{BUCKET}/validated/long/train.jsonl"
    job = clients.wait(clients.create(supervisedTuningSpec={"trainingDatasetUri": long}).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    full = clients.generate(job.tuned_model.endpoint, "Summarise: a")
    assert full.candidates[0].content.parts[0].text == "one two three four"
    cut = clients.generate(job.tuned_model.endpoint, "Summarise: a", max_output_tokens=2)
    assert cut.candidates[0].content.parts[0].text == "one two"
    assert cut.candidates[0].finish_reason.name == "MAX_TOKENS"
    assert cut.usage_metadata.candidates_token_count == 2


def test_generate_content_refuses_what_the_api_refuses(clients: Clients, tuned: str) -> None:
    path = f"/v1/{tuned}:generateContent"
    user = {"role": "user", "parts": [{"text": "Classify: news 1"}]}
    model = {"role": "model", "parts": [{"text": "business"}]}
    status, answer = clients.raw("POST", path, {"contents": [user], "temperature": 1})
    assert status == 400 and 'Unknown name "temperature"' in answer["error"]["message"]
    status, answer = clients.raw("POST", path, {"contents": [user, model]})
    assert status == 400 and 'from the "user" role' in answer["error"]["message"]
    status, answer = clients.raw("POST", path, {"contents": []})
    assert status == 400 and "contents" in answer["error"]["message"]
    status, answer = clients.raw(
        "POST", path, {"contents": [user], "generationConfig": {"candidateCount": 2}}
    )
    assert status == 501 and answer["error"]["status"] == "UNIMPLEMENTED"
    status, answer = clients.raw(
        "POST", path, {"contents": [user], "generationConfig": {"maxOutputTokens": 0}}
    )
    assert status == 400
    status, answer = clients.raw(
        "POST", path, {"contents": [user], "generationConfig": {"temperature": 0.2, "seed": 3}}
    )
    assert status == 200
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == "business"
    status, answer = clients.raw(
        "POST", f"/v1/{PARENT}/endpoints/999:generateContent", {"contents": [user]}
    )
    assert status == 404


# --- The adapter over the official client ---------------------------------------------------


@pytest.fixture
def adapter(start: Callable[..., EmulatorServer]) -> VertexTuningJobsAdapter:
    return VertexTuningJobsAdapter(PROJECT, api_endpoint=start().url)


def test_the_adapter_creates_finds_by_label_polls_and_generates(
    adapter: VertexTuningJobsAdapter,
) -> None:
    created = adapter.create(REGION, body(labels={"distillery-job-id": "job-7"}))
    assert created.state == "JOB_STATE_PENDING"
    assert created.labels == {"distillery-job-id": "job-7"}
    assert created.job_id.isdigit()
    assert adapter.find_by_label(REGION, "distillery-job-id", "job-8") is None
    found = adapter.find_by_label(REGION, "distillery-job-id", "job-7")
    assert found is not None and found.name == created.name
    newer = adapter.create(REGION, body(labels={"distillery-job-id": "job-7"}))
    again = adapter.find_by_label(REGION, "distillery-job-id", "job-7")
    assert again is not None and again.name == newer.name  # the newest of the two
    job = wait_for(
        lambda: (info := adapter.get(created.name)).state in TERMINAL and info,
        timeout=30,
        interval=0.05,
    )
    assert job.state == "JOB_STATE_SUCCEEDED", job.error
    assert job.error is None
    assert job.tuned_model is not None and job.tuned_model.endswith("@1")
    assert job.endpoint is not None
    assert job.resource is not None and job.resource["state"] == "JOB_STATE_SUCCEEDED"
    assert adapter.generate(job.endpoint, "Classify: news 3") == "sports"
    adapter.cancel(newer.name)
    cancelled = wait_for(
        lambda: (info := adapter.get(newer.name)).state in TERMINAL and info, timeout=30
    )
    assert cancelled.state == "JOB_STATE_CANCELLED"
    assert cancelled.error is not None and "cancelled" in cancelled.error


def test_the_adapter_maps_errors_through_the_one_table(
    adapter: VertexTuningJobsAdapter,
) -> None:
    with pytest.raises(RequestRejectedError, match="not supported"):
        adapter.create(REGION, body(baseModel="text-bison@002"))
    with pytest.raises(RequestRejectedError, match="does not parse"):
        adapter.create(REGION, body(notAField=1))
    with pytest.raises(ObjectNotFoundError):
        adapter.get(f"{PARENT}/tuningJobs/1")
    with pytest.raises(ObjectNotFoundError):
        adapter.cancel(f"{PARENT}/tuningJobs/1")
    with pytest.raises(ObjectNotFoundError):
        adapter.generate(f"{PARENT}/endpoints/1", "hello")
    with pytest.raises(RequestRejectedError):
        adapter.find_by_label(REGION, "bad key", "x")
    created = adapter.create(REGION, body())
    adapter.cancel(created.name)
    wait_for(lambda: adapter.get(created.name).state in TERMINAL, timeout=30)
    with pytest.raises(RequestRejectedError, match="already in state"):
        adapter.cancel(created.name)


def test_the_adapter_reports_an_unreachable_service_as_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = VertexTuningJobsAdapter(PROJECT, api_endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(ServiceUnavailableError):
        adapter.get(f"{PARENT}/tuningJobs/1")
    with pytest.raises(ConfigurationError):
        VertexTuningJobsAdapter("")


def test_google_genai_tunes_and_generates_against_the_emulator(
    start: Callable[..., EmulatorServer],
) -> None:
    """The other official client of tuning jobs reads the same shapes (a static token stands in
    for credentials: google-genai refreshes anonymous ones, which cannot be refreshed)."""
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    server = start()
    client = genai.Client(
        vertexai=True,
        project=PROJECT,
        location=REGION,
        credentials=Credentials(token="local"),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(base_url=server.url, api_version="v1"),
    )
    # google-genai 2.34.0 calls its tuning module experimental, and says so.
    with pytest.warns(Warning, match="tuning implementation is experimental"):
        created = client.tunings.tune(
            base_model="gemini-2.5-flash",
            training_dataset=types.TuningDataset(gcs_uri=TRAIN),
            config=types.CreateTuningJobConfig(
                epoch_count=1,
                tuned_model_display_name="genai-tuned",
                labels={"distillery-job-id": "g"},
            ),
        )
    assert created.name and created.state == types.JobState.JOB_STATE_PENDING
    listed = client.tunings.list(
        config=types.ListTuningJobsConfig(filter='labels.distillery-job-id="g"')
    )
    assert [j.name for j in listed] == [created.name]
    job = wait_for(
        lambda: (found := client.tunings.get(name=str(created.name))).has_ended and found,
        timeout=30,
        interval=0.05,
    )
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED, job.error
    assert job.tuned_model.model.endswith("@1")
    assert job.tuning_data_stats.supervised_tuning_data_stats.tuning_dataset_example_count == 12
    answer = client.models.generate_content(
        model=job.tuned_model.endpoint, contents="Classify: news 3"
    )
    assert answer.text == "sports"
