"""The emulated Model Registry (``models`` get/list) and the local cache of model artifacts.

A model is registered by a successful job (see :mod:`distillery.local.emulator._training`); its
artifacts live in the bucket under ``artifactUri``. :class:`ArtifactCache` downloads them, through
the :class:`~distillery.core.ports.ObjectStore` port, into a local directory the first time a
predictor or a teacher needs them.

Every model has one version, ``"1"`` (alias ``default``): ``GET .../models/ID``, ``.../ID@1`` and
``.../ID@default`` answer it, another version is NOT_FOUND. The REST ``Model`` (what
``GET .../models/{id}`` answers)::

    {"name": "projects/P/locations/L/models/ID", "displayName": "<model_display_name>",
     "description": "...", "versionId": "1", "versionAliases": ["default"],
     "versionCreateTime", "versionUpdateTime", "createTime", "updateTime", "etag",
     "artifactUri": "gs://.../<job id>/model/",
     "pipelineJob": "projects/P/locations/L/pipelineJobs/JOB",
     "labels": {"google-vertex-llm-tuning-base-model-id": "text-bison-002",
                "google-vertex-llm-tuning-job-id": JOB,
                "distillery-pipeline-job": JOB, "distillery-dataset": "...",
                "distillery-dataset-generation": "...", "distillery-student": "...", ...},
     "metadata": {"studentModelReference", "teacherModelReference", "datasetUri",
                  "evaluationDataUri", "selectedStep"},  # no metrics, as on Google Cloud
     "modelSourceInfo": {"sourceType": "CUSTOM"},
     "supportedDeploymentResourcesTypes": ["AUTOMATIC_RESOURCES"],
     "deployedModels": [{"endpoint": "projects/P/locations/L/endpoints/E", "deployedModelId": D}]}
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from distillery.core.errors import DistilleryError
from distillery.core.ports import (
    DEFAULT_VERSION_ALIAS,
    FIRST_VERSION_ID,
    ObjectStore,
    split_model_version,
)
from distillery.local.emulator._model import now, rfc3339
from distillery.local.emulator._status import ApiError, FieldViolation

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
LABEL_VALUE_MAX = 63
_MODEL_NAME = re.compile(
    r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models/(?P<id>[^/@]+)(@[^/]+)?"
)
_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z_][\w.-]*)\s*(?P<op>!=|=)\s*(?P<value>\"[^\"]*\"|\S+)\s*"
)
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]+")


def label_value(text: str) -> str:
    """``text`` as a valid GCP label value: lowercase ``[a-z0-9_-]``, at most 63 characters.

    Invalid characters become ``-``; a value that had to be shortened ends with 8 characters of
    its SHA-256, so two long values stay distinct.
    """
    value = _LABEL_INVALID.sub("-", text.lower()).strip("-")
    if len(value) <= LABEL_VALUE_MAX:
        return value
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{value[: LABEL_VALUE_MAX - 9].rstrip('-')}-{digest}"


def split_model_name(name: str) -> tuple[str, str, str] | None:
    """``projects/P/locations/L/models/ID[@VERSION]`` → ``(P, L, ID)``; None for anything else."""
    match = _MODEL_NAME.fullmatch(name)
    return (match["project"], match["location"], match["id"]) if match else None


def encode_page_token(offset: int) -> str:
    """A page token: an offset into the listing order, opaque to clients."""
    import base64

    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_page_token(token: str) -> int:
    """The offset of a page token ("" → 0).

    Raises:
        ApiError: INVALID_ARGUMENT, not a token this emulator issued.
    """
    import base64
    import binascii

    if not token:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset" or not number.isdigit():
            raise ValueError(token)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            "INVALID_ARGUMENT",
            f"Invalid pageToken {token!r}",
            [FieldViolation("pageToken", "not a token from a previous list")],
        ) from None


def page_bounds(page_size: int, page_token: str) -> tuple[int, int]:
    """``(offset, size)`` of a list request.

    Raises:
        ApiError: INVALID_ARGUMENT, a negative size or a foreign token.
    """
    if page_size < 0:
        raise ApiError("INVALID_ARGUMENT", f"pageSize must not be negative, got {page_size}")
    return decode_page_token(page_token), min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def parse_simple_filter(text: str, fields: Sequence[str]) -> list[tuple[str, str, str]]:
    """``display_name="x" AND labels.k!=v`` → ``[(field, op, value)]`` over ``fields``/labels.

    Raises:
        ApiError: INVALID_ARGUMENT, an unsupported clause.
    """
    if not text.strip():
        return []
    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _CLAUSE.fullmatch(part)
        name = match["field"] if match else ""
        if match is None or not (
            name in fields or (name.startswith("labels.") and len(name) > len("labels."))
        ):
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Unsupported filter {part.strip()!r}: the emulator filters on "
                f"{', '.join(fields)} and labels.KEY with = or != joined by AND",
                [FieldViolation("filter", f"unsupported clause {part.strip()!r}")],
            )
        clauses.append((name, match["op"], match["value"].strip('"')))
    return clauses


def matches(
    values: Mapping[str, str], labels: Mapping[str, str], clause: tuple[str, str, str]
) -> bool:
    """Whether a resource with field ``values`` and ``labels`` satisfies ``clause``."""
    name, op, value = clause
    actual = labels.get(name[len("labels.") :]) if name.startswith("labels.") else values.get(name)
    return (actual == value) if op == "=" else (actual != value)


class Listable(Protocol):
    """What a listed emulator resource has: where it lives, its order, labels and REST shape."""

    @property
    def seq(self) -> int:
        """The creation order (newest is highest)."""
        ...

    @property
    def project(self) -> str:
        """The project the resource lives in."""
        ...

    @property
    def location(self) -> str:
        """The location the resource lives in."""
        ...

    @property
    def labels(self) -> Mapping[str, str]:
        """The resource's labels."""
        ...

    def resource(self) -> dict[str, Any]:
        """The REST representation."""
        ...


