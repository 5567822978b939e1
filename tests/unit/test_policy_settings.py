"""The launch-policy settings: parsing from the environment and the rules they must follow."""

from __future__ import annotations

import pytest

from distillery.core.errors import ConfigurationError
from distillery.core.settings import Settings
from distillery.facts import SUPPORTED_REGIONS


def test_policy_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.teacher_model == "text-unicorn@001"
    assert settings.student_model == "text-bison@002"
    assert settings.template_uri == (
        "https://us-kfp.pkg.dev/ml-pipeline/distillation/distillation/v1.0.0"
    )
    assert settings.accelerator_list == ("GPU",)
    assert settings.allowed_region_list == SUPPORTED_REGIONS
    assert settings.long_context_student_list == ("text-bison-32k@002",)
    assert (settings.require_cmek, settings.cmek_key, settings.service_account) == (False, "", "")
    assert (settings.max_concurrent_jobs, settings.max_train_steps) == (0, 0)
    assert settings.daily_accelerator_hours == 0.0


def test_policy_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "DISTILLERY_ACCELERATORS": "tpu, GPU",
            "DISTILLERY_ALLOWED_REGIONS": "europe-west4,europe-west1",
            "DISTILLERY_DATA_RESIDENCY": "eu",
            "DISTILLERY_REQUIRE_CMEK": "yes",
            "DISTILLERY_DAILY_ACCELERATOR_HOURS": "120.5",
            "DISTILLERY_MAX_CONCURRENT_JOBS": "3",
            "DISTILLERY_LONG_CONTEXT_STUDENTS": "a@1,b@2",
        }
    )
    assert settings.accelerator_list == ("TPU", "GPU")
    assert settings.allowed_region_list == ("europe-west4", "europe-west1")
    assert settings.data_residency == "eu"
    assert settings.require_cmek is True
    assert settings.daily_accelerator_hours == 120.5
    assert settings.max_concurrent_jobs == 3
    assert settings.long_context_student_list == ("a@1", "b@2")


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("TRUE", True), ("off", False)])
def test_policy_settings_booleans(raw: str, value: bool) -> None:
    assert Settings.from_env({"DISTILLERY_REQUIRE_CMEK": raw}).require_cmek is value


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({"DISTILLERY_REQUIRE_CMEK": "maybe"}, "DISTILLERY_REQUIRE_CMEK", id="bool"),
        pytest.param(
            {"DISTILLERY_DAILY_ACCELERATOR_HOURS": "lots"},
            "DISTILLERY_DAILY_ACCELERATOR_HOURS",
            id="float",
        ),
        pytest.param({"DISTILLERY_ACCELERATORS": "GPU,FPGA"}, "DISTILLERY_ACCELERATORS", id="acc"),
        pytest.param({"DISTILLERY_ACCELERATORS": "GPU,gpu"}, "repeats", id="acc-repeat"),
        pytest.param({"DISTILLERY_ACCELERATORS": " , "}, "DISTILLERY_ACCELERATORS", id="acc-empty"),
        pytest.param(
            {"DISTILLERY_ALLOWED_REGIONS": "us-central1,mars-north1"},
            "mars-north1",
            id="region",
        ),
        pytest.param({"DISTILLERY_DATA_RESIDENCY": "moon"}, "DISTILLERY_DATA_RESIDENCY", id="res"),
        pytest.param(
            {"DISTILLERY_MAX_CONCURRENT_JOBS": "-1"}, "DISTILLERY_MAX_CONCURRENT_JOBS", id="neg"
        ),
    ],
)
def test_policy_settings_rejects(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(environ)
