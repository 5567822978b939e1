"""The local Eventarc bridge's configuration (written by the stack, read by the bridge process).

Kept apart from :mod:`distillery.local.stack.bridge` so importing the package never imports the
module that ``python -m distillery.local.stack.bridge`` runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

#: Route kinds in the bridge configuration.
KIND_STORAGE = "storage"
KIND_PUBSUB = "pubsub"


@dataclass(frozen=True)
class BridgeRoute:
    """One route, resolved: where to pull, what to convert to, where to POST."""

    target: str
    kind: str
    #: Short names (the project is the bridge's).
    subscription: str
    topic: str
    url: str


@dataclass(frozen=True)
class BridgeSchedule:
    """A scheduled HTTP function: POSTed to every ``every_seconds`` (local Cloud Scheduler)."""

    target: str
    url: str
    every_seconds: int


@dataclass(frozen=True)
class BridgeConfig:
    """Everything the bridge process needs, written as JSON by the stack."""

    project: str
    bucket: str
    pubsub_host: str
    status_port: int
    routes: tuple[BridgeRoute, ...]
    #: Deliveries in flight per route.
    concurrency: int = 4
    #: Backoff before redelivery: ``min(max, base * 2 ** (attempt - 1))`` seconds.
    backoff_base_seconds: int = 1
    max_backoff_seconds: int = 60
    #: How long a function may take to answer (below the subscription's ack deadline).
    request_timeout_seconds: float = 540.0
    schedules: tuple[BridgeSchedule, ...] = ()

    def to_json(self) -> str:
        """The configuration as JSON text."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path) -> BridgeConfig:
        """Read the configuration :meth:`to_json` wrote.

        Raises:
            OSError: the file cannot be read.
            ValueError, KeyError, TypeError: it is not a bridge configuration.
        """
        raw = json.loads(path.read_text())
        routes = tuple(BridgeRoute(**route) for route in raw.pop("routes"))
        schedules = tuple(BridgeSchedule(**item) for item in raw.pop("schedules", []))
        return cls(routes=routes, schedules=schedules, **raw)
