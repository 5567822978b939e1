"""Config sidecars: allowed keys, types and ranges, and the rules between parameters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distillery.validation import ConfigValidation, DatasetKind, validate_config

SOURCE = "gs://b/datasets/team/a.config.json"


def run(config: Any, *, has_eval: bool = True, raw: bytes | None = None) -> ConfigValidation:
    data = raw if raw is not None else json.dumps(config).encode()
    return validate_config(data, source=SOURCE, has_eval=has_eval)


def rules_of(result: ConfigValidation) -> set[str]:
    report = result.report
    return {r.rule for r in (*report.errors, *report.warnings)}


def test_validate_config_normalizes_every_parameter() -> None:
    config = {
        "train_steps": 300.0,
        "learning_rate_multiplier": 2,
        "evaluation_interval": 20,
        "enable_early_stopping": False,
        "enable_checkpoint_selection": "True",
        "accelerator_type": "gpu",
        "location": "us-central1",
        "teacher_model_reference": "text-unicorn@001",
        "student_model_reference": " text-bison@002 ",
        "model_display_name": "support-bot",
        "tensorboard_resource_id": "projects/p/locations/us-central1/tensorboards/123",
        "encryption_spec_key_name": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
        "service_account": "runner@p.iam.gserviceaccount.com",
        "task": "Classification",
        "min_eval_accuracy": 1,
        "max_eval_loss": 0.5,
        "min_eval_predictions": 200.0,
        "promotion_margin": 0.01,
    }
    result = run(config)
    assert result.report.valid and result.report.warnings == []
    assert result.report.kind is DatasetKind.CONFIG
    overrides = result.overrides
    assert overrides["train_steps"] == 300 and type(overrides["train_steps"]) is int
    assert overrides["learning_rate_multiplier"] == 2.0
    assert type(overrides["learning_rate_multiplier"]) is float
    assert overrides["enable_checkpoint_selection"] is True
    assert overrides["accelerator_type"] == "GPU"
    assert overrides["student_model_reference"] == "text-bison@002"
    assert overrides["task"] == "classification"
    assert overrides["min_eval_accuracy"] == 1.0 and type(overrides["min_eval_accuracy"]) is float
    assert overrides["min_eval_predictions"] == 200
    assert type(overrides["min_eval_predictions"]) is int
    assert len(overrides) == len(config)


def test_validate_config_empty_object_is_valid() -> None:
    result = run({})
    assert result.report.valid and result.overrides == {}


def test_validate_config_checkpoint_selection_default_stays_a_string() -> None:
    assert run({"enable_checkpoint_selection": "default"}).overrides == {
        "enable_checkpoint_selection": "default"
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff{}", "invalid UTF-8"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"train_steps": 3', "line 1, column"),
    ],
)
def test_validate_config_rejects_unreadable_files(raw: bytes, expected: str) -> None:
    result = run(None, raw=raw)
    finding = result.report.errors[0].findings[0]
    assert result.report.errors[0].rule == "config_not_json" and expected in finding.message
    assert result.overrides == {}


def test_validate_config_rejects_non_objects() -> None:
    result = run([1, 2])
    assert rules_of(result) == {"config_not_an_object"}
    assert "an array" in result.report.errors[0].findings[0].message


def test_validate_config_rejects_duplicate_keys() -> None:
    result = run(None, raw=b'{"train_steps": 300, "train_steps": 400}')
    assert rules_of(result) == {"config_duplicate_key"}


def test_validate_config_unknown_key_suggests_the_closest() -> None:
    result = run({"train_step": 300, "colour": "red"})
    unknown = result.report.result_for("config_unknown_key")
    assert unknown is not None and unknown.count == 2
    by_field = {f.field: f.message for f in unknown.findings}
    assert "did you mean train_steps?" in by_field["train_step"]
    assert "did you mean" not in by_field["colour"]
    assert result.overrides == {}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("train_steps", 0, "expected an integer ≥ 1"),
        ("train_steps", 2.5, "expected a whole number"),
        ("train_steps", "300", "is a string"),
        ("train_steps", True, "is a boolean"),
        ("learning_rate_multiplier", 0, "expected a number > 0"),
        ("learning_rate_multiplier", -1.5, "expected a number > 0"),
        ("evaluation_interval", 0, "expected an integer ≥ 1"),
        ("enable_early_stopping", "yes", "expected true or false"),
        ("enable_checkpoint_selection", "best", 'expected true, false or "default"'),
        ("accelerator_type", "CPU", "expected one of GPU, TPU"),
        ("location", "mars-north1", "expected a distillation region"),
        ("teacher_model_reference", "", "expected a non-empty string"),
        ("student_model_reference", 5, "expected a non-empty string"),
        ("model_display_name", "x" * 129, "129 characters long, at most 128"),
        ("tensorboard_resource_id", "tb-1", "projects/*/locations/*/tensorboards/*"),
        ("encryption_spec_key_name", "key", "projects/*/locations/*/keyRings/*/cryptoKeys/*"),
        ("service_account", "runner", "a service account email"),
        ("task", "translation", "expected one of classification"),
        ("min_eval_accuracy", 1.2, "expected a number from 0 to 1"),
        ("min_eval_accuracy", "0.9", "is a string"),
        ("promotion_margin", -0.1, "expected a number from 0 to 1"),
        ("max_eval_loss", -1, "expected a number ≥ 0"),
        ("min_eval_predictions", 2.5, "expected a whole number"),
    ],
)
def test_validate_config_rejects_wrong_types_and_ranges(
    key: str, value: Any, expected: str
) -> None:
    result = run({key: value})
    invalid = result.report.result_for("config_invalid_value")
    assert invalid is not None, result.report
    assert invalid.findings[0].field == key and expected in invalid.findings[0].message
    assert result.overrides == {}


def test_validate_config_display_name_of_128_chars_is_allowed() -> None:
    assert run({"model_display_name": "x" * 128}).report.valid


@pytest.mark.parametrize(
    "key",
    [
        "evaluation_interval",
        "enable_early_stopping",
        "enable_checkpoint_selection",
        "min_eval_accuracy",
        "promotion_margin",
    ],
)
def test_validate_config_eval_parameters_need_an_eval_set(key: str) -> None:
    value = {"evaluation_interval": 20, "min_eval_accuracy": 0.9, "promotion_margin": 0.01}.get(
        key, True
    )
    without = run({key: value}, has_eval=False)
    needs = without.report.result_for("config_needs_eval")
    assert needs is not None and needs.findings[0].field == key
    assert "gs://b/datasets/team/a.eval.jsonl" in needs.findings[0].message
    assert run({key: value}, has_eval=True).report.valid


def test_validate_config_cmek_with_tpu_is_an_error() -> None:
    # The pipeline backend's CMEK rules (the gemini policy judges a key against its tuning region).
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    pipeline = {"backend": "pipeline", "encryption_spec_key_name": key}
    result = run({**pipeline, "accelerator_type": "TPU"})
    cmek = result.report.result_for("config_cmek_unsupported")
    assert cmek is not None and "TPU" in cmek.findings[0].message
    assert run({**pipeline, "accelerator_type": "GPU"}).report.valid


def test_validate_config_cmek_outside_us_central1_is_an_error() -> None:
    key = "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"
    result = run({"backend": "pipeline", "encryption_spec_key_name": key})
    cmek = result.report.result_for("config_cmek_unsupported")
    assert cmek is not None and "europe-west4" in cmek.findings[0].message
    good_key = key.replace("europe-west4", "us-central1")
    pipeline = {"backend": "pipeline", "encryption_spec_key_name": good_key}
    located = run({**pipeline, "location": "europe-west4"})
    cmek = located.report.result_for("config_cmek_unsupported")
    assert cmek is not None and cmek.findings[0].field == "location"
    assert run({**pipeline, "location": "us-central1"}).report.valid


@pytest.mark.parametrize(
    ("task", "steps", "warned"),
    [
        ("classification", 199, True),
        ("classification", 200, False),
        ("classification", 1000, False),
        ("summarization", 300, True),
        ("summarization", 1200, False),
        ("extractive_qa", 801, True),
        ("other", 5, False),
    ],
)
def test_validate_config_train_steps_recommended_range(task: str, steps: int, warned: bool) -> None:
    result = run({"task": task, "train_steps": steps})
    assert result.report.valid and result.overrides["train_steps"] == steps
    assert ("config_train_steps_outside_recommended" in rules_of(result)) is warned


def test_validate_config_evaluation_interval_beyond_train_steps_is_a_warning() -> None:
    result = run({"train_steps": 10, "evaluation_interval": 20})
    assert result.report.valid
    assert rules_of(result) == {"config_evaluation_interval_too_long"}
    assert rules_of(run({"train_steps": 20, "evaluation_interval": 20})) == set()


def test_validate_config_report_records_size_and_digest() -> None:
    data = b'{"train_steps": 300}'
    report = validate_config(data, source=SOURCE, has_eval=False).report
    assert report.size_bytes == len(data) and len(report.sha256) == 64
    assert report.labeling is None


def test_validate_config_judges_the_keys_by_the_deployments_backend() -> None:
    # The pipeline's CMEK rule applies to a pipeline deployment's sidecar, not to a gemini one's
    # (whose policy judges the key against the tuning region at launch).
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    data = json.dumps({"encryption_spec_key_name": key, "accelerator_type": "TPU"}).encode()
    pipeline = validate_config(data, source=SOURCE, has_eval=True, backend="pipeline")
    assert pipeline.report.result_for("config_cmek_unsupported") is not None
    gemini = validate_config(data, source=SOURCE, has_eval=True, backend="gemini")
    assert gemini.report.result_for("config_cmek_unsupported") is None
    # The sidecar's own backend wins over the deployment's.
    chosen = json.dumps(
        {"backend": "pipeline", "encryption_spec_key_name": key, "accelerator_type": "TPU"}
    )
    picked = validate_config(chosen.encode(), source=SOURCE, has_eval=True, backend="gemini")
    assert picked.report.result_for("config_cmek_unsupported") is not None
