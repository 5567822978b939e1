"""In-memory implementations of the ports, for fast tests of core code.

They keep the semantics that matter (generations, create-if-absent, atomic read-modify-write) but
prove nothing about Google Cloud: the emulator tests prove the adapters. Where a port allows
behaviour that is inconvenient, the fakes behave so, as the real services do: a transaction runs
its mutation more than once (Firestore retries on contention), and a deployment is an operation
that takes time, during which the endpoint does not list the model yet; a tuning job's state
changes only after some polls, and a tuning job may be created by a call that raised; so does a
batch prediction job, whose output lines come in no promised order.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from distillery.core.errors import (
    AlreadyExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from distillery.core.ports import (
    BatchPredictionJobInfo,
    BatchPredictions,
    DeployedModelInfo,
    DeployOperationInfo,
    EndpointInfo,
    ModelEndpoints,
    ModelInfo,
    Mutation,
    ObjectInfo,
    ObjectStore,
    Order,
    OrderKey,
    PipelineJobInfo,
    PredictResult,
    Publisher,
    RecordStore,
    TuningJobInfo,
    TuningJobs,
    VertexPipelines,
    canary_split,
    check_query,
)
from distillery.facts import GEMINI_BATCH_OUTPUT_DIRECTORY_PREFIX, GEMINI_BATCH_PREDICTIONS_FILE


class InMemoryObjectStore(ObjectStore):
    """Objects with generations; overwriting keeps only the newest (like an unversioned bucket)."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], tuple[int, bytes, str]] = {}
        self._next_generation = 1_700_000_000_000_000
        self._lock = threading.Lock()

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "") -> ObjectInfo:
        """Store ``data`` unconditionally (a user's upload)."""
        return self.write_bytes(bucket, name, data, content_type=content_type)

    def stat(self, bucket: str, name: str, generation: int | None = None) -> ObjectInfo:
        with self._lock:
            entry = self._objects.get((bucket, name))
        if entry is None or (generation is not None and entry[0] != generation):
            raise ObjectNotFoundError(f"gs://{bucket}/{name} (generation {generation}) not found")
        return ObjectInfo(bucket, name, entry[0], len(entry[1]), entry[2] or None)

    @contextmanager
    def _reader(self, data: bytes) -> Iterator[BinaryIO]:
        yield io.BytesIO(data)

    def open_read(self, bucket: str, name: str, generation: int | None = None) -> Any:
        self.stat(bucket, name, generation)
        return self._reader(self._objects[(bucket, name)][1])

    def write_bytes(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
    ) -> ObjectInfo:
        with self._lock:
            if if_absent and (bucket, name) in self._objects:
                raise PreconditionFailedError(f"gs://{bucket}/{name} already exists")
            self._next_generation += 1
            self._objects[(bucket, name)] = (self._next_generation, bytes(data), content_type)
            return ObjectInfo(bucket, name, self._next_generation, len(data), content_type)

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
        self.stat(bucket, name, generation)
        _, data, content_type = self._objects[(bucket, name)]
        return self.write_bytes(
            dest_bucket, dest_name, data, content_type=content_type, if_absent=if_absent
        )

    def names(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name in ``bucket`` under ``prefix``, sorted."""
        with self._lock:
            return sorted(n for (b, n) in self._objects if b == bucket and n.startswith(prefix))

    def list_names(self, bucket: str, prefix: str) -> list[str]:
        # Buckets are not modelled here (every bucket exists), so no listing raises.
        return self.names(bucket, prefix)


@dataclass
class PublishedMessage:
    """One message an :class:`InMemoryPublisher` took."""

    topic: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""


class InMemoryPublisher(Publisher):
    """Keeps every published message in order."""

    def __init__(self) -> None:
        self.messages: list[PublishedMessage] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        with self._lock:
            message_id = str(len(self.messages) + 1)
            self.messages.append(PublishedMessage(topic, data, dict(attributes or {}), message_id))
            return message_id

    def on(self, topic: str) -> list[PublishedMessage]:
        """The messages published to ``topic``."""
        return [m for m in self.messages if m.topic == topic]


def firestore_key(value: Any) -> tuple[Any, ...]:
    """A sort key that orders values as Firestore does: by type first, then by value.

    Null < booleans < numbers (integers and floats together) < timestamps < strings < bytes <
    arrays (element by element) < maps (key by key). Equal keys mean equal to Firestore.

    Raises:
        TypeError: a value Firestore cannot store.
    """
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, datetime):
        return (3, value.timestamp())
    if isinstance(value, str):
        # Firestore compares strings by their UTF-8 bytes.
        return (4, value.encode())
    if isinstance(value, bytes):
        return (5, value)
    if isinstance(value, list | tuple):
        return (8, tuple(firestore_key(v) for v in value))
    if isinstance(value, Mapping):
        return (9, tuple((str(k).encode(), firestore_key(v)) for k, v in sorted(value.items())))
    raise TypeError(f"Firestore cannot store a {type(value).__name__}")


class InMemoryRecordStore(RecordStore):
    """Documents in dictionaries; transactions serialised by one lock.

    Every :meth:`transact` runs its mutation ``lost_attempts`` times more than once: the results
    of the first runs are discarded, as when a concurrent writer wins a compare-and-set and the
    transaction is tried again, which the port allows. A mutation with side effects, or one that
    is not idempotent, shows it in the tests.
    """

    def __init__(self, *, lost_attempts: int = 1) -> None:
        if lost_attempts < 0:
            raise ValueError(f"lost_attempts must be 0 or more, not {lost_attempts}")
        self.lost_attempts = lost_attempts
        self._docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.RLock()

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs.get(collection, {}).get(doc_id)
            return copy.deepcopy(doc)

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        with self._lock:
            docs = self._docs.setdefault(collection, {})
            if doc_id in docs:
                return False
            docs[doc_id] = copy.deepcopy(dict(data))
            return True

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        with self._lock:
            self._docs.setdefault(collection, {})[doc_id] = copy.deepcopy(dict(data))

    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        with self._lock:
            for _ in range(self.lost_attempts):
                mutate(self.get(collection, doc_id))  # lost to a concurrent writer: discarded
            current = self.get(collection, doc_id)
            updated = mutate(copy.deepcopy(current))
            if updated is None:
                return current
            self.set(collection, doc_id, updated)
            return copy.deepcopy(updated)

    def _matching(
        self, collection: str, where: Mapping[str, Any] | None
    ) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            docs = list(self._docs.get(collection, {}).items())
        where = where or {}
        return [
            (doc_id, doc)
            for doc_id, doc in docs
            if all(k in doc and firestore_key(doc[k]) == firestore_key(v) for k, v in where.items())
        ]

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
        orders, cursor = check_query(order_by, limit, start_at, start_after)
        found = self._matching(collection, where)
        if orders:
            # Firestore leaves out what lacks an ordering field, and breaks ties by document id
            # in the direction of the last ordering key.
            found = [(i, d) for i, d in found if all(o.field in d for o in orders)]
            keys = [*orders, Order("__name__", orders[-1].descending)]

            def position(item: tuple[str, dict[str, Any]]) -> list[tuple[Any, ...]]:
                doc_id, doc = item
                return [
                    firestore_key(doc_id if k.field == "__name__" else doc[k.field]) for k in keys
                ]

            def compare(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> int:
                for key, x, y in zip(keys, a, b, strict=False):
                    if x != y:
                        less = x < y
                        return (1 if less else -1) if key.descending else (-1 if less else 1)
                return 0

            found.sort(key=lambda item: functools.cmp_to_key(compare)(position(item)))
            if cursor is not None:
                bound = [firestore_key(v) for v in cursor]
                include = start_at is not None
                found = [
                    item
                    for item in found
                    if (c := compare(position(item)[: len(bound)], bound)) > 0
                    or (c == 0 and include)
                ]
        if limit is not None:
            found = found[:limit]
        return [copy.deepcopy(doc) for _, doc in found]

    def count(self, collection: str, *, where: Mapping[str, Any] | None = None) -> int:
        return len(self._matching(collection, where))


class InMemoryVertexPipelines(VertexPipelines):
    """Pipeline jobs in a dictionary; ``fail_next`` queues errors the next creates raise."""

    def __init__(self, project: str = "p") -> None:
        self.project = project
        self.jobs: dict[str, dict[str, Any]] = {}
        self.create_calls = 0
        self.fail_next: list[Exception] = []
        self._lock = threading.Lock()

    def create(self, location: str, job_id: str, body: Mapping[str, Any]) -> PipelineJobInfo:
        with self._lock:
            self.create_calls += 1
            if self.fail_next:
                raise self.fail_next.pop(0)
            name = f"projects/{self.project}/locations/{location}/pipelineJobs/{job_id}"
            if name in self.jobs:
                raise AlreadyExistsError(f"pipeline job {job_id} already exists")
            self.jobs[name] = {
                "name": name,
                "state": "PIPELINE_STATE_PENDING",
                **copy.deepcopy(dict(body)),
            }
            return self._info(name)

    def _info(self, name: str) -> PipelineJobInfo:
        job = self.jobs[name]
        error = (job.get("error") or {}).get("message")
        return PipelineJobInfo(name, job["state"], error=error, resource=copy.deepcopy(job))

    def set_state(self, name: str, state: str, error: str | None = None) -> None:
        """Move job ``name`` to pipeline ``state`` (what the service would do on its own)."""
        with self._lock:
            self.jobs[name]["state"] = state
            if error:
                self.jobs[name]["error"] = {"code": 9, "message": error}

    def get(self, name: str) -> PipelineJobInfo:
        with self._lock:
            if name not in self.jobs:
                raise ObjectNotFoundError(f"pipeline job {name} not found")
            return self._info(name)


@dataclass
class FakeOperation:
    """A long-running operation of :class:`InMemoryModelEndpoints` (a deployment)."""

    name: str
    endpoint: str
    model: str
    done: bool = False
    #: Why it failed, once done (None: it succeeded or is still running).
    error: str | None = None
    #: The deployed model id the endpoint lists once the operation is done.
    deployed_model_id: str = ""
    #: The endpoint's traffic split once the operation is done (computed when it started).
    traffic: dict[str, int] = field(default_factory=dict)
    #: When (on the endpoints' ``monotonic`` clock) the operation is done.
    done_at: float = 0.0


class InMemoryModelEndpoints(ModelEndpoints):
    """Endpoints and models in dictionaries, with the traffic rules of Vertex AI.

    ``deploy_calls`` counts deployments; :meth:`add_model` registers what a job would upload.
    A deployment is a long-running operation (``operations``), done ``deploy_polls`` polls of
    ``poll_seconds`` after :meth:`start_deploy` started it, whoever polls it (or nobody);
    ``deploy`` waits for it as the adapter waits for Vertex AI's. Until then the endpoint does
    not list the model and other callers may read and change the endpoint.
    """

    def __init__(
        self,
        project: str = "p",
        *,
        deploy_polls: int = 3,
        poll_seconds: float = 0.01,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project = project
        #: The time deployments take (seconds); a test whose world has its own clock passes one.
        self.monotonic = monotonic
        self.models: dict[str, ModelInfo] = {}
        self.answers: dict[str, Callable[[str], str]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deploy_calls = 0
        self.operations: list[FakeOperation] = []
        self.deploy_polls = deploy_polls
        self.poll_seconds = poll_seconds
        self._ids = 0
        self._lock = threading.RLock()

    def _next_id(self) -> str:
        self._ids += 1
        return str(1000 + self._ids)

    def add_model(
        self,
        model_id: str,
        display_name: str,
        metrics: Mapping[str, float] | None = None,
        answer: Callable[[str], str] | None = None,
        *,
        location: str = "us-central1",
    ) -> str:
        """Register a model in ``location``; returns its resource name.

        ``answer`` is how the model answers a prompt once deployed (default: it echoes it).
        """
        name = f"projects/{self.project}/locations/{location}/models/{model_id}"
        self.models[name] = ModelInfo(name, display_name, dict(metrics or {}))
        self.answers[name] = answer or (lambda prompt: prompt)
        return name

    def deploy_now(self, endpoint: str, model: str) -> str:
        """Deploy ``model`` on ``endpoint`` with all its traffic at once, as a job's own pipeline
        did before the job succeeded (not counted in ``deploy_calls``); the deployed id.

        Raises:
            ObjectNotFoundError: no such endpoint or model.
        """
        with self._lock:
            target = self._endpoint(endpoint)
            if model not in self.models:
                raise ObjectNotFoundError(f"model {model} not found")
            deployed_id = self._next_id()
            target["deployed"][deployed_id] = model
            target["traffic"] = {deployed_id: 100}
            return deployed_id

    def predict(
        self, endpoint: str, prompts: Sequence[str], parameters: Mapping[str, Any] | None = None
    ) -> PredictResult:
        """Answers with the deployed model that has the largest share of the traffic."""
        with self._lock:
            self._settle()
            target = self._endpoint(endpoint)
            if not target["traffic"]:
                raise RequestRejectedError(
                    f"{endpoint} has no deployed model that receives traffic"
                )
            deployed_id = max(target["traffic"], key=lambda k: (target["traffic"][k], k))
            model = target["deployed"][deployed_id]
            answer = self.answers[model]
        return PredictResult(tuple(answer(p) for p in prompts), deployed_id, model)

    def _endpoint(self, name: str) -> dict[str, Any]:
        if name not in self.endpoints:
            raise ObjectNotFoundError(f"endpoint {name} not found")
        return self.endpoints[name]

    def _info(self, name: str) -> EndpointInfo:
        endpoint = self.endpoints[name]
        return EndpointInfo(
            name=name,
            display_name=endpoint["display_name"],
            deployed_models=tuple(
                DeployedModelInfo(deployed_id, model)
                for deployed_id, model in endpoint["deployed"].items()
            ),
            traffic_split=dict(endpoint["traffic"]),
        )

    def find_endpoint(self, display_name: str, location: str) -> EndpointInfo | None:
        with self._lock:
            self._settle()
            prefix = f"projects/{self.project}/locations/{location}/endpoints/"
            for name, endpoint in self.endpoints.items():
                if name.startswith(prefix) and endpoint["display_name"] == display_name:
                    return self._info(name)
            return None

    def list_endpoints(self, display_name: str, location: str) -> list[EndpointInfo]:
        with self._lock:
            self._settle()
            prefix = f"projects/{self.project}/locations/{location}/endpoints/"
            return [
                self._info(name)
                for name, endpoint in self.endpoints.items()
                if name.startswith(prefix) and endpoint["display_name"] == display_name
            ]

    def delete_endpoint(self, name: str) -> None:
        with self._lock:
            self._settle()
            target = self._endpoint(name)
            if target["deployed"]:
                raise RequestRejectedError(f"{name} has deployed models; undeploy them first")
            del self.endpoints[name]

    def create_endpoint(self, display_name: str, location: str) -> EndpointInfo:
        with self._lock:
            name = f"projects/{self.project}/locations/{location}/endpoints/{self._next_id()}"
            self.endpoints[name] = {"display_name": display_name, "deployed": {}, "traffic": {}}
            return self._info(name)

    def get_endpoint(self, name: str) -> EndpointInfo:
        with self._lock:
            self._settle()
            self._endpoint(name)
            return self._info(name)

    def start_deploy(
        self, endpoint: str, model: str, traffic_percent: int = 100, incumbent: str | None = None
    ) -> str:
        """Start the deployment; the name of its operation, done ``deploy_polls`` polls later.

        The split is computed when the deployment is asked for (as the adapter sends it).

        Raises:
            ObjectNotFoundError: no such endpoint or model.
        """
        with self._lock:
            self._settle()
            target = self._endpoint(endpoint)
            if model not in self.models:
                raise ObjectNotFoundError(f"model {model} not found")
            self.deploy_calls += 1
            deployed_id = self._next_id()
            split = canary_split(
                {k: target["traffic"].get(k, 0) for k in target["deployed"]},
                traffic_percent,
                incumbent,
            )
            operation = FakeOperation(
                f"{endpoint}/operations/{self._next_id()}",
                endpoint,
                model,
                deployed_model_id=deployed_id,
                traffic={(deployed_id if k == "0" else k): v for k, v in split.items() if v > 0},
                done_at=self.monotonic() + self.deploy_polls * self.poll_seconds,
            )
            self.operations.append(operation)
            return operation.name

    def deploy_operation(self, name: str) -> DeployOperationInfo:
        """The deployment operation ``name`` as it stands now.

        Raises:
            ObjectNotFoundError: no such operation.
        """
        with self._lock:
            self._settle()
            for operation in self.operations:
                if operation.name == name:
                    return DeployOperationInfo(
                        name=name,
                        done=operation.done,
                        deployed_model_id=(
                            operation.deployed_model_id
                            if operation.done and not operation.error
                            else None
                        ),
                        error=operation.error,
                    )
        raise ObjectNotFoundError(f"operation {name} not found")

    def deploy(
        self, endpoint: str, model: str, traffic_percent: int = 100, incumbent: str | None = None
    ) -> str:
        """Start the deployment, wait for its operation, then the model serves its share.

        Raises:
            ObjectNotFoundError: no such endpoint or model.
            RequestRejectedError: the operation failed: a model the split names was undeployed
                while it ran.
        """
        name = self.start_deploy(endpoint, model, traffic_percent, incumbent)
        # The lock is not held while the operation runs: the world moves on meanwhile.
        while not (operation := self.deploy_operation(name)).done:
            time.sleep(self.poll_seconds)
        if operation.error:
            raise RequestRejectedError(f"deploying {model} on {endpoint}: {operation.error}")
        return str(operation.deployed_model_id)

    def _settle(self) -> None:
        """Finish the operations whose time has come (as Vertex AI does, polled or not)."""
        now = self.monotonic()
        for operation in self.operations:
            if operation.done or operation.done_at > now:
                continue
            operation.done = True
            target = self.endpoints.get(operation.endpoint)
            if target is None:
                operation.error = f"endpoint {operation.endpoint} was deleted"
                continue
            deployed_id = operation.deployed_model_id
            traffic = operation.traffic
            gone = sorted(k for k in traffic if k != deployed_id and k not in target["deployed"])
            if gone:
                operation.error = f"deployed models {gone} of the traffic split were undeployed"
                continue
            target["deployed"][deployed_id] = operation.model
            target["traffic"] = dict(traffic)

    def undeploy(
        self, endpoint: str, deployed_model_id: str, traffic_split: Mapping[str, int] | None = None
    ) -> None:
        with self._lock:
            self._settle()
            target = self._endpoint(endpoint)
            if deployed_model_id not in target["deployed"]:
                raise ObjectNotFoundError(f"{deployed_model_id} is not deployed on {endpoint}")
            remaining = [k for k in target["deployed"] if k != deployed_model_id]
            if traffic_split is not None:
                self._check(traffic_split, remaining)
                traffic = {k: v for k, v in traffic_split.items() if v > 0}
            elif target["traffic"].get(deployed_model_id) and remaining:
                raise RequestRejectedError(f"{deployed_model_id} still receives traffic")
            else:
                traffic = {k: v for k, v in target["traffic"].items() if k != deployed_model_id}
            del target["deployed"][deployed_model_id]
            target["traffic"] = traffic if remaining else {}

    def set_traffic(self, endpoint: str, traffic_split: Mapping[str, int]) -> EndpointInfo:
        with self._lock:
            self._settle()
            target = self._endpoint(endpoint)
            self._check(traffic_split, list(target["deployed"]))
            target["traffic"] = {k: v for k, v in traffic_split.items() if v > 0}
            return self._info(endpoint)

    @staticmethod
    def _check(split: Mapping[str, int], deployed: list[str]) -> None:
        if any(k not in deployed for k in split) or (deployed and sum(split.values()) != 100):
            raise RequestRejectedError(f"invalid traffic split {dict(split)} for {deployed}")

    def get_model(self, name: str) -> ModelInfo:
        with self._lock:
            if name not in self.models:
                raise ObjectNotFoundError(f"model {name} not found")
            return self.models[name]

    def serving(self, endpoint: str) -> dict[str, int]:
        """Model resource name → percentage of ``endpoint``'s traffic it receives."""
        with self._lock:
            self._settle()
            target = self._endpoint(endpoint)
            return {target["deployed"][k]: v for k, v in target["traffic"].items()}


#: The states a fake tuning job goes through, in order, after the one it is in.
_TUNING_NEXT = {
    "JOB_STATE_PENDING": "JOB_STATE_RUNNING",
    "JOB_STATE_RUNNING": "JOB_STATE_SUCCEEDED",
    "JOB_STATE_CANCELLING": "JOB_STATE_CANCELLED",
}
_TUNING_TERMINAL = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"})


class InMemoryTuningJobs(TuningJobs):
    """Tuning jobs in a dictionary, as unkind as the service.

    - The service picks the ids (``1``, ``2``...): two creates are two jobs.
    - ``lose_answers`` (a count): the next creates store the job and then raise
      :class:`ServiceUnavailableError`, as a call whose answer was lost does; ``fail_next``
      queues errors the next creates raise *without* creating anything.
    - A job moves one state (PENDING → RUNNING → SUCCEEDED, CANCELLING → CANCELLED) only after
      ``polls_per_state`` reads of it (:meth:`get` or :meth:`find_by_label`); :meth:`fail` makes
      a job end FAILED instead of SUCCEEDED.
    - A succeeded job's endpoint answers :meth:`generate` with what :meth:`teach` taught it.
    - Given ``endpoints`` (the fake endpoints the rest of the product uses), a succeeded job
      registers its tuned model there and deploys it, with all the traffic, on an endpoint of
      its own named after ``tunedModelDisplayName``, as the service does: that endpoint is an
      ordinary endpoint resource (``get_endpoint``, ``undeploy``, ``delete_endpoint`` work on it),
      and :meth:`generate` asks it as ``:predict`` does, so it refuses once the model is
      undeployed and raises NotFound once the endpoint is deleted. Untaught, a model answers as
      :meth:`InMemoryModelEndpoints.add_model` models do (it echoes the prompt).
    """

    def __init__(
        self,
        project: str = "p",
        *,
        polls_per_state: int = 2,
        endpoints: InMemoryModelEndpoints | None = None,
    ) -> None:
        if endpoints is not None and endpoints.project != project:
            raise ValueError(
                f"the fake endpoints are of project {endpoints.project!r}, not {project!r}"
            )
        self.project = project
        self.polls_per_state = polls_per_state
        #: Where succeeded jobs register their model and endpoint (None: kept to this fake).
        self.endpoints = endpoints
        self.jobs: dict[str, dict[str, Any]] = {}
        self.create_calls = 0
        self.fail_next: list[Exception] = []
        self.lose_answers = 0
        self._polls: dict[str, int] = {}
        self._failures: dict[str, str] = {}
        self._answers: dict[str, tuple[dict[str, str], str]] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        #: The API version each job was created through, and the one each was last read through.
        self.api_versions: dict[str, str] = {}
        self.read_versions: dict[str, str] = {}

    def create(
        self, location: str, body: Mapping[str, Any], *, api_version: str = "v1"
    ) -> TuningJobInfo:
        with self._lock:
            self.create_calls += 1
            if self.fail_next:
                raise self.fail_next.pop(0)
            # distillationSpec is v1beta1's only (the v1 message has no such field).
            key = "distillationSpec" if "distillationSpec" in body else "supervisedTuningSpec"
            if key == "distillationSpec" and api_version != "v1beta1":
                raise RequestRejectedError(f"distillationSpec is not a field of {api_version}")
            spec = body.get(key) or {}
            if not body.get("baseModel") or not spec.get("trainingDatasetUri"):
                raise RequestRejectedError(
                    f"a tuning job needs baseModel and {key}.trainingDatasetUri"
                )
            job_id = str(self._next_id)
            self._next_id += 1
            name = f"projects/{self.project}/locations/{location}/tuningJobs/{job_id}"
            self.jobs[name] = {
                **copy.deepcopy(dict(body)),
                "name": name,
                "state": "JOB_STATE_PENDING",
                "labels": dict(body.get("labels") or {}),
            }
            self._polls[name] = 0
            self.api_versions[name] = api_version
            if self.lose_answers > 0:
                self.lose_answers -= 1
                raise ServiceUnavailableError(f"the answer to creating {name} was lost")
            return self._info(name)

    def _info(self, name: str) -> TuningJobInfo:
        job = self.jobs[name]
        tuned = job.get("tunedModel") or {}
        return TuningJobInfo(
            name=name,
            state=job["state"],
            error=(job.get("error") or {}).get("message"),
            tuned_model=tuned.get("model"),
            endpoint=tuned.get("endpoint"),
            resource=copy.deepcopy(job),
        )

    def _poll(self, name: str) -> None:
        """One read of job ``name``: it moves on once it was read ``polls_per_state`` times."""
        job = self.jobs[name]
        self._polls[name] += 1
        if job["state"] in _TUNING_TERMINAL or self._polls[name] < self.polls_per_state:
            return
        self._polls[name] = 0
        state = _TUNING_NEXT[job["state"]]
        if state == "JOB_STATE_SUCCEEDED" and name in self._failures:
            job["state"] = "JOB_STATE_FAILED"
            job["error"] = {"code": 9, "message": self._failures[name]}
            return
        job["state"] = state
        if state == "JOB_STATE_SUCCEEDED":
            job["tunedModel"] = self._tuned_model(name, job)
        if state == "JOB_STATE_CANCELLED":
            job["error"] = {"code": 1, "message": "the tuning job was cancelled"}

    def _tuned_model(self, name: str, job: Mapping[str, Any]) -> dict[str, str]:
        """The ``tunedModel`` of job ``name`` that just succeeded: the model (version 1) and the
        endpoint it is deployed on (registered in :attr:`endpoints` when there are some)."""
        parent, job_id = name.split("/tuningJobs/")
        if self.endpoints is None:
            return {
                "model": f"{parent}/models/tuned-{job_id}@1",
                "endpoint": f"{parent}/endpoints/tuned-{job_id}",
            }
        location = parent.rsplit("/", 1)[-1]
        display = str(job.get("tunedModelDisplayName") or f"tuned-{job_id}")
        model = self.endpoints.add_model(f"tuned-{job_id}", display, location=location)
        endpoint = self.endpoints.create_endpoint(display, location).name
        self.endpoints.deploy_now(endpoint, model)
        return {"model": f"{model}@1", "endpoint": endpoint}

    def get(self, name: str, *, api_version: str = "v1") -> TuningJobInfo:
        with self._lock:
            if name not in self.jobs:
                raise ObjectNotFoundError(f"tuning job {name} not found")
            self.read_versions[name] = api_version
            self._poll(name)
            return self._info(name)

    def find_by_label(
        self, location: str, key: str, value: str, *, api_version: str = "v1"
    ) -> TuningJobInfo | None:
        prefix = f"projects/{self.project}/locations/{location}/tuningJobs/"
        with self._lock:
            found = [
                name
                for name, job in self.jobs.items()
                if name.startswith(prefix) and job["labels"].get(key) == value
            ]
            if not found:
                return None
            newest = max(found, key=lambda n: int(n.rsplit("/", 1)[-1]))
            self.read_versions[newest] = api_version
            self._poll(newest)
            return self._info(newest)

    def cancel(self, name: str, *, api_version: str = "v1") -> None:
        with self._lock:
            if name not in self.jobs:
                raise ObjectNotFoundError(f"tuning job {name} not found")
            self.read_versions[name] = api_version
            job = self.jobs[name]
            if job["state"] in _TUNING_TERMINAL:
                raise RequestRejectedError(f"tuning job {name} already ended ({job['state']})")
            if job["state"] == "JOB_STATE_PENDING":
                job["state"] = "JOB_STATE_CANCELLED"
                job["error"] = {"code": 1, "message": "the tuning job was cancelled"}
            elif job["state"] == "JOB_STATE_RUNNING":
                job["state"] = "JOB_STATE_CANCELLING"
                self._polls[name] = 0

    def fail(self, name: str, message: str) -> None:
        """Make job ``name`` end FAILED with ``message`` where it would have SUCCEEDED."""
        with self._lock:
            self._failures[name] = message

    def teach(self, endpoint: str, answers: Mapping[str, str], default: str) -> None:
        """What the model on ``endpoint`` answers: ``answers[prompt]``, else ``default``."""
        with self._lock:
            self._answers[endpoint] = (dict(answers), default)

    def generate(self, endpoint: str, prompt: str) -> str:
        if self.endpoints is not None:
            return self._generate_on_endpoints(self.endpoints, endpoint, prompt)
        with self._lock:
            served = any(
                (job.get("tunedModel") or {}).get("endpoint") == endpoint
                for job in self.jobs.values()
            )
            if not served:
                raise ObjectNotFoundError(f"endpoint {endpoint} not found")
            if endpoint not in self._answers:
                raise RequestRejectedError(
                    f"the fake endpoint {endpoint} was taught no answers (call teach first)"
                )
            answers, default = self._answers[endpoint]
            return answers.get(prompt, default)

    def _generate_on_endpoints(
        self, endpoints: InMemoryModelEndpoints, endpoint: str, prompt: str
    ) -> str:
        """Ask ``endpoint`` of the shared fake endpoints: what it serves answers (NotFound once
        it is deleted, refused once nothing deployed there receives traffic)."""
        result = endpoints.predict(endpoint, [prompt])
        with self._lock:
            taught = self._answers.get(endpoint)
        if taught is not None:
            answers, default = taught
            return answers.get(prompt, default)
        return result.contents[0]


#: The states a fake batch prediction job goes through, in order, after the one it is in.
_BATCH_NEXT = {
    "JOB_STATE_QUEUED": "JOB_STATE_PENDING",
    "JOB_STATE_PENDING": "JOB_STATE_RUNNING",
    "JOB_STATE_RUNNING": "JOB_STATE_SUCCEEDED",
    "JOB_STATE_CANCELLING": "JOB_STATE_CANCELLED",
}
_BATCH_TERMINAL = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"})


def _prompt_of(request: Mapping[str, Any]) -> str:
    """The text of the last user turn of a ``GenerateContentRequest`` ("" when it has none)."""
    for content in reversed(request.get("contents") or []):
        if isinstance(content, Mapping) and content.get("role", "user") == "user":
            return "".join(str(part.get("text", "")) for part in content.get("parts") or [] if part)
    return ""


class InMemoryBatchPredictions(BatchPredictions):
    """Batch prediction jobs in a dictionary, reading and writing JSONL in ``objects``, as
    unkind as the service.

    - The service picks the ids (``1``, ``2``...): two creates are two jobs.
    - ``lose_answers`` (a count): the next creates store the job and then raise
      :class:`ServiceUnavailableError`, as a call whose answer was lost does; ``fail_next``
      queues errors the next creates raise *without* creating anything.
    - A job moves one state (QUEUED → PENDING → RUNNING → SUCCEEDED, CANCELLING → CANCELLED) only
      after ``polls_per_state`` reads of it (:meth:`get` or :meth:`find_by_label`); :meth:`fail`
      makes a job end FAILED instead of SUCCEEDED.
    - On success the job reads its input lines from ``objects`` and writes one output line per
      input line to ``<outputUriPrefix>/prediction-model-<time>/predictions.jsonl``, in a
      shuffled order (the service promises none): ``{"request", "status": "", "response"}``
      with the answer :meth:`teach` taught for the prompt, or ``{"request", "status": MESSAGE}``
      for a line :meth:`fail_lines` scripted to fail (by its 0-based number in the input).
      Missing input ends the job FAILED, as the service does.
    """

    def __init__(
        self, objects: ObjectStore, project: str = "p", *, polls_per_state: int = 2
    ) -> None:
        self.objects = objects
        self.project = project
        self.polls_per_state = polls_per_state
        self.jobs: dict[str, dict[str, Any]] = {}
        self.create_calls = 0
        self.fail_next: list[Exception] = []
        self.lose_answers = 0
        self._polls: dict[str, int] = {}
        self._failures: dict[str, str] = {}
        self._line_failures: dict[int, str] = {}
        self._answers: dict[str, str] = {}
        self._default_answer = ""
        self._next_id = 1
        self._lock = threading.Lock()

    def create(self, location: str, body: Mapping[str, Any]) -> BatchPredictionJobInfo:
        with self._lock:
            self.create_calls += 1
            if self.fail_next:
                raise self.fail_next.pop(0)
            uris = ((body.get("inputConfig") or {}).get("gcsSource") or {}).get("uris") or []
            prefix = ((body.get("outputConfig") or {}).get("gcsDestination") or {}).get(
                "outputUriPrefix"
            )
            if not body.get("model") or not uris or not prefix:
                raise RequestRejectedError(
                    "a batch prediction job needs model, inputConfig.gcsSource.uris and "
                    "outputConfig.gcsDestination.outputUriPrefix"
                )
            job_id = str(self._next_id)
            self._next_id += 1
            name = f"projects/{self.project}/locations/{location}/batchPredictionJobs/{job_id}"
            self.jobs[name] = {
                **copy.deepcopy(dict(body)),
                "name": name,
                "state": "JOB_STATE_QUEUED",
                "labels": dict(body.get("labels") or {}),
            }
            self._polls[name] = 0
            if self.lose_answers > 0:
                self.lose_answers -= 1
                raise ServiceUnavailableError(f"the answer to creating {name} was lost")
            return self._info(name)

    def _info(self, name: str) -> BatchPredictionJobInfo:
        job = self.jobs[name]
        stats = job.get("completionStats") or {}

        def count(key: str) -> int | None:
            return int(stats[key]) if key in stats else None

        return BatchPredictionJobInfo(
            name=name,
            state=job["state"],
            error=(job.get("error") or {}).get("message"),
            output_directory=(job.get("outputInfo") or {}).get("gcsOutputDirectory"),
            successful_count=count("successfulCount"),
            failed_count=count("failedCount"),
            incomplete_count=count("incompleteCount"),
            resource=copy.deepcopy(job),
        )

    def _poll(self, name: str) -> None:
        """One read of job ``name``: it moves on once it was read ``polls_per_state`` times."""
        job = self.jobs[name]
        self._polls[name] += 1
        if job["state"] in _BATCH_TERMINAL or self._polls[name] < self.polls_per_state:
            return
        self._polls[name] = 0
        state = _BATCH_NEXT[job["state"]]
        if state == "JOB_STATE_SUCCEEDED" and name in self._failures:
            job["state"] = "JOB_STATE_FAILED"
            job["error"] = {"code": 13, "message": self._failures[name]}
            return
        if state == "JOB_STATE_SUCCEEDED":
            self._answer(name)
            return
        job["state"] = state
        if state == "JOB_STATE_CANCELLED":
            job["error"] = {"code": 1, "message": "the batch prediction job was cancelled"}

    def _answer(self, name: str) -> None:
        """Answer every input line of job ``name`` and write its output (or fail the job)."""
        job = self.jobs[name]
        lines: list[dict[str, Any]] = []
        try:
            for uri in job["inputConfig"]["gcsSource"]["uris"]:
                bucket, _, path = uri.removeprefix("gs://").partition("/")
                data = self.objects.read_bytes(bucket, path, limit=64 << 20)
                lines.extend(json.loads(raw) for raw in data.splitlines() if raw.strip())
        except (ObjectNotFoundError, ValueError) as exc:
            job["state"] = "JOB_STATE_FAILED"
            job["error"] = {"code": 3, "message": f"the input could not be read: {exc}"}
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
        directory = f"{prefix}/{GEMINI_BATCH_OUTPUT_DIRECTORY_PREFIX}{stamp}"
        out: list[dict[str, Any]] = []
        failed = 0
        for number, line in enumerate(lines):
            request = line.get("request") or {}
            answered = {**line, "status": ""}
            if number in self._line_failures:
                answered["status"] = self._line_failures[number]
                failed += 1
            else:
                text = self._answers.get(_prompt_of(request), self._default_answer)
                answered["response"] = {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": "STOP",
                        }
                    ],
                    "usageMetadata": {
                        "promptTokenCount": len(_prompt_of(request).split()),
                        "candidatesTokenCount": len(text.split()),
                        "totalTokenCount": len(_prompt_of(request).split()) + len(text.split()),
                    },
                }
            out.append(answered)
        # The service promises no order: callers must match lines by their request.
        random.Random(name).shuffle(out)
        bucket, _, path = directory.removeprefix("gs://").partition("/")
        payload = "".join(json.dumps(line) + "\n" for line in out).encode()
        self.objects.write_bytes(
            bucket,
            f"{path}/{GEMINI_BATCH_PREDICTIONS_FILE}",
            payload,
            content_type="application/jsonl",
        )
        job["state"] = "JOB_STATE_SUCCEEDED"
        job["outputInfo"] = {"gcsOutputDirectory": directory}
        job["completionStats"] = {
            "successfulCount": str(len(out) - failed),
            "failedCount": str(failed),
            "incompleteCount": "0",
        }

    def get(self, name: str) -> BatchPredictionJobInfo:
        with self._lock:
            if name not in self.jobs:
                raise ObjectNotFoundError(f"batch prediction job {name} not found")
            self._poll(name)
            return self._info(name)

    def find_by_label(self, location: str, key: str, value: str) -> BatchPredictionJobInfo | None:
        prefix = f"projects/{self.project}/locations/{location}/batchPredictionJobs/"
        with self._lock:
            found = [
                name
                for name, job in self.jobs.items()
                if name.startswith(prefix) and job["labels"].get(key) == value
            ]
            if not found:
                return None
            newest = max(found, key=lambda n: int(n.rsplit("/", 1)[-1]))
            self._poll(newest)
            return self._info(newest)

    def cancel(self, name: str) -> None:
        with self._lock:
            if name not in self.jobs:
                raise ObjectNotFoundError(f"batch prediction job {name} not found")
            job = self.jobs[name]
            if job["state"] in _BATCH_TERMINAL:
                raise RequestRejectedError(
                    f"batch prediction job {name} already ended ({job['state']})"
                )
            if job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING"):
                job["state"] = "JOB_STATE_CANCELLED"
                job["error"] = {"code": 1, "message": "the batch prediction job was cancelled"}
            elif job["state"] == "JOB_STATE_RUNNING":
                job["state"] = "JOB_STATE_CANCELLING"
                self._polls[name] = 0

    def fail(self, name: str, message: str) -> None:
        """Make job ``name`` end FAILED with ``message`` where it would have SUCCEEDED."""
        with self._lock:
            self._failures[name] = message

    def fail_lines(self, failures: Mapping[int, str]) -> None:
        """Input line number (from 0) → the error ``status`` its output line carries."""
        with self._lock:
            self._line_failures = dict(failures)

    def teach(self, answers: Mapping[str, str], default: str) -> None:
        """What the model answers a request: ``answers[prompt]`` (its last user turn's text),
        else ``default``."""
        with self._lock:
            self._answers, self._default_answer = dict(answers), default
