"""One settings object, built from the environment.

Every environment variable the product reads is named exactly once, in :data:`ENVIRONMENT`.
Explicit arguments beat the environment: build :class:`Settings` directly in tests and tools.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.errors import ConfigurationError

#: Pipeline job regions that support distillation (SPEC: "Regions and accelerators").
SUPPORTED_REGIONS: tuple[str, ...] = (
    "us-central1",
    "europe-west4",
    "asia-southeast1",
    "us-west1",
    "europe-west3",
    "europe-west2",
    "asia-northeast1",
    "us-east4",
    "us-west4",
    "northamerica-northeast1",
    "europe-west9",
    "europe-west1",
    "asia-northeast3",
)


def _env(name: str, **kwargs: Any) -> Any:
    """A dataclass field read from environment variable ``name``."""
    metadata = {"env": name}
    return field(metadata=metadata, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the production defaults of ARCHITECTURE.md."""

    project: str = _env("GOOGLE_CLOUD_PROJECT", default="")
    bucket: str = _env("DISTILLERY_BUCKET", default="")
    region: str = _env("DISTILLERY_REGION", default="us-central1")
    #: Unset in production; the local Vertex AI emulator's URL locally.
    vertex_api_endpoint: str = _env("DISTILLERY_VERTEX_API_ENDPOINT", default="")

    launch_topic: str = _env("DISTILLERY_LAUNCH_TOPIC", default="distill-launch-requests")
    job_events_topic: str = _env("DISTILLERY_JOB_EVENTS_TOPIC", default="distill-job-events")
    status_topic: str = _env("DISTILLERY_STATUS_TOPIC", default="distill-job-status")

    datasets_collection: str = _env("DISTILLERY_DATASETS_COLLECTION", default="datasets")
    jobs_collection: str = _env("DISTILLERY_JOBS_COLLECTION", default="jobs")
    models_collection: str = _env("DISTILLERY_MODELS_COLLECTION", default="models")
    #: Events that could not be parsed at all are recorded here (then acknowledged).
    failures_collection: str = _env("DISTILLERY_FAILURES_COLLECTION", default="failed_events")

    datasets_prefix: str = _env("DISTILLERY_DATASETS_PREFIX", default="datasets/")
    validated_prefix: str = _env("DISTILLERY_VALIDATED_PREFIX", default="validated/")
    reports_prefix: str = _env("DISTILLERY_REPORTS_PREFIX", default="reports/")
    pipeline_root_prefix: str = _env("DISTILLERY_PIPELINE_ROOT_PREFIX", default="pipeline-root/")

    #: How many findings of one rule a report lists before it only counts the rest.
    max_findings_per_rule: int = _env("DISTILLERY_MAX_FINDINGS_PER_RULE", default=20)
    #: A claim on a dataset's launch older than this is taken over by a redelivered event.
    launch_claim_seconds: int = _env("DISTILLERY_LAUNCH_CLAIM_SECONDS", default=120)

    log_level: str = _env("DISTILLERY_LOG_LEVEL", default="INFO")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises:
            ConfigurationError: a variable holds a value of the wrong type.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name not in environ or environ[name] == "":
                continue
            raw = environ[name]
            if f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
            else:
                values[f.name] = raw
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`ConfigurationError` when a value breaks a rule."""
        for f in dataclasses.fields(self):
            if f.name.endswith("_prefix"):
                value = getattr(self, f.name)
                if not value.endswith("/") or value.startswith("/"):
                    raise ConfigurationError(
                        f"{f.metadata['env']} must be a folder like 'datasets/', got {value!r}"
                    )
        written = [self.validated_prefix, self.reports_prefix, self.pipeline_root_prefix]
        for prefix in written:
            if prefix.startswith(self.datasets_prefix) or self.datasets_prefix.startswith(prefix):
                raise ConfigurationError(
                    f"the prefix {prefix!r} overlaps the watched {self.datasets_prefix!r}: "
                    "a function must never write where it is triggered"
                )
        if self.region not in SUPPORTED_REGIONS:
            raise ConfigurationError(
                f"DISTILLERY_REGION {self.region!r} is not a distillation region; "
                f"use one of: {', '.join(SUPPORTED_REGIONS)}"
            )
        if self.max_findings_per_rule < 1:
            raise ConfigurationError("DISTILLERY_MAX_FINDINGS_PER_RULE must be at least 1")

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigurationError` naming every empty setting among ``names``."""
        missing = [
            f.metadata["env"]
            for f in dataclasses.fields(self)
            if f.name in names and not getattr(self, f.name)
        ]
        if missing:
            raise ConfigurationError(f"required settings are not set: {', '.join(missing)}")

    @staticmethod
    def env_name(field_name: str) -> str:
        """The environment variable behind settings field ``field_name``."""
        for f in dataclasses.fields(Settings):
            if f.name == field_name:
                return str(f.metadata["env"])
        raise KeyError(field_name)


#: Environment variable name → settings field, for tools that print or pass the environment.
ENVIRONMENT: dict[str, str] = {f.metadata["env"]: f.name for f in dataclasses.fields(Settings)}

#: The official clients' emulator variables (read by the clients themselves, not by us).
EMULATOR_VARIABLES: tuple[str, ...] = (
    "STORAGE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
)
