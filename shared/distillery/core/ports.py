"""The ports: the small interfaces core code talks to.

Google Cloud adapters (:mod:`distillery.adapters`) implement them with the official clients, the
in-memory fakes (:mod:`distillery.fakes`) implement them for fast tests. Adapters translate every
Google API error into :mod:`distillery.core.errors`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    """What the product needs to know of one stored object generation."""

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str | None = None

    @property
    def uri(self) -> str:
        """``gs://bucket/name``."""
        return f"gs://{self.bucket}/{self.name}"


class ObjectStore(ABC):
    """Cloud Storage, as the product uses it."""

    @abstractmethod
    def stat(self, bucket: str, name: str, generation: int | None = None) -> ObjectInfo:
        """The object (its live generation, or exactly ``generation``).

        Raises:
            ObjectNotFoundError: no such object or generation.
        """

    @abstractmethod
    def open_read(
        self, bucket: str, name: str, generation: int | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """A streaming binary reader over the object; the whole object is never held in memory.

        Raises:
            ObjectNotFoundError: no such object or generation.
        """

    @abstractmethod
    def write_bytes(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Store ``data`` at ``name`` (only when nothing is there, with ``if_absent``).

        Raises:
            PreconditionFailedError: ``if_absent`` and the object exists.
        """

    @abstractmethod
    def copy(
        self,
        bucket: str,
        name: str,
        generation: int,
        dest_bucket: str,
        dest_name: str,
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Copy one exact generation to ``dest_name`` (only when absent, with ``if_absent``).

        Raises:
            ObjectNotFoundError: the source generation is gone.
            PreconditionFailedError: ``if_absent`` and the destination exists.
        """

    @abstractmethod
    def list_names(self, bucket: str, prefix: str) -> list[str]:
        """The names of the live objects in ``bucket`` whose names start with ``prefix``, sorted
        (every level below it: a flat listing, no directory emulation).

        Raises:
            ObjectNotFoundError: no such bucket.
        """

    def read_bytes(
        self, bucket: str, name: str, generation: int | None = None, *, limit: int = 1 << 20
    ) -> bytes:
        """A small object's content, at most ``limit`` bytes (for sidecars, not datasets).

        Raises:
            ObjectNotFoundError: no such object or generation.
            ValueError: the object is larger than ``limit``.
        """
        with self.open_read(bucket, name, generation) as reader:
            data = reader.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"gs://{bucket}/{name} is larger than {limit} bytes")
        return data

    def find(self, bucket: str, name: str) -> ObjectInfo | None:
        """The live object at ``name``, or ``None`` when there is none."""
        from distillery.core.errors import ObjectNotFoundError

        try:
            return self.stat(bucket, name)
        except ObjectNotFoundError:
            return None


class Publisher(ABC):
    """Pub/Sub publishing."""

    @abstractmethod
    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Publish one message to ``topic`` (a short name); returns the message id.

        Raises:
            ServiceUnavailableError: Pub/Sub did not take the message.
        """


#: A transaction body: sees the current document (``None`` when absent) and returns the new
#: document, or ``None`` to leave it unchanged. It may run several times; keep it pure.
Mutation = Callable[[dict[str, Any] | None], dict[str, Any] | None]


@dataclass(frozen=True)
class Order:
    """One key of a query's ordering: a top-level field, ascending unless ``descending``."""

    field: str
    descending: bool = False


#: An ordering key: a field name (ascending) or an :class:`Order`.
OrderKey = str | Order


def orders_of(order_by: OrderKey | Sequence[OrderKey]) -> tuple[Order, ...]:
    """``order_by`` as a tuple of :class:`Order` (a lone key or a field name is one key)."""
    keys = [order_by] if isinstance(order_by, str | Order) else list(order_by)
    return tuple(k if isinstance(k, Order) else Order(k) for k in keys)


def check_query(
    order_by: OrderKey | Sequence[OrderKey],
    limit: int | None,
    start_at: Sequence[Any] | None,
    start_after: Sequence[Any] | None,
) -> tuple[tuple[Order, ...], tuple[Any, ...] | None]:
    """The orders and the cursor of a :meth:`RecordStore.list` query, refused as Firestore would.

    Raises:
        ValueError: see :meth:`RecordStore.list`.
    """
    orders = orders_of(order_by)
    if limit is not None and limit < 1:
        raise ValueError(f"a query's limit must be at least 1, not {limit}")
    if start_at is not None and start_after is not None:
        raise ValueError("a query starts at a cursor or after one, not both")
    cursor = start_at if start_at is not None else start_after
    if cursor is None:
        return orders, None
    if isinstance(cursor, str | bytes):
        raise ValueError("a cursor is a sequence of values of the ordering fields, not a string")
    if not orders:
        raise ValueError("a query with a cursor needs an order_by")
    if len(cursor) > len(orders):
        raise ValueError(
            f"the cursor has {len(cursor)} values but the query orders by {len(orders)} fields"
        )
    return orders, tuple(cursor)


class RecordStore(ABC):
    """Firestore documents, addressed by collection and id.

    Queries have Firestore's semantics, which the fake keeps: ``where`` is equality on top-level
    fields (a missing field equals nothing, not even None; 1 equals 1.0, True does not equal 1);
    ``order_by`` leaves out the documents that lack an ordering field, orders values of mixed
    types by type first (null, booleans, numbers, timestamps, strings, bytes, arrays, maps), and
    breaks ties by document id; a cursor (``start_at``/``start_after``) is a sequence of values
    of the ordering fields, in order, and needs an ordering.

    In production, equality on one field with an ordering on another needs a composite index.
    """

    @abstractmethod
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """The document, or ``None``."""

    @abstractmethod
    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        """Create the document if absent; ``False`` (and no change) when it exists."""

    @abstractmethod
    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create or replace the document."""

    @abstractmethod
    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        """Read-modify-write the document atomically; returns the document as it now stands.

        Raises:
            ContentionError: concurrent writers kept winning; retry the operation later.
        """

    @abstractmethod
    def list(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: OrderKey | Sequence[OrderKey] = (),
        limit: int | None = None,
        start_at: Sequence[Any] | None = None,
        start_after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents of ``collection`` whose fields equal ``where`` (all of them when omitted),
        in the order ``order_by`` gives (unspecified without one), at most ``limit`` of them,
        from the cursor ``start_at`` (included) or ``start_after`` (excluded).

        Raises:
            ValueError: ``limit`` is below 1; a cursor without ``order_by``, with more values
                than ``order_by`` has keys, or with both ``start_at`` and ``start_after``.
        """

    @abstractmethod
    def count(self, collection: str, *, where: Mapping[str, Any] | None = None) -> int:
        """How many documents of ``collection`` have fields equal to ``where`` (all: omitted).

        Counted by the service (an aggregation), without reading the documents.
        """


@dataclass(frozen=True)
class PipelineJobInfo:
    """What the product reads of a Vertex AI pipeline job."""

    name: str
    state: str
    error: str | None = None
    resource: Mapping[str, Any] | None = None

    @property
    def job_id(self) -> str:
        """The last segment of the resource name."""
        return self.name.rsplit("/", 1)[-1]


class VertexPipelines(ABC):
    """Vertex AI pipeline jobs (``pipelineJobs`` REST resource)."""

    @abstractmethod
    def create(self, location: str, job_id: str, body: Mapping[str, Any]) -> PipelineJobInfo:
        """Create pipeline job ``job_id`` in ``location`` from a pipelineJobs.create ``body``.

        Raises:
            AlreadyExistsError: a job with that id exists (an idempotent retry: success).
            RequestRejectedError: the service refused the request (permanent).
            QuotaExceededError: out of quota for now (transient).
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def get(self, name: str) -> PipelineJobInfo:
        """The pipeline job with resource name ``name``.

        Raises:
            ObjectNotFoundError: no such job.
            ServiceUnavailableError: the service did not answer (transient).
        """


@dataclass(frozen=True)
class DeployedModelInfo:
    """One model deployed on an endpoint."""

    deployed_model_id: str
    model: str


@dataclass(frozen=True)
class EndpointInfo:
    """What the product reads of a Vertex AI endpoint."""

    name: str
    display_name: str
    deployed_models: tuple[DeployedModelInfo, ...] = ()
    #: Deployed model id → percentage of the traffic it receives.
    traffic_split: Mapping[str, int] = field(default_factory=dict)

    @property
    def location(self) -> str:
        """The endpoint's location (from its resource name)."""
        return location_of(self.name)

    def deployed_id_of(self, model: str) -> str | None:
        """The deployed model id serving ``model`` here, or None when it is not deployed.

        ``model`` and the deployed models' names compare with :func:`same_model`: a name with
        ``@VERSION`` or without matches the same deployment of that version.
        """
        for deployed in self.deployed_models:
            if same_model(deployed.model, model):
                return deployed.deployed_model_id
        return None


@dataclass(frozen=True)
class ModelInfo:
    """What the product reads of a Model Registry entry."""

    name: str
    display_name: str
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictResult:
    """An endpoint's answer to ``:predict``: one text per prompt, and which model gave them."""

    contents: tuple[str, ...]
    deployed_model_id: str = ""
    model: str = ""


#: The version alias that names a model's default version (as a model name without one does).
DEFAULT_VERSION_ALIAS = "default"
#: The version id the Model Registry gives a model's first version.
FIRST_VERSION_ID = "1"


def split_model_version(name: str) -> tuple[str, str]:
    """``.../models/M@V`` → ``(".../models/M", "V")``; no ``@`` (or ``@default``) → ``"default"``.

    Vertex AI model resource names may carry a version id or alias after ``@``
    (``projects/P/locations/L/models/M@2``, ``...@default``); without one they name the default
    version.
    """
    base, _, version = name.partition("@")
    return base, version or DEFAULT_VERSION_ALIAS


def same_model(a: str, b: str) -> bool:
    """Whether model resource names ``a`` and ``b`` name the same model version.

    They are equal up to a trailing ``@VERSION``: ``models/M``, ``models/M@default`` name the
    default version, ``models/M@1`` version 1. Since the product only ever registers one version
    per model (each distillation uploads a new model), a bare or ``@default`` name also matches
    ``@1``, the default version of such a model; two different explicit versions never match.
    """
    base_a, version_a = split_model_version(a)
    base_b, version_b = split_model_version(b)
    if base_a != base_b:
        return False
    if version_a == version_b:
        return True
    first = (DEFAULT_VERSION_ALIAS, FIRST_VERSION_ID)
    return version_a in first and version_b in first


def location_of(resource_name: str) -> str:
    """``projects/P/locations/L/...`` → ``L`` (empty when the name has no location)."""
    parts = resource_name.split("/")
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "locations":
        return parts[3]
    return ""


def canary_split(
    current: Mapping[str, int], percent: int, incumbent: str | None = None
) -> dict[str, int]:
    """The traffic split deploying a model with ``percent`` of an endpoint's traffic.

    Key ``"0"`` is the model being deployed (Vertex AI's convention); the rest of the traffic
    goes to the deployed model ``incumbent`` (by default, the one that receives most now), and
    every other model gets none. With no model to give the rest to, the new model takes it all.
    """
    serving = {k: v for k, v in current.items() if v > 0}
    if incumbent is None and serving:
        incumbent = max(serving, key=lambda k: serving[k])
    if percent >= 100 or incumbent is None or incumbent not in current:
        return {"0": 100}
    return {"0": percent, incumbent: 100 - percent}


@dataclass(frozen=True)
class DeployOperationInfo:
    """A deployment's long-running operation (``google.longrunning.Operation``) as it stands."""

    name: str
    done: bool
    #: The new deployed model's id, once done and successful.
    deployed_model_id: str | None = None
    #: Why it failed, once done (None: it succeeded or is still running).
    error: str | None = None


class ModelEndpoints(ABC):
    """Vertex AI endpoints (``endpoints`` REST resource) and the Model Registry's ``models.get``."""

    @abstractmethod
    def find_endpoint(self, display_name: str, location: str) -> EndpointInfo | None:
        """The endpoint named ``display_name`` in ``location`` (the oldest if several), or None.

        Raises:
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def list_endpoints(self, display_name: str, location: str) -> list[EndpointInfo]:
        """Every endpoint named ``display_name`` in ``location``, oldest first.

        Raises:
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def delete_endpoint(self, name: str) -> None:
        """Delete endpoint ``name`` (waits for the operation); it must serve no model.

        Raises:
            ObjectNotFoundError: no such endpoint.
            RequestRejectedError: models are still deployed on it.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def create_endpoint(self, display_name: str, location: str) -> EndpointInfo:
        """Create an endpoint named ``display_name`` in ``location`` (waits for the operation).

        Raises:
            RequestRejectedError: the service refused the request (permanent).
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def get_endpoint(self, name: str) -> EndpointInfo:
        """The endpoint with resource name ``name``.

        Raises:
            ObjectNotFoundError: no such endpoint.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def deploy(
        self, endpoint: str, model: str, traffic_percent: int = 100, incumbent: str | None = None
    ) -> str:
        """Deploy ``model`` on ``endpoint`` with ``traffic_percent`` of its traffic.

        The rest goes to the deployed model ``incumbent`` as :func:`canary_split` says. Returns
        the new deployed model id.

        Raises:
            ObjectNotFoundError: no such endpoint or model.
            RequestRejectedError: the service refused the deployment (permanent).
            QuotaExceededError: out of serving quota for now (transient).
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def start_deploy(
        self, endpoint: str, model: str, traffic_percent: int = 100, incumbent: str | None = None
    ) -> str:
        """Start deploying ``model`` on ``endpoint`` as :meth:`deploy` does, without waiting.

        Returns the name of the deployment's operation, for :meth:`deploy_operation`.

        Raises:
            ObjectNotFoundError: no such endpoint or model.
            RequestRejectedError: the service refused the deployment (permanent).
            QuotaExceededError: out of serving quota for now (transient).
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def deploy_operation(self, name: str) -> DeployOperationInfo:
        """The deployment operation ``name`` (from :meth:`start_deploy`) as it stands now.

        Raises:
            ObjectNotFoundError: no such operation.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def undeploy(
        self, endpoint: str, deployed_model_id: str, traffic_split: Mapping[str, int] | None = None
    ) -> None:
        """Remove a deployed model; ``traffic_split`` (of the remaining ones) replaces the split.

        Raises:
            ObjectNotFoundError: no such endpoint or deployed model.
            RequestRejectedError: the model still has traffic and no split moves it away.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def set_traffic(self, endpoint: str, traffic_split: Mapping[str, int]) -> EndpointInfo:
        """Replace the endpoint's traffic split (deployed model ids → percentages, summing to 100).

        Raises:
            ObjectNotFoundError: no such endpoint.
            RequestRejectedError: the split names unknown models or does not add up to 100.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def predict(
        self, endpoint: str, prompts: Sequence[str], parameters: Mapping[str, Any] | None = None
    ) -> PredictResult:
        """Ask ``endpoint`` (text-model instances ``{"prompt": ...}``) to answer ``prompts``.

        Raises:
            ObjectNotFoundError: no such endpoint.
            RequestRejectedError: nothing deployed there receives traffic, or the request is bad.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def get_model(self, name: str) -> ModelInfo:
        """The Model Registry entry ``name``, with the metrics in its metadata (if any).

        Raises:
            ObjectNotFoundError: no such model.
            ServiceUnavailableError: the service did not answer (transient).
        """


@dataclass(frozen=True)
class TuningJobInfo:
    """What the product reads of a Vertex AI tuning job (Gemini supervised tuning).

    ``state`` is the ``JOB_STATE_*`` name; ``error`` the message of its ``google.rpc.Status``
    (FAILED or CANCELLED jobs); ``tuned_model`` (``projects/P/locations/L/models/M@VERSION``) and
    ``endpoint`` are set once it SUCCEEDED; ``resource`` is the REST ``TuningJob``.
    """

    name: str
    state: str
    error: str | None = None
    tuned_model: str | None = None
    endpoint: str | None = None
    resource: Mapping[str, Any] | None = None

    @property
    def job_id(self) -> str:
        """The last segment of the resource name (an id the service chose)."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def labels(self) -> Mapping[str, str]:
        """The job's labels (empty when the resource is unknown)."""
        labels = (self.resource or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}


class TuningJobs(ABC):
    """Vertex AI ``tuningJobs`` and the ``:generateContent`` of the endpoints they deploy to.

    ``tuningJobs.create`` takes no client-chosen id, so it is not idempotent: a caller that must
    create at most one job per request labels the body and looks for the label first
    (:meth:`find_by_label`), and must expect a create that raised to have happened anyway.

    ``api_version`` is the Vertex AI API a job is created, read, listed and cancelled through:
    ``v1`` (supervised tuning), or ``v1beta1`` (the distillation mode's ``distillationSpec``,
    which v1 lacks); a job's record says which.
    """

    @abstractmethod
    def create(
        self, location: str, body: Mapping[str, Any], *, api_version: str = "v1"
    ) -> TuningJobInfo:
        """Create a tuning job in ``location`` from a ``tuningJobs.create`` ``body`` (a REST
        ``TuningJob`` of ``api_version``).

        Raises:
            RequestRejectedError: the service refused the request (permanent), or the body does
                not parse as a TuningJob.
            QuotaExceededError: out of quota for now (transient).
            ServiceUnavailableError: the service did not answer (transient; the job may exist).
        """

    @abstractmethod
    def get(self, name: str, *, api_version: str = "v1") -> TuningJobInfo:
        """The tuning job with resource name ``name``.

        Raises:
            ObjectNotFoundError: no such job.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def find_by_label(
        self, location: str, key: str, value: str, *, api_version: str = "v1"
    ) -> TuningJobInfo | None:
        """The newest tuning job of ``location`` labelled ``key=value``, or None.

        Raises:
            RequestRejectedError: ``key`` or ``value`` cannot be a label (the filter is refused).
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def cancel(self, name: str, *, api_version: str = "v1") -> None:
        """Ask tuning job ``name`` to stop (it goes CANCELLING, then CANCELLED).

        Raises:
            ObjectNotFoundError: no such job.
            RequestRejectedError: the job already ended.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def generate(self, endpoint: str, prompt: str) -> str:
        """The text the model on ``endpoint`` answers to one user turn ``prompt``
        (``:generateContent``).

        Raises:
            ObjectNotFoundError: no such endpoint.
            RequestRejectedError: nothing deployed there receives traffic, or the request is bad.
            ServiceUnavailableError: the service did not answer (transient).
        """


@dataclass(frozen=True)
class BatchPredictionJobInfo:
    """What the product reads of a Vertex AI batch prediction job (a Gemini teacher's labels).

    ``state`` is the ``JOB_STATE_*`` name; ``error`` the message of its ``google.rpc.Status``
    (FAILED or CANCELLED jobs); ``output_directory`` (``outputInfo.gcsOutputDirectory``, where
    ``predictions.jsonl`` is written) is set once the job wrote output; the counts are
    ``completionStats`` (None until the service reports them); ``resource`` is the REST
    ``BatchPredictionJob``.
    """

    name: str
    state: str
    error: str | None = None
    output_directory: str | None = None
    successful_count: int | None = None
    failed_count: int | None = None
    incomplete_count: int | None = None
    resource: Mapping[str, Any] | None = None

    @property
    def job_id(self) -> str:
        """The last segment of the resource name (an id the service chose)."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def labels(self) -> Mapping[str, str]:
        """The job's labels (empty when the resource is unknown)."""
        labels = (self.resource or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}


class BatchPredictions(ABC):
    """Vertex AI ``batchPredictionJobs``: a model answers every request line of a JSONL file.

    As ``tuningJobs.create``, ``batchPredictionJobs.create`` takes no client-chosen id: a caller
    that must create at most one job per request labels the body, looks for the label first
    (:meth:`find_by_label`), and must expect a create that raised to have happened anyway.
    """

    @abstractmethod
    def create(self, location: str, body: Mapping[str, Any]) -> BatchPredictionJobInfo:
        """Create a batch prediction job in ``location`` from a ``batchPredictionJobs.create``
        ``body`` (a REST ``BatchPredictionJob``).

        Raises:
            RequestRejectedError: the service refused the request (permanent), or the body does
                not parse as a BatchPredictionJob.
            ObjectNotFoundError: the model does not exist.
            QuotaExceededError: out of quota for now (transient).
            ServiceUnavailableError: the service did not answer (transient; the job may exist).
        """

    @abstractmethod
    def get(self, name: str) -> BatchPredictionJobInfo:
        """The batch prediction job with resource name ``name``.

        Raises:
            ObjectNotFoundError: no such job.
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def find_by_label(self, location: str, key: str, value: str) -> BatchPredictionJobInfo | None:
        """The newest batch prediction job of ``location`` labelled ``key=value``, or None.

        Raises:
            RequestRejectedError: ``key`` or ``value`` cannot be a label (the filter is refused).
            ServiceUnavailableError: the service did not answer (transient).
        """

    @abstractmethod
    def cancel(self, name: str) -> None:
        """Ask batch prediction job ``name`` to stop (it goes CANCELLING, then CANCELLED).

        Raises:
            ObjectNotFoundError: no such job.
            RequestRejectedError: the job already ended.
            ServiceUnavailableError: the service did not answer (transient).
        """
