"""The emulated ``endpoints`` (create, get, list, delete, deployModel, undeployModel, predict).

Mutating methods answer a ``google.longrunning.Operation`` like the real service; ``GET
.../operations/{id}`` answers it again. ``deployModel``'s runs for ``deploy_seconds`` (as the real
one runs for minutes): until it is done the endpoint does not list the model, then it does with
the split asked for, or the operation fails (``FAILED_PRECONDITION``) when a model that split
names was undeployed meanwhile. The others are ``done`` at once. The REST ``Endpoint``::

    {"name": "projects/P/locations/L/endpoints/E", "displayName": "...", "description": "",
     "deployedModels": [{"id": D, "model": "projects/P/locations/L/models/M[@VERSION]",
                         "modelVersionId": "1", "displayName": "...", "createTime": "...",
                         "automaticResources": {"minReplicaCount": 1, "maxReplicaCount": 1}}],
     "trafficSplit": {D: 100}, "labels": {}, "etag": "...", "createTime", "updateTime"}

``:predict`` takes the text-model shape ``{"instances": [{"prompt": "..."}], "parameters":
{...}}`` (or ``{"content": "..."}`` instances, as the Vertex AI SDK sends them) and answers
``{"predictions": [{"content": "...", ...}], "deployedModelId": D, "model",
"modelDisplayName", "modelVersionId"}``. One deployed model serves each request, drawn by the
traffic split; ``parameters.seed`` (an integer) or the ``X-Distillery-Seed`` header makes the
draw deterministic. Predictors are loaded lazily from the :class:`ArtifactCache` and kept.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from distillery.core.errors import DistilleryError
from distillery.core.ports import same_model
from distillery.local.emulator._model import now, rfc3339
from distillery.local.emulator._registry import (
    ArtifactCache,
    ModelRegistry,
    list_page,
)
from distillery.local.emulator._status import ApiError, FieldViolation

logger = logging.getLogger(__name__)

_TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1."
_ENDPOINT_ID = re.compile(r"[1-9][0-9]{0,18}|[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
MAX_INSTANCES = 1000


class Predictor(Protocol):
    """What serves a deployed model (the trainer's ``Predictor``)."""

    def predict(self, prompts: Sequence[str]) -> list[str]:
        """One answer per prompt."""


#: Loads a predictor from a local model directory (the trainer's ``load_predictor``).
PredictorLoader = Callable[[Path], Predictor]


@dataclass
class _Deployed:
    deployed_id: str
    #: The model as the deploy request named it (with or without ``@VERSION``), as the service
    #: echoes it in ``deployedModels[].model``.
    model: str
    display_name: str
    create_time: datetime
    version_id: str = "1"

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.deployed_id,
            "model": self.model,
            "modelVersionId": self.version_id,
            "displayName": self.display_name,
            "createTime": rfc3339(self.create_time),
            "automaticResources": {"minReplicaCount": 1, "maxReplicaCount": 1},
        }


@dataclass
class _Endpoint:
    seq: int
    project: str
    location: str
    endpoint_id: str
    display_name: str
    description: str
    labels: dict[str, str]
    create_time: datetime
    update_time: datetime
    deployed: list[_Deployed] = field(default_factory=list)
    traffic: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/endpoints/{self.endpoint_id}"

    def resource(self) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "description": self.description,
            "labels": dict(self.labels),
            "createTime": rfc3339(self.create_time),
            "updateTime": rfc3339(self.update_time),
            "etag": hashlib.sha256(f"{self.name}{rfc3339(self.update_time)}".encode()).hexdigest()[
                :16
            ],
        }
        if self.deployed:
            resource["deployedModels"] = [d.resource() for d in self.deployed]
        if self.traffic:
            resource["trafficSplit"] = dict(self.traffic)
        return resource


