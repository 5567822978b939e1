"""What the benchmarks share about a running local stack: plain HTTP to its services, uploads to
its bucket, and the library's own Google adapters pointed at it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillery.core.runtime import Dependencies
    from distillery.local.stack import Stack

#: The folder of the benchmarks (functions-framework sources live here too).
BENCH_DIR = Path(__file__).resolve().parent


def request(method: str, url: str, payload: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """An HTTP request to a local service: (status, body); status 0 when nothing answered."""
    from distillery.local.stack.processes import local_request

    return local_request(method, url, payload, timeout)


def upload(
    storage_url: str, bucket: str, name: str, data: bytes, content_type: str
) -> dict[str, Any]:
    """Upload ``data`` as ``name`` (JSON API media upload); the object resource it returns.

    Raises:
        urllib.error.URLError: the upload failed.
    """
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    quoted = urllib.parse.quote(bucket, safe="")
    message = urllib.request.Request(
        f"{storage_url}/upload/storage/v1/b/{quoted}/o?{query}",
        data=data,
        headers={"Content-Type": content_type},
        method="POST",
    )
    with urllib.request.urlopen(message, timeout=30) as response:
        resource: dict[str, Any] = json.loads(response.read())
    return resource


def library(stack: Stack) -> Dependencies:
    """The library's Google adapters (records, objects, publisher, Vertex AI) for ``stack``.

    This process's environment becomes the stack's client environment (what ``eval "$(distillery
    dev env)"`` does for a shell), since the official clients find the emulators there.

    Raises:
        ConfigurationError: a setting in the environment is malformed.
    """
    from distillery.core.runtime import google_dependencies
    from distillery.core.settings import Settings

    os.environ.update(stack.env)
    return google_dependencies(Settings.from_env())
