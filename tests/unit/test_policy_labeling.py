"""The labeling stage of a gemini plan: when a job's teacher labels (and explains) its training
set, the frozen LabelingSpec and batch body, the two-task tuning data, the cost and the budget,
the overrides and settings that steer it, and what the launcher records for an unlabeled upload."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.cloud.aiplatform_v1.types import BatchPredictionJob, TuningJob

from distillery import facts, labeling, policy
from distillery.core.errors import ConfigurationError
from distillery.core.models import LaunchRequest, StorageObject
from distillery.core.settings import Settings
from distillery.overrides import ProblemKind, check_overrides
from distillery.policy._labeling import instruction_tokens
from distillery.services.datasets import handle_object
from distillery.services.launcher import launch
from tests.helpers import BUCKET, fake_dependencies, validated_request

JOB_ID = "news-distilled-0123456789abcdef01234567"
DATASET = "gs://bkt/validated/abc/news.jsonl"


def _settings(**values: Any) -> Settings:
    return Settings(project="p", bucket="bkt", **{"backend": "gemini", **values})


def _plan(
    settings: Settings | None = None,
    *,
    labeling_of_set: str | None = "unlabeled",
    examples: int = 1000,
    tokens: int | None = 50_000,
    usage: policy.PolicyUsage | None = None,
    **overrides: Any,
) -> policy.Plan:
    request = LaunchRequest(dataset_uri=DATASET, overrides=overrides, request_id="r1")
    return policy.resolve(
        request,
        settings or _settings(),
        dataset_examples=examples,
        eval_examples=None,
        job_id=JOB_ID,
        dataset_tokens=tokens,
        dataset_labeling=labeling_of_set,
        usage=usage or policy.PolicyUsage(),
    )


# --- When a job labels ---------------------------------------------------------------------------


def test_policy_labeling_unlabeled_set_freezes_the_spec_the_contract_describes() -> None:
    plan = _plan()
    assert plan.accepted, plan.refusals
    assert plan.labeling is not None
    spec = labeling.LabelingSpec.from_dict(plan.labeling)
    paths = labeling.labeling_paths("bkt", "validated/", JOB_ID)
    assert spec.mode == "labels_and_rationales"
    assert spec.teacher_model == facts.DEFAULT_GEMINI_TEACHER_MODEL == "gemini-2.5-pro"
    assert spec.location == plan.location == "us-central1"
    assert (spec.source_uri, spec.source_examples) == (DATASET, 1000)
    assert (spec.input_uri, spec.output_prefix, spec.labeled_uri) == (
        paths.input_uri,
        paths.output_prefix,
        paths.labeled_uri,
    )
    assert (spec.lineage_uri, spec.training_uri) == (paths.lineage_uri, paths.training_uri)
    assert spec.instruction_sha256 == labeling.instruction_sha256("labels_and_rationales")
    assert spec.instruction_version == labeling.INSTRUCTION_VERSION
    assert (spec.min_labeled_fraction, spec.rationale_mixture) == (0.9, 1.0)
    assert (spec.label_task_prefix, spec.rationale_task_prefix) == ("predict: ", "explain: ")
    gemini = plan.spec
    assert isinstance(gemini, policy.GeminiJobSpec)
    assert spec.job_label == gemini.job_label == policy.job_label(JOB_ID)
    # The record's spec carries the same dict, and the tuning job trains on the two-task file.
    assert plan.spec_dict()["labeling"] == plan.labeling == spec.to_dict()
    tuning = plan.request_body["supervisedTuningSpec"]
    assert tuning["trainingDatasetUri"] == spec.training_uri != DATASET
    assert any(r.startswith("labeling labels_and_rationales: the default") for r in plan.reasons)


def test_policy_labeling_batch_body_is_a_batch_prediction_job() -> None:
    plan = _plan()
    body = plan.labeling_body
    assert body is not None and plan.labeling is not None
    spec = labeling.LabelingSpec.from_dict(plan.labeling)
    assert body == labeling.batch_job_body(
        spec, display_name="news-distilled labeling", label_key=policy.JOB_LABEL_KEY
    )
    job = BatchPredictionJob.from_json(json.dumps(body))  # Refuses a field the message lacks.
    assert job.model == "publishers/google/models/gemini-2.5-pro"
    assert list(job.input_config.gcs_source.uris) == [spec.input_uri]
    assert job.input_config.instances_format == job.output_config.predictions_format == "jsonl"
    assert job.output_config.gcs_destination.output_uri_prefix == spec.output_prefix
    assert dict(job.labels) == {policy.JOB_LABEL_KEY: policy.job_label(JOB_ID)}
    tuning = TuningJob.from_json(json.dumps(plan.request_body))
    assert tuning.supervised_tuning_spec.training_dataset_uri == spec.training_uri


def test_policy_labeling_labeled_set_with_rationales_teacher_keeps_its_labels() -> None:
    plan = _plan(labeling_of_set="labeled", rationales="teacher")
    assert plan.accepted, plan.refusals
    assert plan.labeling is not None
    assert plan.labeling["mode"] == "rationales"
    assert plan.labeling["instruction_sha256"] == labeling.instruction_sha256("rationales")
    assert "the training set's own labels are kept" in " ".join(plan.reasons)


@pytest.mark.parametrize("labeling_of_set", ["labeled", None])
def test_policy_labeling_labeled_set_tunes_on_its_copy_by_default(
    labeling_of_set: str | None,
) -> None:
    # None: a record written before validation recorded labeling reads as labeled.
    plan = _plan(labeling_of_set=labeling_of_set)
    assert plan.accepted, plan.refusals
    assert plan.labeling is None and plan.labeling_body is None
    assert plan.spec_dict()["labeling"] is None
    assert plan.request_body["supervisedTuningSpec"]["trainingDatasetUri"] == DATASET
    assert any(r.startswith("no labeling: the default for a labeled") for r in plan.reasons)


# --- Refusals ------------------------------------------------------------------------------------


def test_policy_labeling_unlabeled_set_with_rationales_none_is_refused() -> None:
    plan = _plan(rationales="none")
    assert plan.labeling is None
    [refusal] = plan.refusals
    assert "1,000 examples are unlabeled" in refusal
    assert "the teacher must label it" in refusal and "label it yourself" in refusal


def test_policy_labeling_rationales_teacher_is_refused_in_the_distillation_mode() -> None:
    # By the override schema when the mode is overridden too ...
    overridden = _plan(rationales="teacher", tuning_mode="distillation")
    assert any(
        r.startswith("override rationales:") and "tuning_mode=supervised" in r
        for r in overridden.refusals
    )
    # ... and by the policy when the mode is the setting's.
    by_setting = _plan(_settings(tuning_mode="distillation"), rationales="teacher")
    assert any("whose teacher writes the responses itself" in r for r in by_setting.refusals)
    assert by_setting.labeling is None
    # The distillation mode never labels, however unlabeled the set.
    plain = _plan(_settings(tuning_mode="distillation"))
    assert plain.labeling is None and plain.labeling_body is None


def test_policy_labeling_rationales_is_refused_on_the_pipeline_backend() -> None:
    checked = check_overrides({"rationales": "teacher"}, has_eval=False, backend="pipeline")
    [problem] = checked.errors
    assert problem.kind is ProblemKind.NOT_FOR_BACKEND
    assert "own teacher write the labels and rationales" in problem.message
    request = LaunchRequest(
        dataset_uri=DATASET, overrides={"rationales": "teacher"}, request_id="r1"
    )
    plan = policy.resolve(
        request,
        Settings(project="p", bucket="bkt", backend="pipeline"),
        dataset_examples=300,
        eval_examples=None,
    )
    assert any(
        r.startswith("override rationales: rationales applies to the gemini") for r in plan.refusals
    )


def test_policy_labeling_teacher_model_is_the_labeling_teacher() -> None:
    plan = _plan(teacher_model="publishers/google/models/gemini-2.5-flash")
    assert plan.accepted, plan.refusals
    assert plan.labeling is not None and plan.labeling["teacher_model"] == "gemini-2.5-flash"
    assert plan.labeling_body is not None
    assert plan.labeling_body["model"] == "publishers/google/models/gemini-2.5-flash"
    assert any("teacher_model override" in r for r in plan.reasons)
    # The distillation mode's teacher cannot label through batch prediction ...
    refused = _plan(teacher_model="gemini-3.1-pro")
    assert any("is the distillation mode's teacher" in r for r in refused.refusals)
    # ... nor a labeling teacher distil.
    distill = _plan(_settings(tuning_mode="distillation"), teacher_model="gemini-2.5-flash")
    assert any("is a labeling teacher" in r for r in distill.refusals)
    # A supervised job that does not label has no teacher at all.
    unused = _plan(labeling_of_set="labeled", teacher_model="gemini-2.5-pro")
    assert any("distillation mode only" in r for r in unused.refusals)


@pytest.mark.parametrize(
    "key, value",
    [
        ("min_labeled_fraction", 0.5),
        ("rationale_mixture", 0.5),
        ("label_task_prefix", "answer: "),
        ("rationale_task_prefix", "why: "),
    ],
)
def test_policy_labeling_keys_are_refused_on_a_job_that_does_not_label(
    key: str, value: Any
) -> None:
    plan = _plan(labeling_of_set="labeled", **{key: value})
    assert plan.refusals == [
        f"override {key} applies only when the teacher labels the training set "
        "(rationales=teacher); this is a job whose teacher does not label (remove the key, or "
        "set rationales=teacher)"
    ]


def test_policy_labeling_overrides_are_frozen_in_the_spec() -> None:
    plan = _plan(
        min_labeled_fraction=1,
        rationale_mixture=0,
        label_task_prefix="answer: ",
        rationale_task_prefix="reason: ",
    )
    assert plan.accepted, plan.refusals
    assert plan.labeling is not None
    assert (plan.labeling["min_labeled_fraction"], plan.labeling["rationale_mixture"]) == (1.0, 0.0)
    assert (plan.labeling["label_task_prefix"], plan.labeling["rationale_task_prefix"]) == (
        "answer: ",
        "reason: ",
    )
    assert any(
        r.startswith("labeled fraction at least 1: the min_labeled_fraction") for r in plan.reasons
    )


# --- The override schema and the settings --------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        ({"rationales": "maybe"}, "rationales", "expected one of teacher, none"),
        ({"min_labeled_fraction": 0}, "min_labeled_fraction", "expected a number above 0"),
        ({"min_labeled_fraction": 1.5}, "min_labeled_fraction", "at most 1"),
        ({"rationale_mixture": -0.1}, "rationale_mixture", "expected a number from 0 to 1"),
        ({"rationale_mixture": True}, "rationale_mixture", "expected a number from 0 to 1"),
        ({"label_task_prefix": "  "}, "label_task_prefix", "expected a non-empty string"),
        ({"label_task_prefix": "a\nb: "}, "label_task_prefix", "holds a line break"),
        ({"rationale_task_prefix": "x" * 33}, "rationale_task_prefix", "at most 32"),
        ({"rationale_task_prefix": "predict:"}, "rationale_task_prefix", "are the same"),
        (
            {"label_task_prefix": "q: ", "rationale_task_prefix": "q: "},
            "rationale_task_prefix",
            "could not tell the label task from the rationale task",
        ),
        ({"teacher_model": "gemini-1.0-pro"}, "teacher_model", "of labeling (rationales=teacher)"),
    ],
)
def test_policy_labeling_override_schema_refuses_with_the_key_and_the_rule(
    overrides: dict[str, Any], field: str, words: str
) -> None:
    checked = check_overrides(overrides, has_eval=False, backend="gemini")
    assert [problem.field for problem in checked.errors] == [field]
    assert words in checked.errors[0].message


def test_policy_labeling_override_schema_reads_the_labeling_keys() -> None:
    checked = check_overrides(
        {
            "rationales": " Teacher ",
            "min_labeled_fraction": 1,
            "rationale_mixture": 0,
            "label_task_prefix": "predict: ",
            "teacher_model": "gemini-2.5-flash-lite",
        },
        has_eval=False,
        backend="gemini",
    )
    assert checked.valid, checked.problems
    assert checked.values == {
        "rationales": "teacher",
        "min_labeled_fraction": 1.0,
        "rationale_mixture": 0.0,
        "label_task_prefix": "predict: ",  # Kept exactly: its space is part of the prompt.
        "teacher_model": "gemini-2.5-flash-lite",
    }


def test_policy_labeling_settings_defaults_and_checks() -> None:
    settings = Settings()
    assert settings.labeling_teacher_model == facts.DEFAULT_GEMINI_TEACHER_MODEL
    assert (settings.labeling_min_fraction, settings.rationale_mixture) == (0.9, 1.0)
    read = Settings.from_env(
        {
            "DISTILLERY_LABELING_TEACHER_MODEL": "gemini-2.5-flash",
            "DISTILLERY_LABELING_MIN_FRACTION": "0.75",
            "DISTILLERY_RATIONALE_MIXTURE": "0.5",
        }
    )
    assert (read.labeling_teacher_model, read.labeling_min_fraction, read.rationale_mixture) == (
        "gemini-2.5-flash",
        0.75,
        0.5,
    )
    for name, value, words in (
        ("DISTILLERY_LABELING_TEACHER_MODEL", "gemini-3.1-pro", "must be a Gemini teacher model"),
        ("DISTILLERY_LABELING_MIN_FRACTION", "0", "above 0 and at most 1"),
        ("DISTILLERY_LABELING_MIN_FRACTION", "1.01", "above 0 and at most 1"),
        ("DISTILLERY_RATIONALE_MIXTURE", "2", "must be from 0 to 1"),
        ("DISTILLERY_RATIONALE_MIXTURE", "lots", "must be a number"),
    ):
        with pytest.raises(ConfigurationError, match=words):
            Settings.from_env({name: value})
    plan = _plan(_settings(labeling_min_fraction=0.5, rationale_mixture=0.25))
    assert plan.labeling is not None
    assert (plan.labeling["min_labeled_fraction"], plan.labeling["rationale_mixture"]) == (
        0.5,
        0.25,
    )
    assert any("DISTILLERY_RATIONALE_MIXTURE" in r for r in plan.reasons)


# --- Cost and budget -----------------------------------------------------------------------------


def test_policy_labeling_cost_counts_the_prompts_the_instruction_and_the_thinking() -> None:
    plan = _plan(examples=1000, tokens=50_000)
    assert plan.labeling is not None
    per_instruction = math.ceil(len(labeling.STEP_BY_STEP_INSTRUCTION) / 4)
    assert instruction_tokens("labels_and_rationales") == per_instruction
    assert plan.labeling["estimated_input_tokens"] == 50_000 + 1000 * per_instruction
    # 2.5 Pro: 256 visible (rationale and answer) + 768 thinking per example, billed as output.
    assert plan.labeling["estimated_output_tokens"] == 1000 * 1024
    teacher = facts.GEMINI_TEACHER_MODELS["gemini-2.5-pro"]
    online = (
        plan.labeling["estimated_input_tokens"] * teacher.usd_per_million_input_tokens
        + 1_024_000 * teacher.usd_per_million_output_tokens
    ) / 1e6
    labeling_usd = round(online * 0.5, 2)
    assert plan.labeling["estimated_cost_usd"] == labeling_usd
    assert any(
        r.startswith(f"estimated labeling cost ${labeling_usd:,.2f}")
        and "unverified list price" in r
        for r in plan.reasons
    )
    # Flash-Lite does not think: its output is the visible rationale and answer only.
    lite = _plan(teacher_model="gemini-2.5-flash-lite")
    assert lite.labeling is not None and lite.labeling["estimated_output_tokens"] == 1000 * 256


def test_policy_labeling_tuning_cost_counts_the_two_task_data() -> None:
    plain = _plan(labeling_of_set="labeled", examples=1000, tokens=50_000)
    both = _plan(examples=1000, tokens=50_000)
    half = _plan(examples=1000, tokens=50_000, rationale_mixture=0.5)
    model = facts.gemini_tuning_model(facts.DEFAULT_GEMINI_BASE_MODEL)
    # Label task: prompts + "predict: " (3 tokens) + the teacher's answer (32 assumed);
    # rationale task: prompts + "explain: " (3 tokens) + the rationale (224 assumed).
    label_task = 50_000 + 1000 * 3 + 1000 * 32
    rationale_task = 50_000 + 1000 * (3 + 224)
    for plan, tokens, lines in (
        (both, label_task + rationale_task, 2000),
        (half, label_task + rationale_task // 2, 1500),
    ):
        assert plan.labeling is not None
        tuning_usd = round(facts.gemini_tuning_cost_usd(model.model_id, tokens, 3), 2)
        assert plan.estimated_cost_usd == round(tuning_usd + plan.labeling["estimated_cost_usd"], 2)
        assert f"tuning tokens {tokens:,} per epoch: the two-task data ({lines:,} examples" in (
            " ".join(plan.reasons)
        )
    assert plain.estimated_cost_usd == round(
        facts.gemini_tuning_cost_usd(model.model_id, 50_000, 3), 2
    )
    assert both.estimated_cost_usd > half.estimated_cost_usd > plain.estimated_cost_usd


def test_policy_labeling_that_alone_breaks_the_budget_is_refused_with_both_figures() -> None:
    # Flash-Lite tunes cheaply: the teacher's labeling is most of the cost.
    plan = _plan(_settings(daily_tuning_usd=5.0), base_model="gemini-2.5-flash-lite")
    assert plan.labeling is not None
    labeling_usd = plan.labeling["estimated_cost_usd"]
    tuning_usd = round(plan.estimated_cost_usd - labeling_usd, 2)
    assert labeling_usd > 5.0 > tuning_usd
    [refusal] = plan.refusals
    assert f"${labeling_usd:,.2f} labeling + ${tuning_usd:,.2f} tuning" in refusal
    assert "(the labeling alone exceeds it)" in refusal and "nothing is spent" in refusal
    # What was spent today counts too; enough budget accepts the same job.
    spent = _plan(_settings(daily_tuning_usd=12.0), usage=policy.PolicyUsage(tuning_usd_today=8.0))
    assert any("$8.00 estimated today" in r for r in spent.refusals)
    assert _plan(_settings(daily_tuning_usd=12.0)).accepted


def test_policy_labeling_two_task_data_over_the_model_limit_is_refused() -> None:
    limit = facts.gemini_tuning_model(facts.DEFAULT_GEMINI_BASE_MODEL).max_training_examples
    plan = _plan(examples=limit, tokens=limit * 20)
    assert any(
        r.startswith(f"the two-task training data would hold {2 * limit:,} examples")
        for r in plan.refusals
    )
    assert _plan(examples=limit, tokens=limit * 20, rationale_mixture=0).accepted


# --- The launcher's decision ---------------------------------------------------------------------


def _upload_unlabeled(deps: Any, name: str = "datasets/prompts.jsonl") -> LaunchRequest:
    data = "".join(
        json.dumps({"input_text": f"Classify the headline: [business, sport] Text: number {i}"})
        + "\n"
        for i in range(150)
    ).encode()
    info = deps.objects.put(BUCKET, name, data)
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    [message] = deps.publisher.on(deps.settings.launch_topic)
    return LaunchRequest.model_validate_json(message.data)


def test_policy_labeling_launch_records_labeling_for_an_unlabeled_upload() -> None:
    deps = fake_dependencies(backend="gemini")
    request = _upload_unlabeled(deps)
    [dataset] = deps.records.list("datasets", where={"validated_uri": request.dataset_uri})
    assert dataset["labeling"] == "unlabeled"
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] != "REJECTED_BY_POLICY", record.get("reason")
    spec = labeling.LabelingSpec.from_dict(record["labeling"])
    assert spec.mode == "labels_and_rationales"
    assert spec.source_uri == request.dataset_uri and spec.source_examples == 150
    assert spec.training_uri == labeling.labeling_paths(BUCKET, "validated/", job_id).training_uri
    assert record["spec"]["labeling"] == record["labeling"]
    assert record["request_body"]["supervisedTuningSpec"]["trainingDatasetUri"] == (
        spec.training_uri
    )
    assert record["labeling_body"]["inputConfig"]["gcsSource"]["uris"] == [spec.input_uri]
    BatchPredictionJob.from_json(json.dumps(record["labeling_body"]))
    # The budget of later jobs counts the labeling too.
    assert record["estimated_cost_usd"] > spec.estimated_cost_usd > 0


def test_policy_labeling_launch_of_a_labeled_upload_records_none() -> None:
    deps = fake_dependencies(backend="gemini")
    job_id = launch(validated_request(deps), deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert record["labeling"] is None and record["labeling_body"] is None
    assert record["spec"]["labeling"] is None


def test_policy_labeling_an_unlabeled_copy_serves_either_mode() -> None:
    # Made for the distillation mode, an unlabeled set's copy is the prompts a supervised job's
    # teacher labels: launched supervised, it is not refused as made for the other mode.
    deps = fake_dependencies(backend="gemini", tuning_mode="distillation")
    request = _upload_unlabeled(deps)
    supervised = request.model_copy(update={"overrides": {"tuning_mode": "supervised"}})
    record = deps.records.get("jobs", launch(supervised, deps))
    assert record is not None and record["state"] != "REJECTED_BY_POLICY", record.get("reason")
    assert record["labeling"]["mode"] == "labels_and_rationales"
