"""distillery.facts is the one definition of each distillation fact: nobody keeps a copy."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from distillery import facts, overrides, policy, validation
from distillery.core import settings as settings_module
from distillery.core.models import LaunchRequest
from distillery.core.settings import Settings
from distillery.validation import _rules

LIBRARY = Path(__file__).resolve().parents[2] / "shared" / "distillery"
FACTS = LIBRARY / "facts.py"


def sources() -> dict[str, str]:
    """Every module of the package, by path relative to the package."""
    return {
        path.relative_to(LIBRARY).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(LIBRARY.rglob("*.py"))
    }


def holding(pattern: re.Pattern[str]) -> set[str]:
    return {name for name, text in sources().items() if pattern.search(text)}


def test_facts_scan_sees_the_whole_package() -> None:
    names = set(sources())
    assert {"facts.py", "overrides.py", "policy/__init__.py", "core/settings.py"} <= names
    assert any(name.startswith("validation/") for name in names)
    assert any(name.startswith("local/") for name in names)


@pytest.mark.parametrize("region", ["asia-northeast3", "northamerica-northeast1", "europe-west9"])
def test_facts_region_list_is_written_only_in_facts(region: str) -> None:
    # Regions that only the supported-regions list names: any other module naming one copies it.
    assert region in facts.SUPPORTED_REGIONS
    assert holding(re.compile(re.escape(region))) == {"facts.py"}


def test_facts_batch_size_table_is_written_only_in_facts() -> None:
    # The table's one entry that differs from the long-context size: europe-west4's 24.
    [(region, size)] = [
        (region, size)
        for region, size in facts.SHORT_CONTEXT_BATCH.items()
        if size != facts.LONG_CONTEXT_BATCH
    ]
    entry = re.compile(rf"""["']{re.escape(region)}["']\s*:\s*{size}\b""")
    assert holding(entry) == {"facts.py"}


def test_facts_template_uri_is_written_only_in_facts() -> None:
    assert holding(re.compile(re.escape(facts.TEMPLATE_URI))) == {"facts.py"}


@pytest.mark.parametrize(
    ("name", "value", "fact"),
    [
        ("ACCELERATORS", policy.ACCELERATORS, facts.ACCELERATORS),
        ("CMEK_REGION", policy.CMEK_REGION, facts.CMEK_REGION),
        ("SHORT_CONTEXT_BATCH", policy.SHORT_CONTEXT_BATCH, facts.SHORT_CONTEXT_BATCH),
        ("LONG_CONTEXT_BATCH", policy.LONG_CONTEXT_BATCH, facts.LONG_CONTEXT_BATCH),
        ("TASK_STEP_RANGES", policy.TASK_STEP_RANGES, facts.TASK_STEP_RANGES),
        ("TASKS", policy.TASKS, facts.TASKS),
        ("EVAL_PARAMETERS", policy.EVAL_PARAMETERS, facts.EVAL_ONLY_PARAMETERS),
        ("DEFAULT_TRAIN_STEPS", policy.DEFAULT_TRAIN_STEPS, facts.DEFAULT_TRAIN_STEPS),
        (
            "DEFAULT_LEARNING_RATE_MULTIPLIER",
            policy.DEFAULT_LEARNING_RATE_MULTIPLIER,
            facts.DEFAULT_LEARNING_RATE_MULTIPLIER,
        ),
        (
            "DEFAULT_EVALUATION_INTERVAL",
            policy.DEFAULT_EVALUATION_INTERVAL,
            facts.DEFAULT_EVALUATION_INTERVAL,
        ),
        ("DISPLAY_NAME_MAX", policy.DISPLAY_NAME_MAX, facts.DISPLAY_NAME_MAX),
        ("MAX_DATASET_EXAMPLES", policy.MAX_DATASET_EXAMPLES, facts.MAX_DATASET_EXAMPLES),
        ("AcceleratorProfile", policy.AcceleratorProfile, facts.AcceleratorProfile),
    ],
)
def test_facts_policy_names_are_the_facts_objects(name: str, value: object, fact: object) -> None:
    assert value is fact, name


def test_facts_validator_reads_the_facts() -> None:
    assert validation.MAX_EXAMPLES is facts.MAX_DATASET_EXAMPLES
    assert validation.MAX_INPUT_TOKENS is facts.MAX_INPUT_TOKENS
    assert validation.MAX_OUTPUT_TOKENS is facts.MAX_OUTPUT_TOKENS
    for name in ("EVAL_MIN_EXAMPLES", "EVAL_MAX_EXAMPLES", "RECOMMENDED_MIN_LABELED"):
        assert getattr(_rules, name) is getattr(facts, name), name
    for name in ("SUPPORTED_REGIONS", "TASK_STEP_RANGES", "CMEK_REGION", "KMS_KEY_PATTERN"):
        assert getattr(overrides, name) is getattr(facts, name), name


def test_facts_settings_read_the_facts() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert defaults["template_uri"] is facts.TEMPLATE_URI
    assert defaults["teacher_model"] is facts.DEFAULT_TEACHER_MODEL
    assert defaults["student_model"] is facts.DEFAULT_STUDENT_MODEL
    assert defaults["accelerators"] is facts.DEFAULT_ACCELERATOR
    assert Settings().allowed_region_list is facts.SUPPORTED_REGIONS
    assert settings_module.SUPPORTED_REGIONS is facts.SUPPORTED_REGIONS


def test_facts_a_changed_fact_reaches_the_policy_and_the_validator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read at call time, not copied at import: a different table changes what both answer.
    monkeypatch.setitem(facts.SHORT_CONTEXT_BATCH, "europe-west4", 16)
    monkeypatch.setitem(facts.TASK_STEP_RANGES, "classification", (10, 20))
    plan = policy.resolve(
        LaunchRequest(
            dataset_uri="gs://bkt/validated/x/news.jsonl",
            overrides={"accelerator_type": "TPU", "train_steps": 30, "task": "classification"},
            request_id="r",
        ),
        Settings(project="p-1", bucket="bkt", backend="pipeline"),
        dataset_examples=240,
        eval_examples=None,
    )
    assert plan.spec.batch_size == 16
    assert any("outside the 10-20 SPEC recommends" in reason for reason in plan.reasons)
    checked = validation.validate_config(
        b'{"task": "classification", "train_steps": 30}', source="a.config.json", has_eval=False
    )
    [warning] = checked.report.warnings
    assert (
        warning.findings[0].message
        == "train_steps is 30; 10 to 20 is recommended for classification"
    )


# --- Gemini supervised tuning ---------------------------------------------------------------------


def test_facts_gemini_adapter_sizes_are_the_installed_enum() -> None:
    from google.cloud.aiplatform_v1.types import SupervisedHyperParameters

    names = {
        name
        for name in SupervisedHyperParameters.AdapterSize.__members__
        if name != "ADAPTER_SIZE_UNSPECIFIED"
    }
    assert set(facts.ADAPTER_SIZES) == names
    for model in facts.GEMINI_TUNING_MODELS.values():
        assert set(model.adapter_sizes) <= names, model.model_id


def test_facts_gemini_models_hold_the_documented_limits() -> None:
    models = facts.GEMINI_TUNING_MODELS
    assert facts.DEFAULT_GEMINI_BASE_MODEL in models
    assert {"gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"} <= set(models)
    for model_id, model in models.items():
        assert model.model_id == model_id
        assert model.max_example_tokens == 131_072
        assert model.max_validation_examples == 5_000
        assert model.max_training_examples == 1_000_000
        assert model.max_dataset_bytes == facts.GEMINI_MAX_DATASET_BYTES
        assert model.usd_per_million_training_tokens > 0
    # 2.5 Flash takes adapter size 16; 2.5 Pro stops at 8.
    assert "ADAPTER_SIZE_SIXTEEN" in models["gemini-2.5-flash"].adapter_sizes
    assert max(facts.ADAPTER_SIZES[a] for a in models["gemini-2.5-pro"].adapter_sizes) == 8


def test_facts_gemini_model_lookup_names_the_known_models() -> None:
    assert facts.gemini_tuning_model("publishers/google/models/gemini-2.5-pro").name == (
        "Gemini 2.5 Pro"
    )
    with pytest.raises(KeyError, match=r"text-bison@002.*gemini-2\.5-flash"):
        facts.gemini_tuning_model("text-bison@002")


def test_facts_gemini_cost_is_tokens_times_epochs_times_price() -> None:
    price = facts.GEMINI_TUNING_MODELS["gemini-2.5-flash"].usd_per_million_training_tokens
    assert facts.gemini_tuning_cost_usd("gemini-2.5-flash", 2_000_000, 3) == pytest.approx(
        6 * price
    )
    assert facts.gemini_tuning_cost_usd("gemini-2.5-flash", 0, 1) == 0
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        facts.gemini_tuning_cost_usd("gemini-2.5-flash", 10, 0)
    with pytest.raises(ValueError, match="dataset_tokens"):
        facts.gemini_tuning_cost_usd("gemini-2.5-flash", -1, 1)
    # Prices not found in the stored pricing page are flagged, not passed off as verified.
    assert facts.GEMINI_TUNING_PRICES_VERIFIED is False


def test_facts_gemini_regions_include_the_distillation_and_default_regions() -> None:
    regions = facts.GEMINI_TUNING_REGIONS
    assert len(regions) == len(set(regions))
    assert facts.DEFAULT_GEMINI_TUNING_REGION in regions
    assert facts.GEMINI_DISTILLATION_REGION in regions
    assert facts.GEMINI_CMEK_SUPPORTED is True


def test_facts_gemini_model_table_is_written_only_in_facts() -> None:
    # A model id with its version suffix appears nowhere else: other modules read the table.
    assert holding(re.compile(re.escape('"gemini-2.0-flash-lite-001"'))) == {"facts.py"}


def test_facts_batch_prediction_costs_half_the_online_price() -> None:
    assert facts.GEMINI_BATCH_PRICE_FRACTION == 0.5
    pro = facts.gemini_teacher_model("publishers/google/models/gemini-2.5-pro")
    assert pro.resource_name == "publishers/google/models/gemini-2.5-pro"
    online = (
        2_000_000 * pro.usd_per_million_input_tokens + 1_000_000 * pro.usd_per_million_output_tokens
    ) / 1e6
    assert facts.gemini_batch_cost_usd("gemini-2.5-pro", 2_000_000, 1_000_000) == pytest.approx(
        online / 2
    )
    assert facts.gemini_batch_cost_usd("gemini-2.5-flash-lite", 0, 0) == 0.0
    assert facts.DEFAULT_GEMINI_TEACHER_MODEL in facts.GEMINI_TEACHER_MODELS


def test_facts_teacher_prices_are_marked_unverified_and_refuse_what_they_do_not_know() -> None:
    # Read off third-party restatements only: an estimate until Google's page is read.
    assert facts.GEMINI_TEACHER_PRICES_VERIFIED is False
    with pytest.raises(KeyError, match=r"gemini-2\.5-pro"):
        facts.gemini_teacher_model("text-unicorn@001")
    with pytest.raises(ValueError, match="at least 0"):
        facts.gemini_batch_cost_usd("gemini-2.5-pro", -1, 0)
    for model in facts.GEMINI_TEACHER_MODELS.values():
        assert 0 < model.usd_per_million_input_tokens < model.usd_per_million_output_tokens