L = TypeVar("L", bound=Listable)


def list_page(
    items: Iterable[L],
    *,
    key: str,
    project: str,
    location: str,
    filter_fields: Sequence[str],
    values: Callable[[L], Mapping[str, str]],
    page_size: int,
    page_token: str,
    filter_text: str,
    parse_filter: Callable[[str], list[tuple[str, str, str]]] | None = None,
) -> dict[str, Any]:
    """One page of a ``list`` answer, ``{key: [...], "nextPageToken"?}``, newest first.

    The filter may name ``filter_fields`` (an item's ``values``) and ``labels.KEY``;
    ``parse_filter``, when given, parses it instead (to check values as well as fields).

    Raises:
        ApiError: INVALID_ARGUMENT for a bad page size, token or filter.
    """
    offset, size = page_bounds(page_size, page_token)
    if parse_filter is None:
        clauses = parse_simple_filter(filter_text, filter_fields)
    else:
        clauses = parse_filter(filter_text)
    found = [
        item
        for item in items
        if item.project == project
        and item.location == location
        and all(matches(values(item), item.labels, clause) for clause in clauses)
    ]
    found.sort(key=lambda item: item.seq, reverse=True)
    answer: dict[str, Any] = {key: [item.resource() for item in found[offset : offset + size]]}
    if offset + size < len(found):
        answer["nextPageToken"] = encode_page_token(offset + size)
    return answer


@dataclass
class RegisteredModel:
    """One Model Registry entry (guarded by the registry lock)."""

    seq: int
    project: str
    location: str
    model_id: str
    display_name: str
    artifact_uri: str
    #: Artifact paths relative to ``artifact_uri`` (the port cannot list a folder).
    files: tuple[str, ...]
    create_time: datetime
    labels: dict[str, str] = field(default_factory=dict)
    description: str = ""
    pipeline_job: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    #: ``(endpoint name, deployed model id)`` pairs, kept by the endpoint service.
    deployments: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``projects/P/locations/L/models/ID``."""
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"

    @property
    def version_id(self) -> str:
        """The model's only version: every model the emulator registers is a new model."""
        return FIRST_VERSION_ID

    @property
    def version_name(self) -> str:
        """``projects/P/locations/L/models/ID@1``: the name of this very version."""
        return f"{self.name}@{self.version_id}"

    def has_version(self, version: str) -> bool:
        """Whether ``version`` (an id or alias; ``default`` when a name has none) is this one's."""
        return version in (self.version_id, DEFAULT_VERSION_ALIAS)

    def resource(self) -> dict[str, Any]:
        """The REST ``Model``."""
        created = rfc3339(self.create_time)
        resource: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "description": self.description,
            "versionId": self.version_id,
            "versionAliases": [DEFAULT_VERSION_ALIAS],
            "versionCreateTime": created,
            "versionUpdateTime": created,
            "createTime": created,
            "updateTime": created,
            "etag": hashlib.sha256(f"{self.name}{len(self.deployments)}".encode()).hexdigest()[:16],
            "artifactUri": self.artifact_uri,
            "labels": dict(self.labels),
            "modelSourceInfo": {"sourceType": "CUSTOM"},
            "supportedDeploymentResourcesTypes": ["AUTOMATIC_RESOURCES"],
        }
        if self.pipeline_job:
            resource["pipelineJob"] = self.pipeline_job
        if self.metadata:
            resource["metadata"] = dict(self.metadata)
        if self.deployments:
            resource["deployedModels"] = [
                {"endpoint": endpoint, "deployedModelId": deployed}
                for endpoint, deployed in self.deployments
            ]
        return resource


