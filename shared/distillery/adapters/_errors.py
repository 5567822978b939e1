"""The one translation of Google API and transport errors into the Distillery error tree.

Every adapter applies :func:`translate_google_errors` around each call it makes, and nothing
else: the same Google error means the same Distillery error in Storage, Pub/Sub, Firestore and
Vertex AI, so an event handler decides the same way (retry, or record and acknowledge) whichever
service answered. An adapter that must act on a Google error itself (a compare-and-set that lost)
catches it inside the ``with`` block, before it is translated.

=========================================  ====================================  ==========
Google error (HTTP status)                 Distillery error                      retried
=========================================  ====================================  ==========
400 InvalidArgument, FailedPrecondition,   :class:`RequestRejectedError`          no
OutOfRange (a request refused as invalid)
401 Unauthenticated, 403 PermissionDenied  :class:`ConfigurationError`            yes (*)
400 FailedPrecondition "requires an index" :class:`ConfigurationError`            yes (*)
404 NotFound                               :class:`ObjectNotFoundError`           no
409 Aborted (a concurrent writer won)      :class:`ContentionError`               yes
409 AlreadyExists, Conflict                :class:`AlreadyExistsError`            (**)
412 PreconditionFailed                     :class:`PreconditionFailedError`       (**)
429 ResourceExhausted, TooManyRequests     :class:`QuotaExceededError`            yes
499 Cancelled, 5xx, deadlines, retries     :class:`ServiceUnavailableError`       yes
given up, connection failures and timeouts
any other 4xx                              :class:`RequestRejectedError`          no
=========================================  ====================================  ==========

(*) An operator fixes permissions and indexes, after which a redelivery succeeds: the event is
kept.
(**) A conditional write that found the target in another state: the caller decides what it means.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from distillery.core.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ContentionError,
    DistilleryError,
    ObjectNotFoundError,
    PreconditionFailedError,
    QuotaExceededError,
    RequestRejectedError,
    ServiceUnavailableError,
)


def translate(exc: BaseException, what: str) -> DistilleryError | None:
    """The Distillery error for ``exc`` met while doing ``what``; None when it is not Google's.

    The order matters: subclasses (Aborted, a Conflict) come before their parents.
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from requests import exceptions as requests_exc

    message = exc.message if isinstance(exc, gexc.GoogleAPICallError) else str(exc)
    if isinstance(exc, gexc.NotFound):
        return ObjectNotFoundError(f"{what}: not found ({message})")
    if isinstance(exc, gexc.PreconditionFailed):
        return PreconditionFailedError(f"{what}: precondition failed ({message})")
    if isinstance(exc, gexc.Aborted):
        return ContentionError(f"{what}: aborted by a concurrent writer ({message})")
    if isinstance(exc, gexc.Conflict):
        return AlreadyExistsError(f"{what}: already exists ({message})")
    if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
        return ConfigurationError(f"{what}: permission denied ({message})")
    if isinstance(exc, gexc.TooManyRequests):
        return QuotaExceededError(f"{what}: out of quota for now ({message})")
    if isinstance(exc, gexc.FailedPrecondition) and "requires an index" in message:
        # Firestore's answer to a query whose composite index is not deployed: fixed by a
        # deployment, after which the event succeeds, so it must be kept, not rejected.
        return ConfigurationError(f"{what}: a Firestore index is missing ({message})")
    if isinstance(exc, gexc.BadRequest):
        return RequestRejectedError(f"{what}: rejected as invalid ({message})")
    if isinstance(
        exc,
        gexc.Cancelled
        | gexc.ServerError
        | gexc.RetryError
        | requests_exc.ConnectionError
        | requests_exc.Timeout
        | auth_exc.TransportError
        | ConnectionError
        | TimeoutError,
    ):
        return ServiceUnavailableError(f"{what}: service unavailable ({message})")
    if isinstance(exc, gexc.ClientError):
        return RequestRejectedError(f"{what}: rejected ({exc.code} {message})")
    if isinstance(exc, gexc.GoogleAPICallError):
        # A status the table above does not know of is not worth losing an event over.
        return ServiceUnavailableError(f"{what}: unexpected answer ({exc.code} {message})")
    return None


@contextlib.contextmanager
def translate_google_errors(what: str) -> Iterator[None]:
    """Re-raise Google API and transport errors met while doing ``what`` as Distillery errors.

    Raises:
        DistilleryError: the error of the module's table (the Google error is its ``__cause__``).
    """
    try:
        yield
    except DistilleryError:
        raise
    except Exception as exc:
        translated = translate(exc, what)
        if translated is None:
            raise
        raise translated from exc
