"""Translation of Google API and transport errors into the Distillery error tree (once, here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from distillery.core.errors import (
    ConfigurationError,
    ContentionError,
    ObjectNotFoundError,
    PreconditionFailedError,
    ServiceUnavailableError,
)


@contextlib.contextmanager
def translate_google_errors(what: str) -> Iterator[None]:
    """Re-raise Google API errors met while doing ``what`` as Distillery errors.

    Raises:
        ObjectNotFoundError: 404.
        PreconditionFailedError: 412 (a conditional write lost).
        ContentionError: 409 Aborted (a transaction lost to a concurrent writer).
        ConfigurationError: 401/403 (credentials or permissions) and 400 (a request we built wrong).
        ServiceUnavailableError: 429, 5xx, timeouts and connection failures (transient).
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from requests import exceptions as requests_exc

    try:
        yield
    except gexc.NotFound as exc:
        raise ObjectNotFoundError(f"{what}: not found ({exc.message})") from exc
    except gexc.PreconditionFailed as exc:
        raise PreconditionFailedError(f"{what}: precondition failed ({exc.message})") from exc
    except gexc.Aborted as exc:
        raise ContentionError(f"{what}: aborted by a concurrent writer ({exc.message})") from exc
    except (gexc.Unauthorized, gexc.Forbidden) as exc:
        raise ConfigurationError(f"{what}: permission denied ({exc.message})") from exc
    except (
        gexc.TooManyRequests,
        gexc.ServerError,
        gexc.RetryError,
        gexc.DeadlineExceeded,
        requests_exc.ConnectionError,
        requests_exc.Timeout,
        auth_exc.TransportError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise ServiceUnavailableError(f"{what}: service unavailable ({exc})") from exc
    except gexc.BadRequest as exc:
        raise ConfigurationError(f"{what}: rejected as a bad request ({exc.message})") from exc
