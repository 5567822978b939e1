"""The one override schema: every path that takes overrides reads them with it, in its words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillery import facts, overrides, policy
from distillery.commands import cli
from distillery.core.models import LaunchRequest
from distillery.core.settings import (
    ENVIRONMENT,
    EVALUATION_GATE_KEYS,
    PROMOTION_GATE_KEYS,
    Settings,
)
from distillery.overrides import PARAMETERS, ProblemKind, check_overrides
from distillery.validation import CONFIG_RULES, validate_config
from distillery.validation._config import RULE_OF_PROBLEM

EVAL = "gs://bkt/validated/9c1b/news.eval.jsonl"

#: Bad values, one per kind of parser, each with the message every path must give.
BAD_VALUES = [
    pytest.param("train_steps", 0, "train_steps is 0, expected an integer ≥ 1", id="steps"),
    pytest.param(
        "learning_rate_multiplier",
        "fast",
        'learning_rate_multiplier is a string ("fast"), expected a number > 0',
        id="lr",
    ),
    pytest.param(
        "accelerator_type",
        "FPGA",
        'accelerator_type is a string ("FPGA"), expected one of GPU, TPU',
        id="accelerator",
    ),
    pytest.param(
        "location",
        "mars-north1",
        'location is a string ("mars-north1"), expected a distillation region: '
        + ", ".join(facts.SUPPORTED_REGIONS),
        id="location",
    ),
    pytest.param(
        "tensorboard_resource_id",
        "tb-1",
        'tensorboard_resource_id is "tb-1", not a TensorBoard resource name '
        "projects/*/locations/*/tensorboards/*",
        id="tensorboard",
    ),
    pytest.param(
        "min_eval_accuracy",
        1.5,
        "min_eval_accuracy is 1.5, expected a number from 0 to 1",
        id="gate",
    ),
    pytest.param(
        "warp_speed",
        9,
        'unknown parameter "warp_speed" (allowed: ' + ", ".join(PARAMETERS) + ")",
        id="unknown",
    ),
]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p-1")
    monkeypatch.setenv("DISTILLERY_BUCKET", "bkt")
    yield


def sidecar_messages(config: dict[str, Any], *, has_eval: bool = True) -> list[str]:
    """The error messages of ``config`` read as a config sidecar (and as a rerun's --set)."""
    result = validate_config(json.dumps(config).encode(), source="a.config.json", has_eval=has_eval)
    return [finding.message for rule in result.report.errors for finding in rule.findings]


def policy_refusals(config: dict[str, Any]) -> list[str]:
    """The refusals of ``config`` given as a LaunchRequest's overrides (the launcher's path)."""
    request = LaunchRequest(
        dataset_uri="gs://bkt/validated/0f3a/news.jsonl",
        eval_dataset_uri=EVAL,
        overrides=config,
        request_id="r",
    )
    plan = policy.resolve(
        request,
        Settings(project="p-1", bucket="bkt", backend="pipeline"),
        dataset_examples=240,
        eval_examples=50,
    )
    return plan.refusals


def write_dataset(folder: Path) -> Path:
    path = folder / "news.jsonl"
    rows = [
        {"input_text": f"Classify the text: [a, b] Text: item {i}", "output_text": "ab"[i % 2]}
        for i in range(120)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "news.eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:20]))
    return path


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_overrides_same_message_for_sidecar_and_launch_request(
    key: str, value: Any, message: str
) -> None:
    assert sidecar_messages({key: value}) == [message]
    assert f"override {key}: {message}" in policy_refusals({key: value})


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_overrides_same_message_for_plan_set_and_plan_sidecar(
    key: str,
    value: Any,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = write_dataset(tmp_path)
    assert cli.main(["plan", str(dataset), "--json", "--set", f"{key}={json.dumps(value)}"]) == 1
    assert f"override {key}: {message}" in json.loads(capsys.readouterr().out)["refusals"]

    (tmp_path / "news.config.json").write_text(json.dumps({key: value}))
    assert cli.main(["plan", str(dataset), "--json"]) == 1
    assert message in capsys.readouterr().err


def test_overrides_needs_eval_is_the_same_rule_on_both_paths() -> None:
    message = "evaluation_interval needs an eval set"
    assert any(message in m for m in sidecar_messages({"evaluation_interval": 5}, has_eval=False))
    plan = policy.resolve(
        LaunchRequest(
            dataset_uri="gs://bkt/validated/0f3a/news.jsonl",
            overrides={"evaluation_interval": 5},
            request_id="r",
        ),
        Settings(project="p-1", bucket="bkt", backend="pipeline"),
        dataset_examples=240,
        eval_examples=None,
    )
    [refusal] = plan.refusals
    assert refusal.startswith(f"override evaluation_interval: {message}")


def test_overrides_schema_keys() -> None:
    assert tuple(PARAMETERS) == overrides.OVERRIDABLE_PARAMETERS
    assert policy.OVERRIDABLE_PARAMETERS is overrides.OVERRIDABLE_PARAMETERS
    gates = tuple(name for name, p in PARAMETERS.items() if p.promotion_gate)
    assert gates == (*PROMOTION_GATE_KEYS, *EVALUATION_GATE_KEYS)
    assert overrides.OVERRIDABLE_PARAMETERS[-len(gates) :] == gates
    needs_eval = {name for name, p in PARAMETERS.items() if p.needs_eval}
    assert needs_eval == {*facts.EVAL_ONLY_PARAMETERS, *PROMOTION_GATE_KEYS}


def test_overrides_every_problem_kind_has_its_config_rule() -> None:
    assert set(RULE_OF_PROBLEM) == set(ProblemKind)
    assert set(RULE_OF_PROBLEM.values()) <= set(CONFIG_RULES)
    for kind, rule in RULE_OF_PROBLEM.items():
        assert (rule.severity == "warning") is (kind in overrides.WARNING_KINDS), kind


def test_overrides_a_value_breaking_its_rule_keeps_its_parsed_form() -> None:
    checked = check_overrides({"location": " moon-east1 ", "train_steps": "x"}, has_eval=True)
    assert checked.values == {"location": "moon-east1"}
    assert checked.flagged == {"location", "train_steps"}
    assert not checked.valid


def test_overrides_rules_between_keys_judge_only_sound_values() -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    checked = check_overrides(
        {"encryption_spec_key_name": key, "location": "mars-north1"}, has_eval=True
    )
    # The location is refused once, for itself, not again as a CMEK location.
    assert [p.kind for p in checked.problems] == [ProblemKind.INVALID_VALUE]


def test_overrides_normalizing_is_idempotent() -> None:
    raw = {
        "train_steps": 300.0,
        "enable_checkpoint_selection": "True",
        "accelerator_type": "tpu",
        "task": " Summarization ",
        "min_eval_predictions": 200.0,
    }
    once = check_overrides(raw, has_eval=True)
    assert once.valid
    assert check_overrides(once.values, has_eval=True).values == once.values


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("promotion_tolerance", 0.05, None),
        ("promotion_tolerance", 1.5, "a number from 0 to 1"),
        ("promotion_confidence", 0.99, None),
        ("promotion_confidence", 1.0, "a number from 0.5 to below 1"),
        ("bootstrap_resamples", 500, None),
        ("bootstrap_resamples", 50, "an integer"),
        ("max_class_regression", -0.1, "a number from 0 to 1"),
        ("min_task_score", 0.8, None),
    ],
)
def test_overrides_evaluation_thresholds_need_no_eval_set(
    key: str, value: Any, expected: str | None
) -> None:
    checked = check_overrides({key: value}, has_eval=False)
    messages = [problem.message for problem in checked.errors]
    if expected is None:
        assert messages == [] and checked.values[key] == value
    else:
        assert len(messages) == 1 and expected in messages[0]
