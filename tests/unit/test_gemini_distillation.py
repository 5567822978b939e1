"""The gemini backend's distillation mode: the override schema, the settings, the plan and its
v1beta1 ``distillationSpec`` body, and the config sidecar judged for the job's backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distillery import facts, policy
from distillery.core.errors import ConfigurationError
from distillery.core.models import LaunchRequest
from distillery.core.runtime import Dependencies
from distillery.core.settings import Settings
from distillery.overrides import GEMINI_ONLY_KEYS, PIPELINE_ONLY_KEYS, ProblemKind, check_overrides
from distillery.validation import validate_config

JOB_ID = "news-distilled-0123456789abcdef01234567"


def _settings(**values: Any) -> Settings:
    return Settings(project="p", bucket="b", **{"backend": "gemini", **values})


def _plan(settings: Settings | None = None, **overrides: Any) -> policy.Plan:
    request = LaunchRequest(
        dataset_uri="gs://bkt/validated/abc/news.jsonl",
        eval_dataset_uri="gs://bkt/validated/def/news.eval.jsonl",
        overrides=overrides,
        request_id="r-1",
    )
    return policy.resolve(
        request,
        settings or _settings(),
        dataset_examples=240,
        eval_examples=20,
        job_id=JOB_ID,
        dataset_tokens=120_000,
    )


# --- The override schema and the settings -------------------------------------------------------


def test_schema_reads_tuning_mode_and_teacher_model() -> None:
    checked = check_overrides(
        {
            "tuning_mode": " Distillation ",
            "teacher_model": "publishers/google/models/gemini-3.1-pro",
        },
        has_eval=False,
        backend="gemini",
    )
    assert checked.valid, checked.problems
    assert checked.values == {"tuning_mode": "distillation", "teacher_model": "gemini-3.1-pro"}
    bad = check_overrides(
        {"tuning_mode": "rlhf", "teacher_model": "gemini-1.0-pro"}, has_eval=False
    )
    assert {p.field for p in bad.errors} == {"tuning_mode", "teacher_model"}
    assert any("supervised, distillation" in p.message for p in bad.errors)
    assert any("gemini-3.1-pro" in p.message for p in bad.errors)


def test_both_new_keys_are_gemini_only() -> None:
    assert {"tuning_mode", "teacher_model"} <= set(GEMINI_ONLY_KEYS)
    assert {"base_model", "epoch_count", "adapter_size"} <= set(GEMINI_ONLY_KEYS)
    assert "train_steps" in PIPELINE_ONLY_KEYS and "tensorboard_resource_id" in PIPELINE_ONLY_KEYS
    assert not set(GEMINI_ONLY_KEYS) & set(PIPELINE_ONLY_KEYS)


def test_schema_refuses_the_other_backends_keys_once_the_backend_is_known() -> None:
    under_pipeline = check_overrides(
        {"tuning_mode": "distillation"}, has_eval=False, backend="pipeline"
    )
    [problem] = under_pipeline.errors
    assert problem.kind is ProblemKind.NOT_FOR_BACKEND and problem.field == "tuning_mode"
    assert "applies to the gemini backend only" in problem.message
    under_gemini = check_overrides({"train_steps": 100}, has_eval=False, backend="gemini")
    assert [p.kind for p in under_gemini.errors] == [ProblemKind.NOT_FOR_BACKEND]
    # The override's own backend wins over the deployment's.
    assert check_overrides(
        {"backend": "gemini", "epoch_count": 2}, has_eval=False, backend="pipeline"
    ).valid
    # No backend known (no setting, no override): the keys are judged on their own.
    assert check_overrides({"epoch_count": 2, "train_steps": 100}, has_eval=False).valid


def test_settings_of_the_mode_and_the_teacher() -> None:
    assert Settings().tuning_mode == "supervised"
    assert Settings().gemini_teacher_model == facts.DEFAULT_GEMINI_DISTILLATION_TEACHER
    env = {"DISTILLERY_TUNING_MODE": "distillation", "DISTILLERY_BACKEND": "gemini"}
    assert Settings.from_env(env).tuning_mode == "distillation"
    with pytest.raises(ConfigurationError, match="DISTILLERY_TUNING_MODE"):
        Settings.from_env({"DISTILLERY_TUNING_MODE": "rlhf"})
    with pytest.raises(ConfigurationError, match="DISTILLERY_GEMINI_TEACHER_MODEL"):
        Settings.from_env({"DISTILLERY_GEMINI_TEACHER_MODEL": "gemini-2.5-flash"})


def test_facts_of_the_distillation_mode() -> None:
    assert facts.GEMINI_DISTILLATION_REGION in facts.GEMINI_TUNING_REGIONS
    assert set(facts.GEMINI_DISTILLATION_STUDENTS) <= set(facts.GEMINI_TUNING_MODELS)
    assert facts.DEFAULT_GEMINI_DISTILLATION_TEACHER in facts.GEMINI_DISTILLATION_TEACHERS
    assert set(facts.GEMINI_TUNING_API_VERSIONS) == set(facts.GEMINI_TUNING_MODES)


def test_installed_v1beta1_distillation_spec_has_the_fields_the_body_uses() -> None:
    from google.cloud.aiplatform_v1beta1.types import tuning_job

    spec_fields = set(tuning_job.DistillationSpec.meta.fields)
    assert {"base_teacher_model", "training_dataset_uri", "validation_dataset_uri"} <= spec_fields
    # Why the body sends trainingDatasetUri: the installed message has no prompt_dataset_uri.
    assert "prompt_dataset_uri" not in spec_fields
    hyper = set(tuning_job.DistillationHyperParameters.meta.fields)
    assert hyper == {"epoch_count", "learning_rate_multiplier", "adapter_size"}
    # distillationSpec is v1beta1 only.
    from google.cloud.aiplatform_v1.types import tuning_job as v1

    assert "distillation_spec" not in v1.TuningJob.meta.fields


# --- The plan ----------------------------------------------------------------------------------


def test_distillation_plan_sends_a_v1beta1_distillation_spec() -> None:
    from google.cloud.aiplatform_v1beta1 import TuningJob

    plan = _plan(tuning_mode="distillation", epoch_count=2, adapter_size=4)
    assert plan.accepted, plan.refusals
    assert plan.api_version == "v1beta1"
    body = plan.request_body
    assert "supervisedTuningSpec" not in body
    assert body["baseModel"] == "gemini-2.5-flash"
    assert body["distillationSpec"] == {
        "baseTeacherModel": "gemini-3.1-pro",
        "trainingDatasetUri": "gs://bkt/validated/abc/news.jsonl",
        "validationDatasetUri": "gs://bkt/validated/def/news.eval.jsonl",
        "hyperParameters": {
            "epochCount": 2,
            "learningRateMultiplier": 1.0,
            "adapterSize": "ADAPTER_SIZE_FOUR",
        },
    }
    job = TuningJob.from_json(json.dumps(body))  # Refuses any field the message lacks.
    assert job.distillation_spec.base_teacher_model == "gemini-3.1-pro"
    assert job.distillation_spec.hyper_parameters.adapter_size.name == "ADAPTER_SIZE_FOUR"
    assert job.labels == {policy.JOB_LABEL_KEY: JOB_ID}
    spec = plan.spec_dict()
    assert spec["tuning_mode"] == "distillation"
    assert spec["teacher_model"] == "gemini-3.1-pro"
    assert spec["api_version"] == "v1beta1"
    reasons = "\n".join(plan.reasons)
    assert "early access for allowlisted projects" in reasons
    assert "teacher gemini-3.1-pro" in reasons
    assert "user turns only" in reasons


def test_supervised_plan_is_unchanged_and_v1() -> None:
    plan = _plan()
    assert plan.accepted, plan.refusals
    assert plan.api_version == "v1"
    assert "distillationSpec" not in plan.request_body
    assert "baseTeacherModel" not in plan.request_body["supervisedTuningSpec"]
    assert plan.spec_dict()["teacher_model"] is None
    assert any("tuning mode supervised" in r for r in plan.reasons)


def test_setting_chooses_the_mode_and_the_override_wins() -> None:
    distilling = _settings(tuning_mode="distillation")
    assert "distillationSpec" in _plan(distilling).request_body
    assert "supervisedTuningSpec" in _plan(distilling, tuning_mode="supervised").request_body


def test_distillation_refusals() -> None:
    europe = _settings(region="europe-west4")
    refusals = _plan(europe, tuning_mode="distillation").refusals
    assert any("us-central1 only" in r for r in refusals), refusals
    assert _plan(europe).accepted  # Supervised tuning runs there.
    student = _plan(tuning_mode="distillation", base_model="gemini-2.5-pro").refusals
    assert any("cannot be a distillation student" in r for r in student)
    teacher = _plan(teacher_model="gemini-3.1-pro").refusals
    assert any("distillation mode only" in r for r in teacher)
    pipeline = Settings(project="p", bucket="b", backend="pipeline")
    refused = _plan(pipeline, tuning_mode="distillation").refusals
    assert any("gemini backend only" in r for r in refused)


# --- The config sidecar, judged for the job's backend ------------------------------------------


def test_sidecar_refuses_the_other_backends_keys() -> None:
    data = json.dumps({"tuning_mode": "distillation"}).encode()
    report = validate_config(data, source="a.config.json", has_eval=False, backend="pipeline")
    assert not report.report.valid
    result = report.report.result_for("config_not_for_backend")
    assert result is not None
    [finding] = result.findings
    assert "applies to the gemini backend only" in finding.message
    assert validate_config(
        data, source="a.config.json", has_eval=False, backend="gemini"
    ).report.valid
    pipeline_key = json.dumps({"accelerator_type": "GPU"}).encode()
    on_gemini = validate_config(
        pipeline_key, source="a.config.json", has_eval=False, backend="gemini"
    )
    assert on_gemini.report.result_for("config_not_for_backend") is not None


# --- The adapter: v1beta1 for a distillation job -----------------------------------------------


class _RecordingClient:
    """A stand-in GAPIC tuning client: answers with the message type of its API version."""

    def __init__(self, tuning_job: Any, calls: list[tuple[str, str]], version: str) -> None:
        self.tuning_job = tuning_job
        self.calls = calls
        self.version = version

    def _job(self, **fields: Any) -> Any:
        return self.tuning_job(
            name="projects/p/locations/us-central1/tuningJobs/9",
            labels={policy.JOB_LABEL_KEY: JOB_ID},
            **fields,
        )

    def create_tuning_job(self, *, parent: str, tuning_job: Any) -> Any:
        assert isinstance(tuning_job, self.tuning_job)
        self.calls.append(("create", self.version))
        return self._job(distillation_spec=tuning_job.distillation_spec)

    def get_tuning_job(self, *, name: str) -> Any:
        self.calls.append(("get", self.version))
        return self._job()

    def list_tuning_jobs(self, *, request: Any) -> list[Any]:
        self.calls.append(("list", self.version))
        return [self._job()]

    def cancel_tuning_job(self, *, name: str) -> None:
        self.calls.append(("cancel", self.version))


def test_adapter_sends_a_distillation_job_through_v1beta1() -> None:
    import google.cloud.aiplatform_v1 as v1
    import google.cloud.aiplatform_v1beta1 as v1beta1

    from distillery.adapters.tuning import VertexTuningJobsAdapter
    from distillery.core.errors import RequestRejectedError

    adapter = VertexTuningJobsAdapter("p")
    calls: list[tuple[str, str]] = []
    for version, module in (("v1", v1), ("v1beta1", v1beta1)):
        clients = adapter._tuning_clients[version]
        clients["us-central1"] = _RecordingClient(module.TuningJob, calls, version)
    body = _plan(tuning_mode="distillation").request_body

    created = adapter.create("us-central1", body, api_version="v1beta1")
    assert created.resource is not None
    assert created.resource["distillationSpec"]["baseTeacherModel"] == "gemini-3.1-pro"
    adapter.get(created.name, api_version="v1beta1")
    assert adapter.find_by_label("us-central1", policy.JOB_LABEL_KEY, JOB_ID, api_version="v1beta1")
    adapter.cancel(created.name, api_version="v1beta1")
    assert calls == [
        ("create", "v1beta1"),
        ("get", "v1beta1"),
        ("list", "v1beta1"),
        ("cancel", "v1beta1"),
    ]

    # v1 has no distillationSpec: the body is refused before anything is sent.
    with pytest.raises(RequestRejectedError, match="v1 TuningJob"):
        adapter.create("us-central1", body)
    with pytest.raises(ConfigurationError, match="no API version"):
        adapter.get(created.name, api_version="v2")
    assert len(calls) == 4


# --- The launcher and status: the record says the API version -----------------------------------


def _uploaded(deps: Dependencies, config: dict[str, Any] | None = None) -> LaunchRequest:
    """Upload an example training set (and ``config`` as its sidecar); the launch it asks for."""
    from distillery.core.models import StorageObject
    from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
    from distillery.local.example_data import generate
    from distillery.services.datasets import handle_object
    from tests.helpers import BUCKET, jsonl

    train, _ = generate(120, 0)
    assert isinstance(deps.objects, InMemoryObjectStore)
    if config is not None:
        deps.objects.put(BUCKET, "datasets/news.config.json", json.dumps(config).encode())
    info = deps.objects.put(BUCKET, "datasets/news.jsonl", jsonl(train))
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    assert isinstance(deps.publisher, InMemoryPublisher)
    messages = deps.publisher.on(deps.settings.launch_topic)
    assert messages, "the upload asked for no launch"
    return LaunchRequest.model_validate_json(messages[-1].data)


def test_a_distillation_job_is_created_and_polled_through_v1beta1() -> None:
    from distillery.core.models import StatusEvent
    from distillery.fakes import InMemoryPublisher, InMemoryTuningJobs
    from distillery.services.launcher import launch
    from distillery.services.status import poll_tuning_jobs
    from tests.helpers import fake_dependencies

    deps = fake_dependencies(backend="gemini", tuning_mode="distillation")
    tuning = InMemoryTuningJobs("p", polls_per_state=1)
    deps.tuning = tuning
    request = _uploaded(deps)
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED", record.get("reason")
    assert record["tuning_api_version"] == "v1beta1"
    name = record["tuning_job"]
    assert tuning.api_versions[name] == "v1beta1"
    assert "distillationSpec" in tuning.jobs[name]

    # The tuning-job poll (reconcile would also go on to promote the SUCCEEDED job).
    for _ in range(4):
        poll_tuning_jobs(deps)
    assert tuning.read_versions[name] == "v1beta1"
    final = deps.records.get("jobs", job_id)
    assert final is not None and final["state"] == "SUCCEEDED"
    assert isinstance(deps.publisher, InMemoryPublisher)
    events = [
        StatusEvent.model_validate_json(m.data)
        for m in deps.publisher.on(deps.settings.status_topic)
    ]
    assert [e.state.value for e in events] == ["REQUESTED", "SUBMITTED", "RUNNING", "SUCCEEDED"]
    # REQUESTED is announced once the submit is recorded, like a pipeline job's pipeline_job.
    assert all(e.tuning_job == name for e in events)
    assert all(e.pipeline_job is None for e in events)


# --- The datasets service: the distillation mode's prompts-only copy ----------------------------


def test_a_distillation_sidecar_gets_a_prompts_only_copy_and_a_v1beta1_job() -> None:
    from distillery.fakes import InMemoryTuningJobs
    from distillery.services.launcher import launch
    from tests.helpers import BUCKET, fake_dependencies

    deps = fake_dependencies(backend="gemini")
    tuning = InMemoryTuningJobs("p")
    deps.tuning = tuning
    request = _uploaded(deps, config={"tuning_mode": "distillation"})
    [dataset] = [
        r for r in deps.records.list(deps.settings.datasets_collection) if r.get("validated_uri")
    ]
    assert dataset["tuning_mode"] == "distillation"
    name = str(dataset["validated_uri"]).removeprefix(f"gs://{BUCKET}/")
    copied = [json.loads(line) for line in deps.objects.read_bytes(BUCKET, name).splitlines()]
    assert copied and all([t["role"] for t in line["contents"]] == ["user"] for line in copied)
    warnings = {w["rule"] for w in dataset["reports"][0]["warnings"]}
    assert "answer_dropped" in warnings  # The example data is labeled: its answers are dropped.

    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED", record.get("reason")
    job = tuning.jobs[record["tuning_job"]]
    assert job["distillationSpec"]["trainingDatasetUri"] == dataset["validated_uri"]
    assert tuning.api_versions[record["tuning_job"]] == "v1beta1"


def test_a_supervised_gemini_dataset_keeps_its_answers() -> None:
    from tests.helpers import fake_dependencies

    deps = fake_dependencies(backend="gemini")
    _uploaded(deps)
    [dataset] = [
        r for r in deps.records.list(deps.settings.datasets_collection) if r.get("validated_uri")
    ]
    assert dataset["tuning_mode"] == "supervised"


def test_a_gemini_key_in_a_sidecar_under_the_pipeline_backend_blocks_the_dataset() -> None:
    from distillery.core.models import StorageObject
    from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
    from distillery.local.example_data import generate
    from distillery.services.datasets import handle_object
    from tests.helpers import BUCKET, fake_dependencies, jsonl

    deps = fake_dependencies(backend="pipeline")
    train, _ = generate(120, 0)
    assert isinstance(deps.objects, InMemoryObjectStore)
    deps.objects.put(BUCKET, "datasets/news.config.json", b'{"teacher_model": "gemini-3.1-pro"}')
    info = deps.objects.put(BUCKET, "datasets/news.jsonl", jsonl(train))
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    assert isinstance(deps.publisher, InMemoryPublisher)
    assert not deps.publisher.on(deps.settings.launch_topic)
    [dataset] = deps.records.list(deps.settings.datasets_collection)
    assert dataset["status"] == "invalid"
    config_report = dataset["reports"][-1]
    [error] = [e for e in config_report["errors"] if e["rule"] == "config_not_for_backend"]
    assert "teacher_model applies to the gemini backend only" in error["findings"][0]["message"]


def test_a_job_in_the_other_mode_than_its_copy_is_refused() -> None:
    from distillery.fakes import InMemoryTuningJobs
    from distillery.services.launcher import launch
    from tests.helpers import fake_dependencies

    deps = fake_dependencies(backend="gemini")
    deps.tuning = InMemoryTuningJobs("p")
    request = _uploaded(deps)  # A supervised copy: it holds the answers.
    rerun = request.model_copy(
        update={"overrides": {"tuning_mode": "distillation"}, "request_id": "r-other-mode"}
    )
    job_id = launch(rerun, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "REJECTED_BY_POLICY"
    assert "made for the supervised mode" in record["reason"]
    assert "distillation" in record["reason"]


def test_distillery_plan_shows_the_v1beta1_body_of_a_prompts_only_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from distillery.commands import cli
    from distillery.core.settings import ENVIRONMENT

    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    dataset = tmp_path / "news.jsonl"
    # Prompts only: supervised tuning would refuse these lines (output_text_required).
    dataset.write_text(
        "".join(
            json.dumps({"input_text": f"Classify: headline number {i}"}) + "\n" for i in range(120)
        )
    )
    common = ["--set", "backend=gemini", "--project", "p", "--bucket", "bkt"]
    code = cli.main(["plan", str(dataset), *common, "--set", "tuning_mode=distillation", "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 0, (out["refusals"], captured.err)
    body = out["request"]
    assert body["distillationSpec"]["baseTeacherModel"] == "gemini-3.1-pro"
    assert body["distillationSpec"]["trainingDatasetUri"].startswith("gs://bkt/validated/")
    assert out["spec"]["api_version"] == "v1beta1"

    assert cli.main(["plan", str(dataset), *common, "--set", "tuning_mode=distillation"]) == 0
    human = capsys.readouterr().out
    assert "aiplatform.googleapis.com/v1beta1/projects/p/locations/us-central1/tuningJobs" in human
    assert "early access for allowlisted projects" in human

    # Planned for supervised tuning without the teacher's labels it is refused: no answers.
    assert cli.main(["plan", str(dataset), *common, "--set", "rationales=none"]) != 0


def test_an_unlabeled_upload_launches_in_both_modes() -> None:
    from distillery.core.models import StorageObject
    from distillery.services.datasets import Outcome, handle_object
    from tests.helpers import BUCKET, fake_dependencies

    data = "".join(
        json.dumps({"input_text": f"Classify: headline number {i}"}) + "\n" for i in range(150)
    ).encode()
    outcomes = {}
    for mode in ("distillation", "supervised"):
        deps = fake_dependencies(backend="gemini", tuning_mode=mode)
        info = deps.objects.put(BUCKET, "datasets/p.jsonl", data)
        obj = StorageObject(bucket=BUCKET, name=info.name, generation=info.generation)
        outcomes[mode] = handle_object(obj, deps)
    # Supervised: the teacher labels the prompts first (distilling step-by-step).
    assert outcomes == {
        "distillation": Outcome.LAUNCH_REQUESTED,
        "supervised": Outcome.LAUNCH_REQUESTED,
    }
