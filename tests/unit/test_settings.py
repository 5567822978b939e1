from __future__ import annotations

import pytest

from distillery.core.errors import ConfigurationError
from distillery.core.settings import ENVIRONMENT, Settings


def test_settings_from_env_reads_public_names() -> None:
    settings = Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "p-1",
            "DISTILLERY_BUCKET": "b-1",
            "DISTILLERY_REGION": "europe-west4",
            "DISTILLERY_MAX_FINDINGS_PER_RULE": "5",
        }
    )
    assert (settings.project, settings.bucket, settings.region) == ("p-1", "b-1", "europe-west4")
    assert settings.max_findings_per_rule == 5
    assert settings.launch_topic == "distill-launch-requests"


def test_settings_from_env_overrides_win() -> None:
    settings = Settings.from_env({"DISTILLERY_BUCKET": "from-env"}, bucket="explicit")
    assert settings.bucket == "explicit"


def test_settings_rejects_unsupported_region() -> None:
    with pytest.raises(ConfigurationError, match="us-central1"):
        Settings.from_env({"DISTILLERY_REGION": "mars-north1"})


def test_settings_rejects_non_integer() -> None:
    with pytest.raises(ConfigurationError, match="DISTILLERY_MAX_FINDINGS_PER_RULE"):
        Settings.from_env({"DISTILLERY_MAX_FINDINGS_PER_RULE": "many"})


def test_settings_rejects_prefix_without_slash() -> None:
    with pytest.raises(ConfigurationError, match="DISTILLERY_REPORTS_PREFIX"):
        Settings.from_env({"DISTILLERY_REPORTS_PREFIX": "reports"})


def test_settings_rejects_overlapping_prefixes() -> None:
    with pytest.raises(ConfigurationError, match="never write where it is triggered"):
        Settings.from_env({"DISTILLERY_REPORTS_PREFIX": "datasets/reports/"})


def test_settings_require_names_missing_variables() -> None:
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT, DISTILLERY_BUCKET"):
        Settings.from_env({}).require("project", "bucket")


def test_settings_environment_names_are_unique() -> None:
    assert len(ENVIRONMENT) == len(set(ENVIRONMENT.values()))
    assert Settings.env_name("bucket") == "DISTILLERY_BUCKET"
