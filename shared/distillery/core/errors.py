"""The one error tree of Distillery.

Every error the library raises derives from :class:`DistilleryError`. The split that matters to an
event handler is explicit: a :class:`RetryableError` is raised so the event is redelivered; a
:class:`PermanentError` is recorded and the event acknowledged, never retried forever. Google API
errors are translated into this tree inside the adapters and never reach core code.
"""

from __future__ import annotations


class DistilleryError(Exception):
    """Root of every error raised by Distillery."""


class ConfigurationError(DistilleryError):
    """A setting is missing or malformed; nothing can run until it is fixed."""


class RetryableError(DistilleryError):
    """A transient fault: raise it so the event is delivered again."""


class ServiceUnavailableError(RetryableError):
    """A backing service (Storage, Pub/Sub, Firestore, Vertex AI) failed to answer or was busy."""


class ContentionError(RetryableError):
    """A concurrent writer won a compare-and-set; try the whole operation again."""


class PermanentError(DistilleryError):
    """A fault that retrying cannot fix: record it and acknowledge the event."""


class InvalidEventError(PermanentError):
    """An incoming CloudEvent or message does not have the documented shape."""


class ObjectNotFoundError(PermanentError):
    """A Cloud Storage object (or the generation an event names) does not exist."""


class PreconditionFailedError(DistilleryError):
    """A conditional write found the target in another state (e.g. the object already exists)."""


class AlreadyExistsError(PreconditionFailedError):
    """A create found the resource already there (for idempotent creates: success)."""


class QuotaExceededError(RetryableError):
    """The service is out of quota or capacity for now (RESOURCE_EXHAUSTED)."""


class RequestRejectedError(PermanentError):
    """The service refused a request as invalid (INVALID_ARGUMENT, FAILED_PRECONDITION)."""