class EndpointService:
    """Endpoints, their operations and online prediction; in memory and thread-safe."""

    def __init__(
        self,
        registry: ModelRegistry,
        cache: ArtifactCache | None,
        loader: PredictorLoader | None,
        *,
        deploy_seconds: float = 1.0,
    ) -> None:
        self._registry = registry
        self._deploy_seconds = deploy_seconds
        #: Deployments whose operation runs: (done at, operation name, endpoint, deployed, split).
        self._deploying: list[tuple[float, str, _Endpoint, _Deployed, dict[str, int]]] = []
        self._cache = cache
        self._loader = loader
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._operations: dict[str, dict[str, Any]] = {}
        #: The responses of the running deployments' operations, by operation name.
        self._finishing: dict[str, dict[str, Any]] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(int(time.time() * 1000) * 1000 + 500)
        self._predictors: dict[str, Predictor] = {}
        self._predictor_locks: dict[str, threading.Lock] = {}

    # --- Endpoints ----------------------------------------------------------------------------

    def create(
        self, project: str, location: str, endpoint_id: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``endpoints.create``: the Operation, done, whose response is the Endpoint.

        Raises:
            ApiError: INVALID_ARGUMENT (no displayName, a bad id), ALREADY_EXISTS.
        """
        display_name = body.get("displayName", body.get("display_name"))
        if not isinstance(display_name, str) or not display_name.strip():
            raise ApiError(
                "INVALID_ARGUMENT",
                "Endpoint.displayName is required",
                [FieldViolation("endpoint.displayName", "must be a non-empty string")],
            )
        if endpoint_id and not _ENDPOINT_ID.fullmatch(endpoint_id):
            raise ApiError(
                "INVALID_ARGUMENT",
                f"endpointId {endpoint_id!r} is invalid: a number, or [a-z][-a-z0-9]{{0,62}}",
                [FieldViolation("endpointId", "invalid endpoint id")],
            )
        labels = body.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ApiError("INVALID_ARGUMENT", "Endpoint.labels must be a map of strings")
        moment = now()
        with self._lock:
            self._settle()
            endpoint_id = endpoint_id or str(next(self._ids))
            endpoint = _Endpoint(
                seq=next(self._seq),
                project=project,
                location=location,
                endpoint_id=endpoint_id,
                display_name=display_name,
                description=str(body.get("description", "")),
                labels={str(k): str(v) for k, v in labels.items()},
                create_time=moment,
                update_time=moment,
            )
            if endpoint.name in self._endpoints:
                raise ApiError("ALREADY_EXISTS", f"Endpoint {endpoint.name} already exists.")
            self._endpoints[endpoint.name] = endpoint
            resource = endpoint.resource()
            operation = self._operation(
                endpoint.name,
                "CreateEndpointOperationMetadata",
                {"@type": _TYPE_PREFIX + "Endpoint", **resource},
            )
        logger.info("endpoint created", extra={"endpoint": endpoint.name})
        return operation

    def get(self, project: str, location: str, endpoint_id: str) -> dict[str, Any]:
        """``endpoints.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        with self._lock:
            self._settle()
            return self._find(project, location, endpoint_id).resource()

    def list(
        self,
        project: str,
        location: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter_text: str = "",
    ) -> dict[str, Any]:
        """``endpoints.list``, newest first; filters on ``display_name``, ``endpoint``, labels.

        Raises:
            ApiError: INVALID_ARGUMENT for a bad page size, token or filter.
        """
        with self._lock:
            self._settle()
            return list_page(
                self._endpoints.values(),
                key="endpoints",
                project=project,
                location=location,
                filter_fields=("display_name", "endpoint"),
                values=lambda e: {"display_name": e.display_name, "endpoint": e.endpoint_id},
                page_size=page_size,
                page_token=page_token,
                filter_text=filter_text,
            )

    def delete(self, project: str, location: str, endpoint_id: str) -> dict[str, Any]:
        """``endpoints.delete``: the Operation (response ``Empty``).

        Raises:
            ApiError: NOT_FOUND; FAILED_PRECONDITION while models are deployed.
        """
        with self._lock:
            self._settle()
            endpoint = self._find(project, location, endpoint_id)
            if endpoint.deployed:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Endpoint {endpoint.name} has deployed models; undeploy them first.",
                )
            del self._endpoints[endpoint.name]
            return self._operation(
                endpoint.name,
                "DeleteOperationMetadata",
                {"@type": "type.googleapis.com/google.protobuf.Empty"},
            )

    def deploy_model(
        self, project: str, location: str, endpoint_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``endpoints.deployModel``: the Operation, whose response holds the DeployedModel.

        ``trafficSplit`` (key ``"0"`` = the model being deployed) replaces the endpoint's split
        when given; when empty, the first model on an endpoint takes all traffic and a further
        model none.

        Raises:
            ApiError: NOT_FOUND (endpoint or model), INVALID_ARGUMENT (a split that does not name
                deployed models or does not add up to 100).
        """
        deployed_model = body.get("deployedModel", body.get("deployed_model"))
        if not isinstance(deployed_model, Mapping) or not isinstance(
            deployed_model.get("model"), str
        ):
            raise ApiError(
                "INVALID_ARGUMENT",
                "deployedModel.model is required",
                [FieldViolation("deployedModel.model", "the resource name of a model")],
            )
        model = self._registry.require(deployed_model["model"])
        split = _split_of(body)
        with self._lock:
            self._settle()
            endpoint = self._find(project, location, endpoint_id)
            deployed = _Deployed(
                deployed_id=str(next(self._ids)),
                model=deployed_model["model"],
                display_name=str(deployed_model.get("displayName") or model.display_name),
                create_time=now(),
                version_id=model.version_id,
            )
            if split:
                split = {(deployed.deployed_id if k == "0" else k): v for k, v in split.items()}
                _check_split(
                    split, [d.deployed_id for d in endpoint.deployed] + [deployed.deployed_id]
                )
                traffic = split
            elif not endpoint.deployed:
                traffic = {deployed.deployed_id: 100}
            else:
                traffic = {**endpoint.traffic, deployed.deployed_id: 0}
            operation = self._operation(
                endpoint.name,
                "DeployModelOperationMetadata",
                {
                    "@type": _TYPE_PREFIX + "DeployModelResponse",
                    "deployedModel": deployed.resource(),
                },
            )
            # Running until then: the response is given once it is done.
            response = operation.pop("response")
            operation["done"] = False
            self._deploying.append(
                (
                    time.monotonic() + self._deploy_seconds,
                    operation["name"],
                    endpoint,
                    deployed,
                    traffic,
                )
            )
            self._finishing[operation["name"]] = response
            self._settle()
            answer = dict(operation)
        logger.info(
            "model deployment started",
            extra={"endpoint": endpoint.name, "model": model.name, "traffic": traffic},
        )
        return answer

    def _settle(self) -> None:
        """Finish the deployments whose time has come. Call with the lock held."""
        moment = time.monotonic()
        running = []
        for entry in self._deploying:
            done_at, name, endpoint, deployed, traffic = entry
            if done_at > moment:
                running.append(entry)
                continue
            operation = self._operations[name]
            response = self._finishing.pop(name)
            present = {d.deployed_id for d in endpoint.deployed} | {deployed.deployed_id}
            gone = sorted(k for k in traffic if k not in present)
            operation["done"] = True
            if gone or self._endpoints.get(endpoint.name) is not endpoint:
                operation["error"] = {
                    "code": 9,  # FAILED_PRECONDITION
                    "message": f"the deployed models {gone} of the traffic split were undeployed"
                    if gone
                    else f"endpoint {endpoint.name} was deleted",
                }
                continue
            operation["response"] = response
            endpoint.deployed.append(deployed)
            endpoint.traffic = dict(traffic)
            endpoint.update_time = now()
            self._sync_model(deployed.model)
            logger.info(
                "model deployed", extra={"endpoint": endpoint.name, "model": deployed.model}
            )
        self._deploying = running

    def undeploy_model(
        self, project: str, location: str, endpoint_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``endpoints.undeployModel``: the Operation (response ``UndeployModelResponse``).

        A deployed model that still has traffic can only go when ``trafficSplit`` moves it away.

        Raises:
            ApiError: NOT_FOUND (endpoint or deployed model), FAILED_PRECONDITION (it still has
                traffic), INVALID_ARGUMENT (a bad split).
        """
        deployed_id = str(body.get("deployedModelId", body.get("deployed_model_id", "")))
        split = _split_of(body)
        with self._lock:
            self._settle()
            endpoint = self._find(project, location, endpoint_id)
            target = next((d for d in endpoint.deployed if d.deployed_id == deployed_id), None)
            if target is None:
                raise ApiError(
                    "NOT_FOUND",
                    f"Deployed model {deployed_id!r} is not found on endpoint {endpoint.name}.",
                )
            remaining = [d.deployed_id for d in endpoint.deployed if d is not target]
            if split:
                split = {k: v for k, v in split.items() if k != deployed_id or v}
                _check_split(split, remaining, allow_empty=not remaining)
                traffic = split
            elif endpoint.traffic.get(deployed_id, 0) and remaining:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Deployed model {deployed_id} still receives "
                    f"{endpoint.traffic[deployed_id]}% of the traffic of {endpoint.name}; send a "
                    "trafficSplit without it.",
                )
            else:
                traffic = {k: v for k, v in endpoint.traffic.items() if k != deployed_id}
            endpoint.deployed.remove(target)
            endpoint.traffic = traffic if remaining else {}
            endpoint.update_time = now()
            self._sync_model(target.model)
            return self._operation(
                endpoint.name,
                "UndeployModelOperationMetadata",
                {"@type": _TYPE_PREFIX + "UndeployModelResponse"},
            )

    def get_operation(self, name: str) -> dict[str, Any]:
        """``operations.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        with self._lock:
            self._settle()
            operation = self._operations.get(name)
        if operation is None:
            raise ApiError("NOT_FOUND", f"Operation {name} is not found.")
        return operation

    # --- Prediction ---------------------------------------------------------------------------

    def predict(
        self,
        project: str,
        location: str,
        endpoint_id: str,
        body: Mapping[str, Any],
        seed: str | None = None,
    ) -> dict[str, Any]:
        """``endpoints.predict`` with the text-model instance shape.

        Raises:
            ApiError: NOT_FOUND; INVALID_ARGUMENT (instances without a string ``prompt`` or
                ``content``); FAILED_PRECONDITION (nothing deployed, no traffic, or no trainer
                to serve models); INTERNAL (the model could not be loaded or answered).
        """
        prompts = _prompts(body)
        parameters = body.get("parameters") or {}
        if isinstance(parameters, Mapping) and parameters.get("seed") is not None:
            seed = str(parameters["seed"])
        with self._lock:
            self._settle()
            endpoint = self._find(project, location, endpoint_id)
            choices = [(k, v) for k, v in endpoint.traffic.items() if v > 0]
            if not endpoint.deployed or not choices:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Endpoint {endpoint.name} has no deployed model that receives traffic.",
                )
            rng = random.Random(seed) if seed is not None else random.Random()
            deployed_id = rng.choices([k for k, _ in choices], [v for _, v in choices])[0]
            deployed = next(d for d in endpoint.deployed if d.deployed_id == deployed_id)
        model = self._registry.require(deployed.model)
        predictor, lock = self._predictor(deployed_id, model.name)
        try:
            with lock:
                answers = predictor.predict(prompts)
        except Exception as exc:
            logger.exception("prediction failed", extra={"model": model.name})
            raise ApiError(
                "INTERNAL", f"model {model.name} failed to predict: {type(exc).__name__}: {exc}"
            ) from exc
        return {
            "predictions": [
                {
                    "content": answer,
                    "citationMetadata": {"citations": []},
                    "safetyAttributes": {"categories": [], "blocked": False, "scores": []},
                }
                for answer in answers
            ],
            "deployedModelId": deployed_id,
            "model": model.name,
            "modelDisplayName": model.display_name,
            "modelVersionId": model.version_id,
        }

    def _predictor(self, deployed_id: str, model_name: str) -> tuple[Predictor, threading.Lock]:
        """The cached predictor of a deployed model (loaded on first use, one load at a time)."""
        if self._loader is None or self._cache is None:
            raise ApiError(
                "FAILED_PRECONDITION",
                "no trainer is installed in the local Vertex AI emulator, so it cannot serve "
                "models; start it without --no-trainer, with torch installed",
            )
        with self._lock:
            lock = self._predictor_locks.setdefault(model_name, threading.Lock())
        with lock:
            with self._lock:
                predictor = self._predictors.get(model_name)
            if predictor is None:
                model = self._registry.require(model_name)
                try:
                    predictor = self._loader(self._cache.local_dir(model))
                except (DistilleryError, OSError, ValueError) as exc:
                    raise ApiError(
                        "INTERNAL", f"model {model_name} could not be loaded: {exc}"
                    ) from exc
                with self._lock:
                    self._predictors[model_name] = predictor
                logger.info("predictor loaded", extra={"model": model_name})
        return predictor, lock

    # --- Internals ----------------------------------------------------------------------------

    def _find(self, project: str, location: str, endpoint_id: str) -> _Endpoint:
        name = f"projects/{project}/locations/{location}/endpoints/{endpoint_id}"
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise ApiError("NOT_FOUND", f"Endpoint {name} is not found.")
        return endpoint

    def _sync_model(self, model_name: str) -> None:
        """Tell the registry where ``model_name`` is deployed (call with the lock held)."""
        self._registry.set_deployments(
            model_name,
            [
                (e.name, d.deployed_id)
                for e in self._endpoints.values()
                for d in e.deployed
                if same_model(d.model, model_name)
            ],
        )

    def _operation(
        self, resource_name: str, metadata_type: str, response: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A finished Operation on ``resource_name``; ``response`` carries its ``@type``.

        Call with the lock held.
        """
        moment = rfc3339(now())
        name = f"{resource_name}/operations/{uuid.uuid4().int % 10**19}"
        operation: dict[str, Any] = {
            "name": name,
            "metadata": {
                "@type": _TYPE_PREFIX + metadata_type,
                "genericMetadata": {"createTime": moment, "updateTime": moment},
            },
            "done": True,
            "response": dict(response),
        }
        self._operations[name] = operation
        return operation


