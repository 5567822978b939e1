"""The gemini backend's launch on the in-memory ports: the tuningJobs plan, and exactly one
tuning job per request without a client-chosen id (a label, adoption, a claim on the record)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from distillery import policy
from distillery.core.errors import (
    ConfigurationError,
    ContentionError,
    RetryableError,
    ServiceUnavailableError,
)
from distillery.core.models import LaunchRequest
from distillery.core.ports import TuningJobInfo, TuningJobs
from distillery.core.runtime import Dependencies
from distillery.core.settings import ENVIRONMENT, Settings
from distillery.facts import GEMINI_TUNING_REGIONS
from distillery.fakes import (
    InMemoryPublisher,
    InMemoryTuningJobs,
)
from distillery.local.example_data import generate
from distillery.overrides import check_overrides
from distillery.services.launcher import LaunchInProgressError, launch, resume_requested
from tests.helpers import (
    CrashOnSubmitted,
    fake_dependencies,
    jsonl,
    validated_request,
)

KEY_US = "projects/p/locations/us-central1/keyRings/ring/cryptoKeys/key"
KEY_EU = "projects/p/locations/europe-west4/keyRings/ring/cryptoKeys/key"


def gemini_dependencies(**settings: Any) -> Dependencies:
    """Fakes of every port, with the gemini backend and an unkind tuning service."""
    deps = fake_dependencies(**{"backend": "gemini", **settings})
    deps.tuning = InMemoryTuningJobs("p")
    return deps


def _tuning(deps: Dependencies) -> InMemoryTuningJobs:
    assert isinstance(deps.tuning, InMemoryTuningJobs)
    return deps.tuning


def _states(deps: Dependencies) -> list[str]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [json.loads(m.data)["state"] for m in deps.publisher.on(deps.settings.status_topic)]


def _plan(settings: Settings | None = None, **overrides: Any) -> policy.Plan:
    request = LaunchRequest(
        dataset_uri="gs://bkt/validated/abc/news.jsonl",
        eval_dataset_uri="gs://bkt/validated/def/news.eval.jsonl",
        overrides=overrides,
        request_id="r-1",
    )
    return policy.resolve(
        request,
        settings or Settings(project="p", bucket="b", backend="gemini"),
        dataset_examples=240,
        eval_examples=20,
        job_id="news-distilled-0123456789abcdef01234567",
        dataset_tokens=120_000,
    )


# --- The plan: a tuningJobs.create body --------------------------------------------------------


def test_plan_body_is_the_tuning_jobs_create_body() -> None:
    plan = _plan(epoch_count=4, adapter_size=8, learning_rate_multiplier=0.5)
    assert plan.accepted, plan.refusals
    assert plan.backend == "gemini"
    assert plan.location == "us-central1"
    assert plan.request_body == {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": "gs://bkt/validated/abc/news.jsonl",
            "validationDatasetUri": "gs://bkt/validated/def/news.eval.jsonl",
            "hyperParameters": {
                "epochCount": 4,
                "learningRateMultiplier": 0.5,
                "adapterSize": "ADAPTER_SIZE_EIGHT",
            },
        },
        "tunedModelDisplayName": "news-distilled",
        "labels": {"distillery-job-id": "news-distilled-0123456789abcdef01234567"},
    }
    # 120,000 tokens x 4 epochs x $5 per 1M: counted tokens, and the reasons say so.
    assert plan.estimated_cost_usd == 2.4
    assert any("counted by validation" in reason for reason in plan.reasons)


def test_plan_body_parses_as_a_gapic_tuning_job() -> None:
    from google.cloud.aiplatform_v1 import TuningJob

    plan = _plan(adapter_size="ADAPTER_SIZE_FOUR")
    body = dict(plan.request_body)
    body["serviceAccount"] = "sa@p.iam.gserviceaccount.com"
    body["encryptionSpec"] = {"kmsKeyName": KEY_US}
    job = TuningJob.from_json(json.dumps(body))  # refuses a field the message lacks
    assert job.supervised_tuning_spec.hyper_parameters.epoch_count == policy.DEFAULT_EPOCH_COUNT
    assert job.supervised_tuning_spec.hyper_parameters.adapter_size.name == "ADAPTER_SIZE_FOUR"
    assert job.labels["distillery-job-id"] == plan.request_body["labels"]["distillery-job-id"]


def test_plan_estimates_tokens_from_examples_without_a_count() -> None:
    request = LaunchRequest(dataset_uri="gs://bkt/validated/a/news.jsonl", request_id="r")
    plan = policy.resolve(
        request,
        Settings(project="p", bucket="b", backend="gemini"),
        dataset_examples=240,
        eval_examples=None,
        job_id="news-distilled-0123456789abcdef01234567",
    )
    assert plan.spec.dataset_tokens == 240 * policy.ESTIMATED_TOKENS_PER_EXAMPLE  # type: ignore[union-attr]
    assert any("estimated as 240 examples" in reason for reason in plan.reasons)
    assert "validationDatasetUri" not in plan.request_body["supervisedTuningSpec"]


def test_plan_cmek_and_service_account_where_they_apply() -> None:
    settings = Settings(
        project="p", bucket="b", backend="gemini", cmek_key=KEY_US, service_account="sa@p.iam"
    )
    plan = _plan(settings)
    assert plan.request_body["encryptionSpec"] == {"kmsKeyName": KEY_US}
    assert plan.request_body["serviceAccount"] == "sa@p.iam"
    # A default key in another region is not used; required CMEK then refuses.
    elsewhere = Settings(project="p", bucket="b", backend="gemini", cmek_key=KEY_EU)
    assert "encryptionSpec" not in _plan(elsewhere).request_body
    # Without an account none is sent, and the plan names who the job then runs as.
    assert "serviceAccount" not in _plan(elsewhere).request_body
    assert any("Secure Fine-Tuning Service Agent" in reason for reason in _plan(elsewhere).reasons)
    required = Settings(
        project="p", bucket="b", backend="gemini", cmek_key=KEY_EU, require_cmek=True
    )
    assert any("must be in its region us-central1" in r for r in _plan(required).refusals)
    # A requested key elsewhere is refused (the pipeline's us-central1-only rule is not applied).
    eu = Settings(project="p", bucket="b", backend="gemini", region="europe-west4")
    assert _plan(eu, encryption_spec_key_name=KEY_EU).accepted
    assert not _plan(encryption_spec_key_name=KEY_EU).accepted


def test_plan_refusals_of_the_gemini_backend() -> None:
    assert any("pipeline backend only" in r for r in _plan(train_steps=100).refusals)
    assert any(
        "takes ADAPTER_SIZE_ONE" in r
        for r in _plan(base_model="gemini-2.5-pro", adapter_size=16).refusals
    )
    assert any("base_model" in r for r in _plan(base_model="text-bison@002").refusals)
    residency = Settings(project="p", bucket="b", backend="gemini", data_residency="eu")
    assert any("eu data residency" in r for r in _plan(residency).refusals)
    budget = Settings(project="p", bucket="b", backend="gemini", daily_tuning_usd=1.0)
    assert any("daily tuning budget" in r for r in _plan(budget).refusals)
    not_tuning = Settings(project="p", bucket="b", backend="gemini", region="us-west1")
    assert any("not a Gemini supervised tuning region" in r for r in _plan(not_tuning).refusals)
    # The gemini keys on the pipeline backend are refused too.
    pipeline = Settings(project="p", bucket="b", backend="pipeline")
    assert any("gemini backend only" in r for r in _plan(pipeline, epoch_count=2).refusals)


def test_backend_override_picks_the_backend_either_way() -> None:
    pipeline = Settings(project="p", bucket="b", backend="pipeline")
    assert _plan(pipeline, backend="gemini").backend == "gemini"
    assert _plan(backend="pipeline").backend == "pipeline"
    assert "templateUri" in _plan(backend="pipeline").request_body


def test_job_label_fits_a_label_and_keeps_the_hash() -> None:
    long_id = "a" * 48 + "-" + "0123456789abcdef01234567"
    label = policy.job_label(long_id)
    assert len(label) <= 63 and label.endswith("-0123456789abcdef01234567")
    assert policy.job_label("short-0123456789abcdef01234567") == "short-0123456789abcdef01234567"
    with pytest.raises(ValueError, match="not a job id"):
        policy.job_label("Not_An_Id")


def test_gemini_plan_needs_the_job_id() -> None:
    request = LaunchRequest(dataset_uri="gs://bkt/validated/a/n.jsonl", request_id="r")
    with pytest.raises(ValueError, match="job_id"):
        policy.resolve(
            request,
            Settings(project="p", bucket="b", backend="gemini"),
            dataset_examples=10,
            eval_examples=None,
        )


def test_override_schema_reads_the_gemini_keys() -> None:
    checked = check_overrides(
        {
            "backend": " Gemini ",
            "adapter_size": 4,
            "base_model": "publishers/google/models/gemini-2.5-pro",
            "epoch_count": 2.0,
        },
        has_eval=False,
    )
    assert checked.valid, checked.problems
    assert checked.values == {
        "backend": "gemini",
        "adapter_size": "ADAPTER_SIZE_FOUR",
        "base_model": "gemini-2.5-pro",
        "epoch_count": 2,
    }
    bad = check_overrides({"backend": "palm", "adapter_size": 3, "epoch_count": 0}, has_eval=False)
    assert {p.field for p in bad.errors} == {"backend", "adapter_size", "epoch_count"}


def test_backend_setting() -> None:
    # The default is the backend that runs on Google Cloud today, in a tuning region.
    assert Settings().backend == "gemini"
    assert Settings().region in GEMINI_TUNING_REGIONS
    with pytest.raises(ConfigurationError, match="DISTILLERY_BACKEND"):
        Settings.from_env({"DISTILLERY_BACKEND": "palm"})
    # A tuning region that is no distillation region is a region of the gemini backend only.
    with pytest.raises(ConfigurationError, match="DISTILLERY_REGION"):
        Settings.from_env({"DISTILLERY_REGION": "asia-south1", "DISTILLERY_BACKEND": "pipeline"})
    assert Settings.from_env({"DISTILLERY_REGION": "asia-south1", "DISTILLERY_BACKEND": "gemini"})
    assert Settings.from_env({"DISTILLERY_REGION": "asia-south1"}).backend == "gemini"


def test_distillery_plan_shows_the_tuning_jobs_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from distillery.commands import cli

    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    dataset = tmp_path / "news.jsonl"
    train, _ = generate(120, 0)
    dataset.write_bytes(jsonl(train))
    code = cli.main(
        [
            "plan",
            str(dataset),
            "--set",
            "backend=gemini",
            "--json",
            "--project",
            "p",
            "--bucket",
            "bkt",
        ]
    )
    captured = capsys.readouterr()
    assert captured.out, captured.err
    out = json.loads(captured.out)
    assert code == 0, out["refusals"]
    body = out["request"]
    assert body["baseModel"] == "gemini-2.5-flash"
    assert body["labels"] == {"distillery-job-id": out["job_id"]}
    assert body["supervisedTuningSpec"]["trainingDatasetUri"].startswith("gs://bkt/validated/")
    assert out["spec"]["backend"] == "gemini"
    assert out["spec"]["dataset_tokens_counted"] is True
    assert out["spec"]["dataset_tokens"] > 0
    assert "templateUri" not in body

    assert (
        cli.main(
            ["plan", str(dataset), "--set", "backend=gemini", "--project", "p", "--bucket", "bkt"]
        )
        == 0
    )
    assert "/locations/us-central1/tuningJobs):" in capsys.readouterr().out


# --- The launcher: exactly one tuning job ------------------------------------------------------


def test_launch_creates_one_labelled_tuning_job() -> None:
    deps = gemini_dependencies()
    request = validated_request(deps)
    job_id = launch(request, deps)

    [(name, job)] = _tuning(deps).jobs.items()
    assert job["labels"] == {"distillery-job-id": job_id}
    assert job["supervisedTuningSpec"]["trainingDatasetUri"] == request.dataset_uri
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert record["state"] == "SUBMITTED"
    assert record["backend"] == "gemini"
    assert record["tuning_job"] == name
    assert record["tuning_claim"] is None
    assert record["spec"]["backend"] == "gemini"
    assert _states(deps) == ["REQUESTED", "SUBMITTED"]


def test_launch_redelivered_twenty_times_creates_one_tuning_job() -> None:
    deps = gemini_dependencies()
    request = validated_request(deps)
    assert len({launch(request, deps) for _ in range(20)}) == 1
    assert len(_tuning(deps).jobs) == 1
    assert _tuning(deps).create_calls == 1
    assert _states(deps) == ["REQUESTED", "SUBMITTED"]


def test_launch_adopts_the_job_of_a_create_whose_answer_was_lost() -> None:
    deps = gemini_dependencies()
    request = validated_request(deps)
    _tuning(deps).lose_answers = 1
    with pytest.raises(ServiceUnavailableError, match="lost"):
        launch(request, deps)
    [record] = deps.records.list("jobs")
    assert record["state"] == "REQUESTED" and record["tuning_claim"] is None  # released
    job_id = launch(request, deps)  # the redelivery finds it by its label
    assert _tuning(deps).create_calls == 1
    [name] = _tuning(deps).jobs
    assert deps.records.get("jobs", job_id)["tuning_job"] == name  # type: ignore[index]


def _crashed_launch(**settings: Any) -> tuple[Dependencies, LaunchRequest, list[datetime]]:
    deps = gemini_dependencies(**settings)
    deps.records = CrashOnSubmitted()
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    now = [start]
    deps.clock = lambda: now[0]
    request = validated_request(deps)
    with pytest.raises(ContentionError, match="injected"):
        launch(request, deps)
    return deps, request, now


def test_redelivery_after_a_crash_between_create_and_record_adopts_the_job() -> None:
    deps, request, now = _crashed_launch(launch_claim_seconds=30)
    [record] = deps.records.list("jobs")
    assert record["state"] == "REQUESTED" and record["tuning_claim"] is not None
    # Within the claim the crashed delivery might still be working: wait, never create.
    with pytest.raises(LaunchInProgressError, match="another delivery"):
        launch(request, deps)
    now[0] += timedelta(seconds=31)
    job_id = launch(request, deps)
    assert _tuning(deps).create_calls == 1
    [name] = _tuning(deps).jobs
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED" and record["tuning_job"] == name


def test_reconcile_resume_adopts_the_job_a_crashed_delivery_created() -> None:
    deps, _, now = _crashed_launch()
    [record] = deps.records.list("jobs")
    now[0] += timedelta(seconds=deps.settings.requested_lease_seconds + 1)
    resumed = resume_requested(record["job_id"], deps)
    assert resumed["state"] == "SUBMITTED"
    assert _tuning(deps).create_calls == 1 and len(_tuning(deps).jobs) == 1
    assert resumed["tuning_job"] == next(iter(_tuning(deps).jobs))


class _SlowTuning(TuningJobs):
    """A tuning service whose list and create take a while: wide windows for a race."""

    def __init__(self, inner: InMemoryTuningJobs, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def create(
        self, location: str, body: Mapping[str, Any], *, api_version: str = "v1"
    ) -> TuningJobInfo:
        time.sleep(self.delay)
        return self.inner.create(location, body, api_version=api_version)

    def get(self, name: str, *, api_version: str = "v1") -> TuningJobInfo:
        return self.inner.get(name, api_version=api_version)

    def find_by_label(
        self, location: str, key: str, value: str, *, api_version: str = "v1"
    ) -> TuningJobInfo | None:
        time.sleep(self.delay)
        return self.inner.find_by_label(location, key, value, api_version=api_version)

    def cancel(self, name: str, *, api_version: str = "v1") -> None:
        self.inner.cancel(name, api_version=api_version)

    def generate(self, endpoint: str, prompt: str) -> str:
        return self.inner.generate(endpoint, prompt)


def test_concurrent_deliveries_create_one_tuning_job() -> None:
    deps = gemini_dependencies()
    inner = _tuning(deps)
    deps.tuning = _SlowTuning(inner, delay=0.05)
    request = validated_request(deps)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        for _ in range(200):  # each delivery is retried, as Pub/Sub would
            try:
                launch(request, deps)
                return
            except LaunchInProgressError:
                time.sleep(0.01)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert inner.create_calls == 1
    assert len(inner.jobs) == 1
    [record] = deps.records.list("jobs")
    assert record["state"] == "SUBMITTED"


def test_policy_refusal_creates_no_tuning_job() -> None:
    deps = gemini_dependencies()
    request = validated_request(deps, config=json.dumps({"adapter_size": 32}).encode())
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "REJECTED_BY_POLICY"
    assert "adapter_size" in record["reason"]
    assert _tuning(deps).create_calls == 0
    assert _states(deps) == ["REJECTED_BY_POLICY"]


def test_a_body_the_service_refuses_is_recorded_failed() -> None:
    from distillery.core.errors import RequestRejectedError

    deps = gemini_dependencies()
    request = validated_request(deps)
    _tuning(deps).fail_next.append(RequestRejectedError("invalid base model"))
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "FAILED"
    assert record["reason"] == "invalid base model"
    assert _tuning(deps).jobs == {}


def test_launch_without_a_tuning_client_is_a_configuration_error() -> None:
    deps = gemini_dependencies()
    deps.tuning = None
    with pytest.raises(ConfigurationError, match="tuning client"):
        launch(validated_request(deps), deps)


@pytest.mark.parametrize("seed", range(12))
def test_chaos_faults_in_every_window_still_make_one_tuning_job(seed: int) -> None:
    """Lost answers, refused calls and crashes before the record, in random order: delivered
    until it sticks (with the clock moving past claims), the request has one tuning job."""
    rng = random.Random(seed)
    deps = gemini_dependencies(launch_claim_seconds=30)
    store = CrashOnSubmitted()
    store.crashed = rng.random() < 0.5  # a crash before the record, or not
    deps.records = store
    now = [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]
    deps.clock = lambda: now[0]
    request = validated_request(deps)
    tuning = _tuning(deps)
    tuning.lose_answers = rng.randint(0, 2)
    tuning.fail_next = [ServiceUnavailableError("down") for _ in range(rng.randint(0, 2))]
    for _ in range(30):
        try:
            job_id = launch(request, deps)
            break
        except (RetryableError, ContentionError):
            now[0] += timedelta(seconds=rng.choice((1, 31)))
    else:
        pytest.fail("the request never launched")
    assert len(tuning.jobs) == 1
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED"
    assert record["tuning_job"] == next(iter(tuning.jobs))
