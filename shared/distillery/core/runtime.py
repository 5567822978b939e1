"""What every Cloud Function entry point shares: logging, dependencies, failure handling.

An entry point is an adapter (STYLE.md): it parses the event, calls one service function and maps
the outcome. :func:`run_handler` holds the mapping once:

- success, or an event that is not ours → return (2xx: acknowledged);
- :class:`~distillery.core.errors.PermanentError` (bad input, malformed event) → recorded in the
  failures collection, logged at ERROR and acknowledged — never retried forever; when the record
  cannot be written, the event is not acknowledged (re-raised, as below), so it is not lost;
- anything else (transient faults, misconfiguration, bugs) → logged and re-raised, so the
  framework answers 500 and the event is delivered again (and dead-lettered after the
  subscription's attempts), so nothing is lost.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from distillery.core.errors import DistilleryError, PermanentError
from distillery.core.events import CloudEventLike, event_identity
from distillery.core.logs import log_context, setup_logging
from distillery.core.ports import (
    BatchPredictions,
    ModelEndpoints,
    ObjectStore,
    Publisher,
    RecordStore,
    TuningJobs,
    VertexPipelines,
)
from distillery.core.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Dependencies:
    """The ports and settings a service function works with (injected; fakes in unit tests)."""

    settings: Settings
    objects: ObjectStore
    records: RecordStore
    publisher: Publisher
    vertex: VertexPipelines | None = None
    endpoints: ModelEndpoints | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Vertex AI tuning jobs (the gemini backend).
    tuning: TuningJobs | None = None
    #: Vertex AI batch prediction jobs (the Gemini teacher that labels a dataset).
    batch: BatchPredictions | None = None

    def require_vertex(self) -> VertexPipelines:
        """The Vertex AI port (only the functions that talk to Vertex AI are given one).

        Raises:
            ConfigurationError: none was configured.
        """
        if self.vertex is None:
            from distillery.core.errors import ConfigurationError

            raise ConfigurationError("this function was built without a Vertex AI client")
        return self.vertex

    def require_tuning(self) -> TuningJobs:
        """The Vertex AI tuning jobs port (the gemini backend's jobs).

        Raises:
            ConfigurationError: none was configured.
        """
        if self.tuning is None:
            from distillery.core.errors import ConfigurationError

            raise ConfigurationError("this function was built without a Vertex AI tuning client")
        return self.tuning

    def require_batch(self) -> BatchPredictions:
        """The Vertex AI batch prediction jobs port (the teacher that labels a training set).

        Raises:
            ConfigurationError: none was configured.
        """
        if self.batch is None:
            from distillery.core.errors import ConfigurationError

            raise ConfigurationError(
                "this function was built without a Vertex AI batch prediction client"
            )
        return self.batch

    def require_endpoints(self) -> ModelEndpoints:
        """The Vertex AI endpoints port (only the functions that manage endpoints use it).

        Raises:
            ConfigurationError: none was configured.
        """
        if self.endpoints is None:
            from distillery.core.errors import ConfigurationError

            raise ConfigurationError("this function was built without a Vertex AI endpoints client")
        return self.endpoints


@functools.cache
def default_dependencies() -> Dependencies:
    """Dependencies built from the environment with the Google Cloud adapters (once a process).

    Built on the first event, not at import, so a cold start pays only for what it uses.

    Raises:
        ConfigurationError: a required setting is missing.
    """
    settings = Settings.from_env()
    settings.require("project", "bucket")
    setup_logging(settings.log_level)
    return google_dependencies(settings)


def google_dependencies(settings: Settings) -> Dependencies:
    """The Google Cloud adapters for ``settings`` (the emulators, where the environment says so).

    Raises:
        ConfigurationError: the project is not set.
    """
    from distillery.adapters import FirestoreRecordStore, GcsObjectStore, PubsubPublisher
    from distillery.adapters.batch import VertexBatchPredictionsAdapter
    from distillery.adapters.tuning import VertexTuningJobsAdapter
    from distillery.adapters.vertex import VertexModelEndpointsAdapter, VertexPipelineAdapter

    return Dependencies(
        settings=settings,
        objects=GcsObjectStore(project=settings.project),
        records=FirestoreRecordStore(settings.project),
        publisher=PubsubPublisher(settings.project),
        # Cheap to build: the Vertex AI client itself is imported and made on first use.
        vertex=VertexPipelineAdapter(settings.project, api_endpoint=settings.vertex_api_endpoint),
        endpoints=VertexModelEndpointsAdapter(
            settings.project, api_endpoint=settings.vertex_api_endpoint
        ),
        tuning=VertexTuningJobsAdapter(settings.project, api_endpoint=settings.vertex_api_endpoint),
        batch=VertexBatchPredictionsAdapter(
            settings.project, api_endpoint=settings.vertex_api_endpoint
        ),
    )


def failure_id(identity: dict[str, str]) -> str:
    """A Firestore-safe document id for a failed event (stable across redeliveries)."""
    raw = identity.get("id") or repr(sorted(identity.items()))
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)[:80].strip("-.") or "event"
    digest = hashlib.sha256(f"{identity.get('source', '')}|{raw}".encode()).hexdigest()[:12]
    return f"{readable}-{digest}"


#: How much of an error's text a failure record keeps (a document is limited to 1 MiB).
MAX_REASON_CHARS = 4000


def record_failure(
    deps: Dependencies, function: str, identity: dict[str, str], error: DistilleryError
) -> None:
    """Store a permanently failed event in the failures collection.

    Raises:
        DistilleryError: the record could not be written. The caller must not acknowledge the
            event then: redelivered, it is recorded on a later attempt or dead-lettered in the
            end, never lost.
    """
    document = {
        "function": function,
        "event": identity,
        "error": type(error).__name__,
        "reason": str(error)[:MAX_REASON_CHARS],
        "recorded_at": deps.clock().isoformat(),
    }
    deps.records.set(deps.settings.failures_collection, failure_id(identity), document)


def run_handler(
    function: str,
    event: CloudEventLike,
    handle: Callable[[CloudEventLike, Dependencies], Any],
    deps: Dependencies | None = None,
) -> Any:
    """Run ``handle`` for one event with the failure policy described in the module docstring.

    Raises:
        Exception: any error that is not permanent, and any error writing the failure record of
            a permanent one, so the event is redelivered (and dead-lettered in the end).
    """
    identity = event_identity(event)
    dependencies = deps or default_dependencies()
    with log_context(function=function, event_id=identity.get("id", "")):
        try:
            result = handle(event, dependencies)
        except PermanentError as exc:
            logger.error(
                "event rejected permanently: %s",
                exc,
                extra={"event": identity, "error": type(exc).__name__},
            )
            try:
                record_failure(dependencies, function, identity, exc)
            except Exception:
                # Acknowledged unrecorded, the event would be lost: have it delivered again.
                logger.exception(
                    "could not record the rejected event; it will be delivered again",
                    extra={"event": identity, "error": type(exc).__name__},
                )
                raise
            return None
        except Exception:
            logger.exception("event failed; it will be delivered again", extra={"event": identity})
            raise
        return result