class ModelRegistry:
    """The ``models`` collection, in memory and thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, RegisteredModel] = {}
        self._seq = itertools.count(1)
        # Numeric ids like the service's; the clock keeps them unique across emulator restarts.
        self._ids = itertools.count(int(time.time() * 1000) * 1000)

    def register(
        self,
        *,
        project: str,
        location: str,
        display_name: str,
        artifact_uri: str,
        files: Sequence[str],
        labels: Mapping[str, str] | None = None,
        description: str = "",
        pipeline_job: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> RegisteredModel:
        """Add a model; returns its entry (with its fresh numeric id)."""
        with self._lock:
            model = RegisteredModel(
                seq=next(self._seq),
                project=project,
                location=location,
                model_id=str(next(self._ids)),
                display_name=display_name,
                artifact_uri=artifact_uri if artifact_uri.endswith("/") else artifact_uri + "/",
                files=tuple(files),
                create_time=now(),
                labels=dict(labels or {}),
                description=description,
                pipeline_job=pipeline_job,
                metadata=dict(metadata or {}),
            )
            self._models[model.name] = model
        logger.info("model registered", extra={"model": model.name, "display_name": display_name})
        return model

    def find(self, name: str) -> RegisteredModel | None:
        """The model with resource name ``name``, or None.

        ``name`` may end in ``@VERSION``: ``@1`` (the version id) and ``@default`` (the alias)
        name the model's one version, as a name without a version does; another version is
        not found.
        """
        parts = split_model_name(name)
        if parts is None:
            return None
        version = split_model_version(name)[1]
        with self._lock:
            model = self._models.get(f"projects/{parts[0]}/locations/{parts[1]}/models/{parts[2]}")
        return model if model is not None and model.has_version(version) else None

    def require(self, name: str) -> RegisteredModel:
        """The model named ``name``.

        Raises:
            ApiError: NOT_FOUND.
        """
        model = self.find(name)
        if model is None:
            raise ApiError("NOT_FOUND", f"Model {name} is not found.")
        return model

    def resolve(self, reference: str, project: str) -> RegisteredModel | None:
        """A model named by resource name, or the newest of ``project`` with that display name."""
        if split_model_name(reference):
            return self.find(reference)
        with self._lock:
            candidates = [
                m
                for m in self._models.values()
                if m.project == project and m.display_name == reference
            ]
        return max(candidates, key=lambda m: m.seq) if candidates else None

    def get(self, project: str, location: str, model_id: str) -> dict[str, Any]:
        """``models.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        name = f"projects/{project}/locations/{location}/models/{model_id}"
        model = self.find(name)
        if model is None:
            raise ApiError("NOT_FOUND", f"Model {name} is not found.")
        with self._lock:
            return model.resource()

    def list(
        self,
        project: str,
        location: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter_text: str = "",
    ) -> dict[str, Any]:
        """``models.list``, newest first; filters on ``display_name``, ``model_id``, labels.

        Raises:
            ApiError: INVALID_ARGUMENT for a bad page size, token or filter.
        """
        with self._lock:
            return list_page(
                self._models.values(),
                key="models",
                project=project,
                location=location,
                filter_fields=("display_name", "model_id"),
                values=lambda m: {"display_name": m.display_name, "model_id": m.model_id},
                page_size=page_size,
                page_token=page_token,
                filter_text=filter_text,
            )

    def students(self) -> tuple[str, ...]:
        """The student model references the registered models were distilled into."""
        with self._lock:
            references = [m.metadata.get("studentModelReference") for m in self._models.values()]
        return tuple(sorted({str(r) for r in references if r}))

    def set_deployments(self, name: str, deployments: Sequence[tuple[str, str]]) -> None:
        """Record where model ``name`` is deployed (the endpoint service keeps this current)."""
        with self._lock:
            model = self._models.get(split_model_version(name)[0])
            if model is not None:
                model.deployments = list(deployments)


class ArtifactCache:
    """Model artifacts downloaded from the bucket into a local directory, once per model."""

    def __init__(self, object_store: ObjectStore, root: Path) -> None:
        self._store = object_store
        self._root = root
        self._lock = threading.Lock()
        self._ready: dict[str, Path] = {}

    def local_dir(self, model: RegisteredModel) -> Path:
        """The model's artifacts on local disk (downloaded on first use).

        Raises:
            DistilleryError: an artifact could not be read from the bucket (e.g.
                :class:`~distillery.core.errors.ObjectNotFoundError` when it was deleted).
        """
        with self._lock:
            if model.name in self._ready:
                return self._ready[model.name]
            target = self._root / "models" / model.model_id
            partial = target.with_name(f"{model.model_id}.{uuid.uuid4().hex[:8]}.partial")
            bucket, prefix = _split(model.artifact_uri)
            try:
                for relative in model.files:
                    destination = partial / relative
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with (
                        self._store.open_read(bucket, prefix + relative) as reader,
                        destination.open("wb") as writer,
                    ):
                        shutil.copyfileobj(reader, writer, 1 << 20)
                if target.exists():
                    shutil.rmtree(target)
                partial.rename(target)
            except (DistilleryError, OSError):
                shutil.rmtree(partial, ignore_errors=True)
                raise
            self._ready[model.name] = target
            logger.info(
                "model artifacts downloaded", extra={"model": model.name, "dir": str(target)}
            )
            return target


def _split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    return bucket, prefix