def _split_of(body: Mapping[str, Any]) -> dict[str, int]:
    """The request's ``trafficSplit`` (ids → integer percentages).

    Raises:
        ApiError: INVALID_ARGUMENT, not a map of non-negative integers.
    """
    raw = body.get("trafficSplit", body.get("traffic_split")) or {}
    if not isinstance(raw, Mapping):
        raise ApiError("INVALID_ARGUMENT", "trafficSplit must be a map of id to percentage")
    split: dict[str, int] = {}
    for key, value in raw.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (isinstance(value, float) and not value.is_integer())
        ):
            raise ApiError(
                "INVALID_ARGUMENT",
                f"trafficSplit[{key!r}] must be a percentage (0-100), got {value!r}",
                [FieldViolation(f"trafficSplit.{key}", "must be an integer percentage")],
            )
        split[str(key)] = int(value)
    return split


def _check_split(
    split: Mapping[str, int], deployed: Sequence[str], allow_empty: bool = False
) -> None:
    """Raise unless ``split`` names only ``deployed`` ids and adds up to 100.

    Raises:
        ApiError: INVALID_ARGUMENT.
    """
    unknown = [k for k in split if k not in deployed]
    if unknown:
        raise ApiError(
            "INVALID_ARGUMENT",
            "trafficSplit names models that are not deployed on the endpoint: "
            + ", ".join(unknown),
            [FieldViolation("trafficSplit", "unknown deployed model id")],
        )
    total = sum(split.values())
    if total != 100 and not (allow_empty and total == 0):
        raise ApiError(
            "INVALID_ARGUMENT",
            f"trafficSplit must add up to 100, got {total}",
            [FieldViolation("trafficSplit", "the percentages must add up to 100")],
        )


def _prompts(body: Mapping[str, Any]) -> list[str]:
    """The prompts of a text-model predict request.

    Raises:
        ApiError: INVALID_ARGUMENT, no instances or an instance without a string ``prompt``.
    """
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise ApiError(
            "INVALID_ARGUMENT",
            'instances must be a non-empty list of {"prompt": "..."} objects',
            [FieldViolation("instances", "required")],
        )
    if len(instances) > MAX_INSTANCES:
        raise ApiError("INVALID_ARGUMENT", f"at most {MAX_INSTANCES} instances per request")
    prompts = []
    for index, instance in enumerate(instances):
        # The REST reference names the field "prompt"; the Vertex AI SDK's TextGenerationModel
        # sends "content". The service takes either.
        text = (
            instance.get("prompt", instance.get("content"))
            if isinstance(instance, Mapping)
            else None
        )
        if not isinstance(text, str):
            raise ApiError(
                "INVALID_ARGUMENT",
                f'instances[{index}] must be an object with a string "prompt" (or "content", '
                "as the Vertex AI SDK sends it)",
                [FieldViolation(f"instances[{index}].prompt", "a string is required")],
            )
        prompts.append(text)
    return prompts
