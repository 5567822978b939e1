"""Immutable labeling files: written once, create-only, and the same bytes on every pass.

Every file of a labeling run is made deterministically from what the job record froze and what
the batch job wrote, so a pass that crashed after writing one writes the same bytes again: an
existing object with those bytes is this run's, and one with other bytes is a conflict (someone
wrote there, or the run's inputs changed), which is refused rather than overwritten. The object
store port carries no custom metadata, so the lineage is a file of its own beside the labeled set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from distillery.core.errors import PermanentError, PreconditionFailedError
from distillery.core.models import split_gcs_uri
from distillery.core.ports import ObjectStore


class ArtifactConflictError(PermanentError):
    """A labeling file exists already with other bytes than this run makes."""


@dataclass(frozen=True)
class Written:
    """One labeling file as it stands in the store."""

    uri: str
    sha256: str
    size: int


def sha256_of(objects: ObjectStore, uri: str) -> str:
    """The SHA-256 of the object at ``uri`` (streamed).

    Raises:
        ObjectNotFoundError: there is no such object.
    """
    bucket, name = split_gcs_uri(uri)
    digest = hashlib.sha256()
    with objects.open_read(bucket, name) as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_once(
    objects: ObjectStore, uri: str, data: bytes, *, content_type: str = "application/jsonl"
) -> Written:
    """Create ``uri`` holding ``data``, or accept the object there when it holds ``data``.

    Raises:
        ArtifactConflictError: the object exists with other bytes (left as it is).
        RetryableError: the store failed; writing again is safe.
    """
    bucket, name = split_gcs_uri(uri)
    wanted = hashlib.sha256(data).hexdigest()
    try:
        objects.write_bytes(bucket, name, data, content_type=content_type, if_absent=True)
    except PreconditionFailedError:
        found = sha256_of(objects, uri)
        if found != wanted:
            raise ArtifactConflictError(
                f"{uri} already exists with other bytes (sha256 {found[:12]}…, this run makes "
                f"{wanted[:12]}…); labeling files are never overwritten: delete it if it is "
                "not this job's, or rerun the job"
            ) from None
    return Written(uri=uri, sha256=wanted, size=len(data))
