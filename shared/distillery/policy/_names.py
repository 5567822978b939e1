"""Names a job gets: its model's display name, its output directory and its ``pipelineJobId``."""

from __future__ import annotations

import hashlib
import json
import re

from distillery.core.settings import Settings
from distillery.facts import DISPLAY_NAME_MAX, LABEL_MAX, PIPELINE_JOB_ID_PATTERN

MODEL_NAME_SUFFIX = "-distilled"
#: pipelineJobId: a readable prefix (≤ JOB_ID_PREFIX_MAX) + "-" + JOB_ID_HASH_CHARS hex digits.
JOB_ID_PREFIX_MAX = 48
JOB_ID_HASH_CHARS = 24
#: :data:`distillery.facts.PIPELINE_JOB_ID_PATTERN` anchored at both ends, so ``match`` judges a
#: whole id (``\Z``, unlike ``$``, refuses a trailing newline).
JOB_ID_PATTERN = re.compile(rf"(?:{PIPELINE_JOB_ID_PATTERN.pattern})\Z")


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def default_model_display_name(dataset_uri: str) -> str:
    """``gs://b/validated/<sha>/news.jsonl`` → ``news-distilled``.

    Lower-case letters, digits and dashes only (safe as a Vertex model and endpoint display name
    and readable in a pipelineJobId), at most 128 characters.
    """
    base = dataset_uri.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".jsonl", ".json"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    stem = slug(base)[: DISPLAY_NAME_MAX - len(MODEL_NAME_SUFFIX)].strip("-") or "dataset"
    return f"{stem}{MODEL_NAME_SUFFIX}"


def output_directory(settings: Settings, model_display_name: str) -> str:
    """The pipeline root of a model: ``gs://<bucket>/<pipeline root prefix><model slug>``."""
    name = slug(model_display_name) or "job"
    return f"gs://{settings.bucket}/{settings.pipeline_root_prefix}{name}"


def job_id(*, source_identity: str, request_id: str, dataset_name: str) -> str:
    """The deterministic Vertex ``pipelineJobId`` of one request (``[a-z][-a-z0-9]{0,127}``).

    The id is the request's identity, never its resolved plan: the plan depends on settings and
    on usage at the moment it is resolved, and a redelivery must find the same job. It is a
    readable prefix (the default model display name of ``dataset_name``, the dataset's file),
    then the first 24 hex digits of the SHA-256 of the canonical JSON of the validated dataset's
    identity (``source_identity``, e.g. ``bucket/object#generation``) and ``request_id``. The
    same dataset and request id always give the same id; another dataset or request id gives
    another. What else the request asks (overrides, eval set, ``rerun_of``) is not part of it: a
    request id names one request per dataset, and the launcher refuses its reuse with another
    payload.

    Raises:
        ValueError: ``source_identity`` or ``request_id`` is empty.
    """
    if not source_identity or not request_id:
        raise ValueError("job_id needs a source_identity and a request_id")
    canonical = json.dumps(
        {"source": source_identity, "request_id": request_id},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:JOB_ID_HASH_CHARS]
    prefix = slug(default_model_display_name(dataset_name))[:JOB_ID_PREFIX_MAX].strip("-")
    if not prefix[:1].isalpha():
        prefix = f"job-{prefix}".rstrip("-")
    return f"{prefix}-{digest}"


#: The label a gemini job carries its job id in (tuningJobs take no client-chosen id).
JOB_LABEL_KEY = "distillery-job-id"
#: The longest label value sent: Vertex AI's REST reference allows LABEL_MAX (64) characters,
#: Google Cloud's general label rules 63; the smaller fits both.
LABEL_VALUE_MAX = min(LABEL_MAX, 63)


def job_label(job_id: str) -> str:
    """The value of :data:`JOB_LABEL_KEY` for ``job_id``: the id itself when it fits a label.

    A label value holds at most :data:`LABEL_VALUE_MAX` lowercase letters, digits, dashes and
    underscores; a job id is already of those characters but may be longer (a
    48-character prefix, a dash and 24 hex digits). A longer id keeps its hash, which is what
    makes it unique, and loses the end of its readable prefix: still deterministic.

    Raises:
        ValueError: ``job_id`` is not a job id (:data:`JOB_ID_PATTERN`).
    """
    if JOB_ID_PATTERN.match(job_id) is None:
        raise ValueError(f"{job_id!r} is not a job id ([a-z][-a-z0-9]{{0,127}})")
    if len(job_id) <= LABEL_VALUE_MAX:
        return job_id
    prefix, _, digest = job_id.rpartition("-")
    keep = LABEL_VALUE_MAX - len(digest) - 1
    return f"{prefix[:keep].rstrip('-')}-{digest}" if keep > 0 else job_id[-LABEL_VALUE_MAX:]
