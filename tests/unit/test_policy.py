"""The launch policy engine: SPEC rules and organisation constraints, table-driven."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from distillery import policy
from distillery.core.errors import ConfigurationError
from distillery.core.models import LaunchRequest
from distillery.core.settings import Settings
from distillery.facts import (
    EVAL_ONLY_PARAMETERS,
    PIPELINE_JOB_ID_PATTERN,
    SUPPORTED_REGIONS,
    TASK_STEP_RANGES,
)
from distillery.overrides import PARAMETERS, InvalidValue, Parameter
from distillery.validation import validate_config

DATASET = "gs://bkt/validated/0f3a/news.jsonl"
EVAL = "gs://bkt/validated/9c1b/news.eval.jsonl"
KEY = "projects/p-1/locations/us-central1/keyRings/ring/cryptoKeys/key"
TENSORBOARD_US = "projects/p-1/locations/us-central1/tensorboards/123"


# --- A stand-in for distillery.validation while it is not there (contract of the brief) ---------


@dataclasses.dataclass
class _Finding:
    field: str | None
    message: str
    line: int | None = None


@dataclasses.dataclass
class _Rule:
    findings: list[_Finding]
    summary: str = "a rule"
    count: int = 0


@dataclasses.dataclass
class _Report:
    valid: bool
    errors: list[_Rule]
    examples: int = 0
    sha256: str = ""
    warnings: list[_Rule] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Result:
    report: _Report
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


class _Kind(enum.StrEnum):
    TRAINING = "training"
    EVAL = "eval"
    CONFIG = "config"


def _stub_validate_config(
    data: bytes, *, source: str, has_eval: bool, max_findings_per_rule: int = 20
) -> _Result:
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        return _Result(_Report(False, [_Rule([_Finding(None, f"not JSON: {exc}")])]))
    if not isinstance(value, dict):
        return _Result(_Report(False, [_Rule([_Finding(None, "not a JSON object")])]))
    return _Result(_Report(True, []), overrides=value)


def _stub_validate_jsonl(
    reader: Any, *, kind: _Kind, source: str, max_findings_per_rule: int = 20
) -> _Result:
    data = reader.read()
    findings: list[_Finding] = []
    examples = 0
    for number, line in enumerate(data.decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            findings.append(_Finding(None, "not JSON", number))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("input_text"), str):
            findings.append(_Finding("input_text", "input_text is required", number))
            continue
        examples += 1
    report = _Report(
        valid=not findings,
        errors=[_Rule(findings)] if findings else [],
        examples=examples,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return _Result(report)


def install_validation_stub(monkeypatch: pytest.MonkeyPatch, *, force: bool = False) -> bool:
    """Stand in for distillery.validation when it is not importable (or when ``force``).

    Returns whether the stub was installed.
    """
    if not force:
        try:
            from distillery.validation import (  # noqa: F401
                DatasetKind,
                validate_config,
                validate_jsonl,
            )
        except ImportError:
            pass
        else:
            return False
    stub = types.ModuleType("distillery.validation")
    stub.validate_config = _stub_validate_config  # type: ignore[attr-defined]
    stub.validate_jsonl = _stub_validate_jsonl  # type: ignore[attr-defined]
    stub.DatasetKind = _Kind  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "distillery.validation", stub)
    return True


@pytest.fixture(autouse=True)
def _validation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    install_validation_stub(monkeypatch)
    yield


# --- Helpers -------------------------------------------------------------------------------------


def settings(**changes: Any) -> Settings:
    """Settings of the pipeline backend (these tests test it) unless ``changes`` say otherwise."""
    return Settings(**{"project": "p-1", "bucket": "bkt", "backend": "pipeline", **changes})


def request(
    *, eval_uri: str | None = None, dataset: str | None = DATASET, **overrides: Any
) -> LaunchRequest:
    return LaunchRequest(
        dataset_uri=dataset, eval_dataset_uri=eval_uri, overrides=overrides, request_id="req-1"
    )


def plan_for(
    req: LaunchRequest | None = None,
    config: Settings | None = None,
    *,
    examples: int = 240,
    eval_examples: int | None = None,
    usage: policy.PolicyUsage | None = None,
) -> policy.Plan:
    return policy.resolve(
        req or request(),
        config or settings(),
        dataset_examples=examples,
        eval_examples=eval_examples,
        usage=usage or policy.PolicyUsage(),
    )


def params(plan: policy.Plan) -> dict[str, Any]:
    values: dict[str, Any] = plan.request_body["runtimeConfig"]["parameterValues"]
    return values


def refused_with(plan: policy.Plan, *fragments: str) -> bool:
    return any(all(f in refusal for f in fragments) for refusal in plan.refusals)


# --- Regions and accelerators --------------------------------------------------------------------


@pytest.mark.parametrize("accelerator", ["GPU", "TPU"])
@pytest.mark.parametrize("region", SUPPORTED_REGIONS)
def test_resolve_every_supported_pipeline_region(region: str, accelerator: str) -> None:
    plan = plan_for(request(accelerator_type=accelerator), settings(region=region))

    assert plan.refusals == []
    assert (plan.spec.pipeline_region, plan.spec.model_upload_region) == (region, region)
    assert plan.spec.accelerator_type == accelerator
    assert params(plan)["location"] == region
    assert params(plan)["accelerator_type"] == accelerator


def test_resolve_refuses_unsupported_pipeline_region() -> None:
    # Settings built directly skip Settings.check, so the policy checks the region itself.
    plan = plan_for(config=settings(region="mars-north1"))
    assert refused_with(plan, "pipeline region mars-north1", "not a distillation region")


def test_resolve_refuses_unsupported_model_upload_region() -> None:
    plan = plan_for(request(location="moon-east1"))
    assert refused_with(plan, "model upload region moon-east1", "not a distillation region")


def test_resolve_model_upload_region_override() -> None:
    plan = plan_for(request(location="asia-northeast1"))
    assert plan.refusals == []
    assert plan.spec.model_upload_region == "asia-northeast1"
    assert plan.spec.pipeline_region == "us-central1"
    assert params(plan)["location"] == "asia-northeast1"


@pytest.mark.parametrize(
    ("accelerator", "tuning_region", "count", "description"),
    [
        pytest.param("GPU", "us-central1", 8, "8 x NVIDIA A100 80 GB", id="gpu-us-central1"),
        pytest.param("TPU", "europe-west4", 64, "64 TPU v3 cores", id="tpu-europe-west4"),
    ],
)
def test_resolve_tuning_region_follows_accelerator(
    accelerator: str, tuning_region: str, count: int, description: str
) -> None:
    plan = plan_for(request(accelerator_type=accelerator), settings(region="asia-southeast1"))
    assert plan.spec.tuning_region == tuning_region
    assert plan.spec.accelerator_count == count
    assert plan.spec.accelerator_description == description
    assert any(f"tuning runs in {tuning_region}" in reason for reason in plan.reasons)


def test_resolve_default_accelerator_is_gpu() -> None:
    plan = plan_for()
    assert plan.spec.accelerator_type == "GPU"
    assert plan.reasons[2] == (
        "accelerator GPU: the default; tuning runs in us-central1 on 8 x NVIDIA A100 80 GB"
    )


# --- CMEK ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "pipeline", "location", "refusal"),
    [
        pytest.param("GPU", "us-central1", None, None, id="gpu-us-central1-allowed"),
        pytest.param("TPU", "us-central1", None, "TPU tuning has no CMEK", id="tpu-refused"),
        pytest.param(
            "GPU",
            "us-central1",
            "europe-west4",
            "model upload region (location) is europe-west4",
            id="gpu-upload-europe-west4-refused",
        ),
        pytest.param(
            "GPU",
            "europe-west4",
            "us-central1",
            "pipeline region is europe-west4",
            id="gpu-pipeline-europe-west4-refused",
        ),
    ],
)
def test_resolve_cmek_only_for_gpu_in_us_central1(
    accelerator: str, pipeline: str, location: str | None, refusal: str | None
) -> None:
    overrides: dict[str, Any] = {"accelerator_type": accelerator, "encryption_spec_key_name": KEY}
    if location:
        overrides["location"] = location
    plan = plan_for(request(**overrides), settings(region=pipeline))

    if refusal is None:
        assert plan.refusals == []
        assert plan.spec.cmek_key == KEY
        assert plan.request_body["encryptionSpec"] == {"kmsKeyName": KEY}
        assert params(plan)["encryption_spec_key_name"] == KEY
    else:
        assert refused_with(plan, "CMEK was requested", refusal)


def test_resolve_default_cmek_key_is_used_only_where_it_applies() -> None:
    config = settings(cmek_key=KEY)
    on_gpu = plan_for(config=config)
    on_tpu = plan_for(request(accelerator_type="TPU"), config)

    assert on_gpu.spec.cmek_key == KEY
    assert on_tpu.refusals == []
    assert on_tpu.spec.cmek_key is None
    assert "encryptionSpec" not in on_tpu.request_body
    assert "encryption_spec_key_name" not in params(on_tpu)
    assert any("DISTILLERY_CMEK_KEY is not used" in reason for reason in on_tpu.reasons)


@pytest.mark.parametrize(
    ("changes", "overrides", "refusal"),
    [
        pytest.param({}, {}, "no key is given", id="no-key"),
        pytest.param({"cmek_key": KEY}, {}, None, id="default-key"),
        pytest.param({}, {"encryption_spec_key_name": KEY}, None, id="override-key"),
        pytest.param({"cmek_key": KEY}, {"accelerator_type": "TPU"}, "TPU", id="tpu"),
        pytest.param(
            {"cmek_key": KEY, "region": "europe-west2"}, {}, "pipeline region", id="europe"
        ),
        pytest.param(
            {"cmek_key": "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"},
            {},
            "the CMEK key is in europe-west4",
            id="key-elsewhere",
        ),
        pytest.param({"cmek_key": "my-key"}, {}, "not a Cloud KMS key name", id="malformed-key"),
    ],
)
def test_resolve_require_cmek(
    changes: dict[str, Any], overrides: dict[str, Any], refusal: str | None
) -> None:
    plan = plan_for(request(**overrides), settings(require_cmek=True, **changes))
    if refusal is None:
        assert plan.refusals == []
        assert plan.spec.cmek_key == KEY
    else:
        assert refused_with(plan, refusal)


# --- Residency, allowed regions, accelerator preference ------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "refusal"),
    [
        pytest.param("GPU", "GPU tuning region us-central1 breaks the eu data residency", id="gpu"),
        pytest.param("TPU", None, id="tpu"),
    ],
)
def test_resolve_eu_residency(accelerator: str, refusal: str | None) -> None:
    config = settings(region="europe-west4", data_residency="eu")
    plan = plan_for(request(accelerator_type=accelerator), config)
    if refusal is None:
        assert plan.refusals == []
        assert plan.spec.tuning_region == "europe-west4"
    else:
        assert refused_with(plan, refusal)
        # An explicit accelerator is honoured or refused, never silently changed.
        assert plan.spec.accelerator_type == accelerator


@pytest.mark.parametrize(
    ("changes", "overrides", "refusal"),
    [
        pytest.param(
            {"data_residency": "eu", "region": "europe-west4"},
            {"accelerator_type": "TPU", "location": "us-central1"},
            "model upload region us-central1 breaks the eu data residency",
            id="eu-upload-outside",
        ),
        pytest.param(
            {"data_residency": "us"},
            {"accelerator_type": "TPU"},
            "TPU tuning region europe-west4 breaks the us data residency",
            id="us-tpu",
        ),
        pytest.param(
            {"allowed_regions": "us-central1"},
            {"accelerator_type": "TPU"},
            "TPU tuning region europe-west4 is not allowed",
            id="allowed-tuning",
        ),
        pytest.param(
            {"allowed_regions": "us-central1,europe-west4", "region": "us-west1"},
            {},
            "pipeline region us-west1 is not allowed",
            id="allowed-pipeline",
        ),
        pytest.param(
            {"allowed_regions": "us-central1"},
            {"location": "us-east4"},
            "model upload region us-east4 is not allowed",
            id="allowed-upload",
        ),
    ],
)
def test_resolve_region_constraints_refuse(
    changes: dict[str, Any], overrides: dict[str, Any], refusal: str
) -> None:
    assert refused_with(plan_for(request(**overrides), settings(**changes)), refusal)


def test_resolve_allowed_regions_accept_what_they_list() -> None:
    config = settings(allowed_regions="us-central1, europe-west4", region="europe-west4")
    assert plan_for(request(accelerator_type="TPU"), config).refusals == []
    assert plan_for(request(accelerator_type="GPU"), config).refusals == []


def test_resolve_accelerator_fallback_skips_with_reason() -> None:
    config = settings(region="europe-west4", data_residency="eu", accelerators="GPU,TPU")
    plan = plan_for(config=config)

    assert plan.refusals == []
    assert plan.spec.accelerator_type == "TPU"
    skipped = [reason for reason in plan.reasons if reason.startswith("accelerator GPU skipped")]
    assert len(skipped) == 1
    assert "eu data residency" in skipped[0]
    assert any(
        reason.startswith("accelerator TPU: the first of GPU,TPU that satisfies every constraint")
        for reason in plan.reasons
    )


def test_resolve_accelerator_preference_order_is_honoured() -> None:
    plan = plan_for(config=settings(accelerators="TPU,GPU"))
    assert plan.spec.accelerator_type == "TPU"
    assert any("first choice of DISTILLERY_ACCELERATORS=TPU,GPU" in r for r in plan.reasons)


def test_resolve_fallback_for_cmek_request_picks_gpu() -> None:
    plan = plan_for(request(encryption_spec_key_name=KEY), settings(accelerators="TPU,GPU"))
    assert plan.refusals == []
    assert plan.spec.accelerator_type == "GPU"
    assert any(r.startswith("accelerator TPU skipped: CMEK was requested") for r in plan.reasons)


def test_resolve_fallback_refuses_with_every_candidates_reasons() -> None:
    config = settings(region="europe-west4", accelerators="GPU,TPU", require_cmek=True)
    plan = plan_for(config=config)

    assert refused_with(plan, "accelerator GPU:", "pipeline region is europe-west4")
    assert refused_with(plan, "accelerator TPU:", "TPU tuning has no CMEK")
    # The refused plan still describes the preferred accelerator.
    assert plan.spec.accelerator_type == "GPU"


def test_resolve_explicit_accelerator_is_never_replaced_by_fallback() -> None:
    config = settings(data_residency="us", accelerators="TPU,GPU")
    plan = plan_for(request(accelerator_type="TPU"), config)
    assert plan.spec.accelerator_type == "TPU"
    assert refused_with(plan, "breaks the us data residency")
    assert any("requested by the accelerator_type override" in r for r in plan.reasons)


# --- Limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_jobs", "running", "refused"),
    [
        pytest.param(0, 50, False, id="no-limit"),
        pytest.param(3, 2, False, id="below"),
        pytest.param(3, 3, True, id="at-limit"),
        pytest.param(3, 7, True, id="above"),
    ],
)
def test_resolve_max_concurrent_jobs(max_jobs: int, running: int, refused: bool) -> None:
    plan = plan_for(
        config=settings(max_concurrent_jobs=max_jobs),
        usage=policy.PolicyUsage(running_jobs=running),
    )
    assert refused_with(plan, "DISTILLERY_MAX_CONCURRENT_JOBS") is refused


@pytest.mark.parametrize(
    ("max_steps", "overrides", "steps", "refused"),
    [
        pytest.param(0, {"train_steps": 5000}, 5000, False, id="no-limit"),
        pytest.param(500, {"train_steps": 500}, 500, False, id="at-limit"),
        pytest.param(500, {"train_steps": 501}, 501, True, id="explicit-above-refused"),
        pytest.param(200, {}, 200, False, id="default-capped"),
        pytest.param(900, {"task": "summarization"}, 900, False, id="task-choice-capped"),
    ],
)
def test_resolve_max_train_steps(
    max_steps: int, overrides: dict[str, Any], steps: int, refused: bool
) -> None:
    plan = plan_for(request(**overrides), settings(max_train_steps=max_steps))
    assert plan.spec.train_steps == steps
    assert refused_with(plan, "DISTILLERY_MAX_TRAIN_STEPS") is refused
    if max_steps and not refused and "train_steps" not in overrides:
        assert any(f"capped to {max_steps}" in reason for reason in plan.reasons)


def test_resolve_cost_estimate_formula() -> None:
    plan = plan_for()
    # (0.5 h + 300 steps x 10 s / 3600) x 8 A100s
    assert plan.spec.estimated_accelerator_hours == pytest.approx(10.67)
    with_eval = plan_for(request(eval_uri=EVAL), eval_examples=50)
    # + 300 // 20 = 15 evaluations x 60 s
    assert with_eval.spec.estimated_accelerator_hours == pytest.approx(12.67)


@pytest.mark.parametrize(
    ("budget", "spent", "refused"),
    [
        pytest.param(0.0, 1000.0, False, id="no-budget"),
        pytest.param(20.0, 0.0, False, id="fits"),
        pytest.param(20.0, 9.33, False, id="exactly-fits"),
        pytest.param(20.0, 9.5, True, id="exceeds"),
    ],
)
def test_resolve_daily_budget(budget: float, spent: float, refused: bool) -> None:
    plan = plan_for(
        config=settings(daily_accelerator_hours=budget),
        usage=policy.PolicyUsage(accelerator_hours_today=spent),
    )
    assert refused_with(plan, "daily budget", "DISTILLERY_DAILY_ACCELERATOR_HOURS") is refused


def test_resolve_budget_can_drive_the_fallback() -> None:
    # GPU (10.67 h) fits a 20 h budget; TPU (58.67 h) does not: TPU first in preference.
    plan = plan_for(config=settings(accelerators="TPU,GPU", daily_accelerator_hours=20.0))
    assert plan.refusals == []
    assert plan.spec.accelerator_type == "GPU"


# --- Evaluation ----------------------------------------------------------------------------------


def test_resolve_without_eval_sends_no_eval_parameter() -> None:
    plan = plan_for()
    assert not set(EVAL_ONLY_PARAMETERS) & set(params(plan))
    assert "evaluation_data_uri" not in params(plan)
    spec = plan.spec
    assert (
        spec.evaluation_data_uri,
        spec.evaluation_interval,
        spec.enable_early_stopping,
        spec.enable_checkpoint_selection,
    ) == (None, None, None, None)


def test_resolve_with_eval_sends_the_defaults() -> None:
    plan = plan_for(request(eval_uri=EVAL), eval_examples=50)
    assert plan.refusals == []
    assert {k: params(plan)[k] for k in (*EVAL_ONLY_PARAMETERS, "evaluation_data_uri")} == {
        "evaluation_data_uri": EVAL,
        "evaluation_interval": 20,
        "enable_early_stopping": True,
        "enable_checkpoint_selection": "default",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("evaluation_interval", 50, id="interval"),
        pytest.param("enable_early_stopping", False, id="early-stopping"),
        pytest.param("enable_checkpoint_selection", "true", id="checkpoint-selection"),
    ],
)
def test_resolve_refuses_eval_override_without_eval_data(name: str, value: Any) -> None:
    plan = plan_for(request(**{name: value}))
    assert refused_with(plan, name)
    assert name not in params(plan)


@pytest.mark.parametrize("eval_examples", [5, 251])
def test_resolve_refuses_eval_set_size_outside_spec(eval_examples: int) -> None:
    plan = plan_for(request(eval_uri=EVAL), eval_examples=eval_examples)
    assert refused_with(plan, f"eval set has {eval_examples} examples")


# --- Training parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("student", "accelerator", "batch"),
    [
        pytest.param("text-bison@002", "GPU", 8, id="8k-us-central1"),
        pytest.param("text-bison@002", "TPU", 24, id="8k-europe-west4"),
        pytest.param("text-bison-32k@002", "GPU", 8, id="32k-us-central1"),
        pytest.param("text-bison-32k@002", "TPU", 8, id="32k-europe-west4"),
        pytest.param("my-student@001", "TPU", 24, id="unlisted-is-8k"),
    ],
)
def test_resolve_batch_size(student: str, accelerator: str, batch: int) -> None:
    plan = plan_for(request(accelerator_type=accelerator, student_model_reference=student))
    assert plan.spec.batch_size == batch
    assert plan.spec.student_context == ("32k" if "32k" in student else "8k")


def test_resolve_batch_size_long_context_list_is_a_setting() -> None:
    config = settings(long_context_students="my-student@001, other@1")
    plan = plan_for(
        request(accelerator_type="TPU", student_model_reference="my-student@001"), config
    )
    assert plan.spec.batch_size == 8


def test_resolve_batch_size_reason() -> None:
    assert "batch size 8: text-bison@002 has an 8k context and tuning runs in us-central1" in (
        plan_for().reasons
    )


@pytest.mark.parametrize(
    ("accelerator", "steps", "seen", "epochs"),
    [
        pytest.param("TPU", 20, 480, 2.0, id="spec-tpu-20-steps"),
        pytest.param("GPU", 15, 120, 0.5, id="spec-gpu-15-steps"),
    ],
)
def test_resolve_epochs_match_spec_worked_examples(
    accelerator: str, steps: int, seen: int, epochs: float
) -> None:
    plan = plan_for(request(accelerator_type=accelerator, train_steps=steps), examples=240)
    assert (plan.spec.examples_seen, plan.spec.epochs) == (seen, epochs)
    batch = seen // steps
    assert f"epochs {epochs:g}: {steps} steps x {batch} = {seen} examples seen / 240 examples" in (
        plan.reasons
    )


def test_resolve_training_defaults() -> None:
    plan = plan_for()
    assert (plan.spec.train_steps, plan.spec.learning_rate_multiplier) == (300, 1.0)
    assert (params(plan)["train_steps"], params(plan)["learning_rate_multiplier"]) == (300, 1.0)
    assert plan.spec.teacher_model_reference == "text-unicorn@001"
    assert plan.spec.student_model_reference == "text-bison@002"


@pytest.mark.parametrize("accelerator", ["GPU", "TPU"])
@pytest.mark.parametrize("examples", [1, 100, 500, 1500, 4000, 10_000])
@pytest.mark.parametrize("task", sorted(TASK_STEP_RANGES))
def test_resolve_task_steps_stay_in_recommended_range(
    task: str, examples: int, accelerator: str
) -> None:
    plan = plan_for(request(task=task, accelerator_type=accelerator), examples=examples)
    low, high = TASK_STEP_RANGES[task]
    assert low <= plan.spec.train_steps <= high
    assert any(
        r.startswith(f"train steps {plan.spec.train_steps}: task {task}") for r in plan.reasons
    )


@pytest.mark.parametrize(
    ("task", "examples", "batch", "steps"),
    [
        pytest.param("classification", 1200, 8, 450, id="classification-3-epochs"),
        pytest.param("classification", 10, 8, 200, id="classification-floor"),
        pytest.param("classification", 9000, 8, 1000, id="classification-ceiling"),
        pytest.param("extractive_qa", 1000, 24, 200, id="qa-tpu-floor"),
        pytest.param("extractive_qa", 2000, 8, 750, id="qa-inside"),
        pytest.param("summarization", 3000, 8, 1125, id="summarization-inside"),
    ],
)
def test_choose_train_steps_formula(task: str, examples: int, batch: int, steps: int) -> None:
    assert policy.choose_train_steps(task, examples, batch) == steps


def test_resolve_task_other_and_explicit_steps() -> None:
    assert plan_for(request(task="other")).spec.train_steps == 300
    explicit = plan_for(request(task="summarization", train_steps=100))
    assert explicit.spec.train_steps == 100
    assert explicit.refusals == []
    assert any("outside the 1000-1500" in reason for reason in explicit.reasons)


# --- Names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        pytest.param("gs://b/validated/abc/news.jsonl", "news-distilled", id="plain"),
        pytest.param(
            "gs://b/validated/abc/My Data_set.v2.jsonl", "my-data-set-v2-distilled", id="sanitized"
        ),
        pytest.param("gs://b/validated/abc/---.jsonl", "dataset-distilled", id="empty-stem"),
        pytest.param("gs://b/x/" + "a" * 300 + ".jsonl", "a" * 118 + "-distilled", id="truncated"),
    ],
)
def test_default_model_display_name(uri: str, name: str) -> None:
    assert policy.default_model_display_name(uri) == name
    assert len(name) <= 128


def test_resolve_output_directory_and_display_names() -> None:
    plan = plan_for()
    assert plan.spec.model_display_name == "news-distilled"
    assert plan.request_body["displayName"] == "news-distilled"
    assert plan.spec.output_directory == "gs://bkt/pipeline-root/news-distilled"


# --- TensorBoard, overrides, collecting refusals, settings required ------------------------------


@pytest.mark.parametrize(
    ("tensorboard", "refusal"),
    [
        pytest.param(TENSORBOARD_US, None, id="same-region"),
        pytest.param(
            "projects/p-1/locations/europe-west4/tensorboards/9",
            "TensorBoard is in europe-west4",
            id="other-region",
        ),
        pytest.param("tb-123", "not a TensorBoard resource name", id="malformed"),
    ],
)
def test_resolve_tensorboard_must_be_in_pipeline_region(
    tensorboard: str, refusal: str | None
) -> None:
    plan = plan_for(request(tensorboard_resource_id=tensorboard))
    if refusal is None:
        assert plan.refusals == []
        assert params(plan)["tensorboard_resource_id"] == tensorboard
    else:
        assert refused_with(plan, refusal)


def test_resolve_sends_no_tensorboard_when_unset() -> None:
    assert "tensorboard_resource_id" not in params(plan_for())


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        pytest.param({"train_steps": "many"}, "train_steps", id="steps-not-int"),
        pytest.param({"train_steps": 0}, "train_steps", id="steps-zero"),
        pytest.param({"learning_rate_multiplier": -1}, "learning_rate_multiplier", id="lr"),
        pytest.param({"accelerator_type": "FPGA"}, "accelerator_type", id="accelerator"),
        pytest.param({"task": "poetry"}, "task", id="task"),
        pytest.param({"warp_speed": 9}, "warp_speed", id="unknown-key"),
    ],
)
def test_resolve_refuses_bad_overrides(overrides: dict[str, Any], fragment: str) -> None:
    assert refused_with(plan_for(request(**overrides)), fragment)


def test_resolve_collects_every_refusal() -> None:
    config = settings(max_concurrent_jobs=1, max_train_steps=100)
    plan = plan_for(
        request(
            accelerator_type="TPU",
            encryption_spec_key_name=KEY,
            train_steps=1000,
            evaluation_interval=10,
            tensorboard_resource_id="projects/p/locations/asia-east1/tensorboards/1",
        ),
        config,
        usage=policy.PolicyUsage(running_jobs=1),
    )
    for fragment in (
        "TPU tuning has no CMEK",
        "DISTILLERY_MAX_TRAIN_STEPS",
        "evaluation_interval",
        "TensorBoard is in asia-east1",
        "DISTILLERY_MAX_CONCURRENT_JOBS",
    ):
        assert refused_with(plan, fragment), fragment
    assert len(plan.refusals) >= 5


@pytest.mark.parametrize("examples", [0, 10_001])
def test_resolve_refuses_dataset_size_outside_spec(examples: int) -> None:
    plan = plan_for(examples=examples)
    assert refused_with(plan, f"{examples} examples")


@pytest.mark.parametrize("missing", ["project", "bucket"])
def test_resolve_requires_project_and_bucket(missing: str) -> None:
    config = dataclasses.replace(settings(), **{missing: ""})
    with pytest.raises(ConfigurationError, match=Settings.env_name(missing)):
        plan_for(config=config)


def test_resolve_refuses_with_the_schema_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A rule added to the one override schema reaches the policy and the config sidecar alike.
    def at_most_100000(steps: int) -> None:
        if steps > 100_000:
            raise InvalidValue("is above 100000")

    monkeypatch.setitem(
        PARAMETERS,
        "train_steps",
        dataclasses.replace(PARAMETERS["train_steps"], rule=at_most_100000),
    )
    plan = plan_for(request(train_steps=10**9))
    # The schema's message is the refusal, and the policy adds none of its own for the field.
    assert plan.refusals == ["override train_steps: train_steps is above 100000"]
    sidecar = validate_config(
        b'{"train_steps": 1000000000}', source="c.config.json", has_eval=False
    )
    [rule] = sidecar.report.errors
    assert [f.message for f in rule.findings] == ["train_steps is above 100000"]


def test_resolve_keeps_a_value_its_rule_refused_for_the_region_rules() -> None:
    plan = plan_for(request(location="moon-east1"))
    assert plan.refusals[0].startswith('override location: location is a string ("moon-east1")')
    assert plan.spec.model_upload_region == "moon-east1"
    assert refused_with(plan, "model upload region moon-east1", "not a distillation region")


def test_resolve_reads_normalized_and_raw_overrides_alike() -> None:
    # A sidecar's values arrive normalized (checkpoint selection true, steps 300); a --set or a
    # hand-written LaunchRequest may hold the raw forms: one schema reads both the same.
    raw = plan_for(
        request(eval_uri=EVAL, train_steps=300.0, enable_checkpoint_selection="TRUE", task="QA")
    )
    assert refused_with(raw, "override task: task is a string")
    normalized = plan_for(
        request(eval_uri=EVAL, train_steps=300, enable_checkpoint_selection=True), eval_examples=50
    )
    assert normalized.refusals == []
    assert params(normalized)["enable_checkpoint_selection"] == "true"
    assert normalized.spec.train_steps == raw.spec.train_steps == 300
    assert any(r.startswith("train steps 300: the train_steps override") for r in raw.reasons)


def test_resolve_typed_overrides_cover_every_job_parameter() -> None:
    from distillery.policy._overrides import RequestedOverrides

    job_parameters = [name for name, p in PARAMETERS.items() if not p.promotion_gate]
    assert [f.name for f in dataclasses.fields(RequestedOverrides)] == job_parameters
    assert all(isinstance(p, Parameter) for p in PARAMETERS.values())


def test_resolve_malformed_default_key_uses_the_schema_wording() -> None:
    plan = plan_for(config=settings(cmek_key="my-key"))
    assert plan.refusals == [
        'DISTILLERY_CMEK_KEY is "my-key", not a Cloud KMS key name '
        "projects/*/locations/*/keyRings/*/cryptoKeys/*"
    ]


def test_policy_package_keeps_its_public_names() -> None:
    assert policy.__file__ is not None and policy.__file__.endswith("policy/__init__.py")
    for name in policy.__all__:
        assert hasattr(policy, name), name
    assert policy.JOB_ID_PATTERN.match("news-1") and not policy.JOB_ID_PATTERN.match("news-1\n")


# --- The request body ----------------------------------------------------------------------------


def test_resolve_full_featured_request_body() -> None:
    config = settings(service_account="distill@p-1.iam.gserviceaccount.com")
    plan = plan_for(
        request(
            eval_uri=EVAL,
            train_steps=500,
            learning_rate_multiplier=2,
            evaluation_interval=50,
            enable_early_stopping=False,
            enable_checkpoint_selection="true",
            tensorboard_resource_id=TENSORBOARD_US,
            encryption_spec_key_name=KEY,
            model_display_name="news-classifier",
            teacher_model_reference="text-unicorn@002",
            student_model_reference="text-bison-32k@002",
        ),
        config,
        eval_examples=100,
    )
    assert plan.refusals == []
    assert plan.request_body == {
        "displayName": "news-classifier",
        "runtimeConfig": {
            "gcsOutputDirectory": "gs://bkt/pipeline-root/news-classifier",
            "parameterValues": {
                "project": "p-1",
                "model_display_name": "news-classifier",
                "dataset_uri": DATASET,
                "location": "us-central1",
                "accelerator_type": "GPU",
                "teacher_model_reference": "text-unicorn@002",
                "student_model_reference": "text-bison-32k@002",
                "train_steps": 500,
                "learning_rate_multiplier": 2.0,
                "evaluation_data_uri": EVAL,
                "evaluation_interval": 50,
                "enable_early_stopping": False,
                "enable_checkpoint_selection": "true",
                "tensorboard_resource_id": TENSORBOARD_US,
                "encryption_spec_key_name": KEY,
            },
        },
        "encryptionSpec": {"kmsKeyName": KEY},
        "serviceAccount": "distill@p-1.iam.gserviceaccount.com",
        "templateUri": "https://us-kfp.pkg.dev/ml-pipeline/distillation/distillation/v1.0.0",
    }
    assert plan.spec.batch_size == 8
    assert plan.spec.epochs == pytest.approx(500 * 8 / 240, abs=1e-4)
    assert json.loads(json.dumps(plan.spec_dict()))["epochs"] == plan.spec.epochs


def test_resolve_minimal_request_body_omits_optional_parts() -> None:
    body = plan_for().request_body
    assert set(body) == {"displayName", "runtimeConfig", "templateUri"}


# --- job_id --------------------------------------------------------------------------------------


def _job_id(
    source: str = "bkt/datasets/news.jsonl#7", rid: str = "r", name: str = "datasets/news.jsonl"
) -> str:
    return policy.job_id(source_identity=source, request_id=rid, dataset_name=name)


def test_job_id_is_deterministic_and_valid() -> None:
    first, second = _job_id(), _job_id()
    assert first == second
    assert PIPELINE_JOB_ID_PATTERN.fullmatch(first)
    assert first.startswith("news-distilled-")


@pytest.mark.parametrize(
    ("source", "rid"),
    [
        pytest.param("bkt/datasets/news.jsonl#8", "r", id="other-generation"),
        pytest.param("bkt/datasets/news.jsonl#7", "r2", id="other-request-id"),
        pytest.param("other/datasets/news.jsonl#7", "r", id="other-bucket"),
    ],
)
def test_job_id_changes_with_the_request_identity(source: str, rid: str) -> None:
    assert _job_id(source, rid) != _job_id()


@pytest.mark.parametrize(
    "dataset_name",
    [
        "2024 results.jsonl",
        "---",
        "Über Modèle.jsonl",
        "x" * 300,
        "gs://b/validated/abc/news.jsonl",
    ],
)
def test_job_id_valid_for_any_dataset_name(dataset_name: str) -> None:
    identifier = _job_id(name=dataset_name)
    assert PIPELINE_JOB_ID_PATTERN.fullmatch(identifier), identifier
    assert len(identifier) <= 128


def test_job_id_needs_identity_and_request_id() -> None:
    with pytest.raises(ValueError, match="source_identity"):
        policy.job_id(source_identity="", request_id="r", dataset_name="news.jsonl")
    with pytest.raises(ValueError, match="request_id"):
        policy.job_id(source_identity="b/o#1", request_id="", dataset_name="news.jsonl")


def test_resolve_leaves_promotion_gates_to_the_promoter() -> None:
    plan = plan_for(
        request(eval_uri=EVAL, min_eval_accuracy=0.9, promotion_margin=0.01), eval_examples=50
    )
    assert plan.refusals == []
    assert not {"min_eval_accuracy", "promotion_margin"} & set(params(plan))


def test_resolve_refuses_a_gate_without_an_eval_set() -> None:
    assert refused_with(plan_for(request(min_eval_accuracy=0.9)), "min_eval_accuracy")
