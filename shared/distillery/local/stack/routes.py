"""Which function each event reaches: the local stack's Eventarc triggers, in one table.

Production wires each Cloud Function to an Eventarc trigger (Terraform); locally the bridge does
the same from :data:`ROUTES`. Adding a function is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from distillery.core.settings import Settings

#: Eventarc's CloudEvent types for the two trigger kinds the product uses.
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"

#: The Settings fields naming the product's topics (each also gets ``<topic>-dlq``).
PRODUCT_TOPIC_SETTINGS: tuple[str, ...] = ("launch_topic", "job_events_topic", "status_topic")

#: Suffix of every dead-letter topic (ARCHITECTURE.md: ``<topic>-dlq``).
DEAD_LETTER_SUFFIX = "-dlq"


@dataclass(frozen=True)
class StorageFinalized:
    """Trigger: an object finalized (created or overwritten) in the stack's datasets bucket."""

    event_type: ClassVar[str] = STORAGE_FINALIZED


@dataclass(frozen=True)
class MessagePublished:
    """Trigger: a message published on a topic.

    Give either ``topic_setting`` (a :class:`~distillery.core.settings.Settings` field such as
    ``"launch_topic"``, so the topic follows the settings) or a literal ``topic`` name.
    """

    event_type: ClassVar[str] = MESSAGE_PUBLISHED

    topic_setting: str = ""
    topic: str = ""

    def __post_init__(self) -> None:
        if bool(self.topic_setting) == bool(self.topic):
            raise ValueError("MessagePublished needs exactly one of topic_setting or topic")

    def topic_name(self, settings: Settings) -> str:
        """The topic this trigger listens on under ``settings``.

        Raises:
            ValueError: ``topic_setting`` is not a string field of Settings.
        """
        if self.topic:
            return self.topic
        value = getattr(settings, self.topic_setting, None)
        if not isinstance(value, str) or not value:
            raise ValueError(f"Settings has no topic field {self.topic_setting!r}")
        return value


@dataclass(frozen=True)
class Scheduled:
    """Trigger: Cloud Scheduler calling an HTTP function every ``every_seconds``."""

    event_type: ClassVar[str] = "scheduled"
    every_seconds: int = 60


Trigger = StorageFinalized | MessagePublished | Scheduled


@dataclass(frozen=True)
class Route:
    """One function (its ``--target`` in the functions source) and the trigger that feeds it."""

    target: str
    trigger: Trigger

    @property
    def subscription(self) -> str:
        """The bridge's pull subscription for this route (one per route, as Eventarc has)."""
        return f"eventarc-local-{self.target}"


#: The product's triggers (one line each).
ROUTES: tuple[Route, ...] = (
    Route("validate_dataset", StorageFinalized()),
    Route("launch_job", MessagePublished(topic_setting="launch_topic")),
    Route("track_status", MessagePublished(topic_setting="job_events_topic")),
    Route("reconcile", Scheduled(every_seconds=30)),
    Route("poll_tuning_jobs", Scheduled(every_seconds=60)),
    Route("promote_model", MessagePublished(topic_setting="status_topic")),
)


def default_functions_source() -> Path:
    """``<repo>/functions/main.py``, found next to the (editable-installed) package's source."""
    import distillery

    return Path(distillery.__file__).resolve().parents[2] / "functions" / "main.py"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"
