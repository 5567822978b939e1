"""Vertex AI adapters: the GAPIC ``PipelineServiceClient``, ``EndpointServiceClient`` and
``ModelServiceClient`` over REST.

Only ``google.cloud.aiplatform_v1``'s services are imported, lazily, on first use: the
full ``google.cloud.aiplatform`` SDK costs seconds of cold start. The endpoint comes from
configuration only: ``{location}-aiplatform.googleapis.com`` in production, the local emulator's
``http://`` URL locally (an insecure endpoint can carry no real credentials, so it is called with
anonymous ones, as the official clients do for their emulators).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from distillery.adapters._clients import LocationClients
from distillery.adapters._errors import translate_google_errors
from distillery.core.errors import (
    ConfigurationError,
    RequestRejectedError,
)
from distillery.core.ports import (
    DeployedModelInfo,
    DeployOperationInfo,
    EndpointInfo,
    ModelEndpoints,
    ModelInfo,
    PipelineJobInfo,
    PredictResult,
    VertexPipelines,
    canary_split,
    location_of,
)


def _info(job: Any) -> PipelineJobInfo:
    from google.cloud.aiplatform_v1 import PipelineJob

    error = job.error.message if job.error and job.error.message else None
    return PipelineJobInfo(
        name=job.name,
        state=job.state.name,
        error=error,
        resource=json.loads(PipelineJob.to_json(job)),
    )


class VertexPipelineAdapter(VertexPipelines):
    """Pipeline jobs through the official client, one client per location."""

    def __init__(self, project: str, *, api_endpoint: str = "") -> None:
        if not project:
            raise ConfigurationError("Vertex AI pipeline jobs need GOOGLE_CLOUD_PROJECT")
        self._project = project
        self._clients = LocationClients("pipeline", api_endpoint)

    def _client(self, location: str) -> Any:
        return self._clients.client(location)

    def create(self, location: str, job_id: str, body: Mapping[str, Any]) -> PipelineJobInfo:
        from google.cloud.aiplatform_v1 import PipelineJob

        parent = f"projects/{self._project}/locations/{location}"
        try:
            job = PipelineJob.from_json(json.dumps(body))
        except Exception as exc:
            raise RequestRejectedError(f"the pipeline job body does not parse: {exc}") from exc
        with translate_google_errors(f"creating pipeline job {parent}/pipelineJobs/{job_id}"):
            created = self._client(location).create_pipeline_job(
                parent=parent, pipeline_job=job, pipeline_job_id=job_id
            )
        return _info(created)

    def get(self, name: str) -> PipelineJobInfo:
        location = name.split("/")[3] if name.count("/") >= 5 else ""
        with translate_google_errors(f"reading pipeline job {name}"):
            job = self._client(location).get_pipeline_job(name=name)
        return _info(job)


def _endpoint_info(endpoint: Any) -> EndpointInfo:
    return EndpointInfo(
        name=endpoint.name,
        display_name=endpoint.display_name,
        deployed_models=tuple(
            DeployedModelInfo(str(d.id), str(d.model)) for d in endpoint.deployed_models
        ),
        traffic_split={str(k): int(v) for k, v in endpoint.traffic_split.items()},
    )


class VertexModelEndpointsAdapter(ModelEndpoints):
    """Endpoints and models through the official clients, one pair of clients per location.

    Long-running operations (create, deploy, undeploy) are waited for, up to
    ``operation_timeout`` seconds.
    """

    def __init__(
        self, project: str, *, api_endpoint: str = "", operation_timeout: float = 1800.0
    ) -> None:
        if not project:
            raise ConfigurationError("Vertex AI endpoints need GOOGLE_CLOUD_PROJECT")
        self._project = project
        self._timeout = operation_timeout
        self._endpoint_clients = LocationClients("endpoint", api_endpoint)
        self._model_clients = LocationClients("model", api_endpoint)
        self._prediction_clients = LocationClients("prediction", api_endpoint)

    def _endpoints(self, location: str) -> Any:
        return self._endpoint_clients.client(location)

    def _models(self, location: str) -> Any:
        return self._model_clients.client(location)

    def find_endpoint(self, display_name: str, location: str) -> EndpointInfo | None:
        # Two concurrent first promotions may each have created one: all agree on the oldest.
        named = self.list_endpoints(display_name, location)
        return named[0] if named else None

    def list_endpoints(self, display_name: str, location: str) -> list[EndpointInfo]:
        parent = f"projects/{self._project}/locations/{location}"
        quoted = display_name.replace('"', '\\"')
        with translate_google_errors(f"listing the endpoints of {parent}"):
            found = list(
                self._endpoints(location).list_endpoints(
                    request={"parent": parent, "filter": f'display_name="{quoted}"'}
                )
            )
        named = [e for e in found if e.display_name == display_name]
        named.sort(key=lambda e: (e.create_time.timestamp() if e.create_time else 0, e.name))
        return [_endpoint_info(e) for e in named]

    def delete_endpoint(self, name: str) -> None:
        with translate_google_errors(f"deleting endpoint {name}"):
            operation = self._endpoints(location_of(name)).delete_endpoint(name=name)
            operation.result(timeout=self._timeout)

    def create_endpoint(self, display_name: str, location: str) -> EndpointInfo:
        from google.cloud.aiplatform_v1 import Endpoint

        parent = f"projects/{self._project}/locations/{location}"
        with translate_google_errors(f"creating endpoint {display_name!r} in {parent}"):
            operation = self._endpoints(location).create_endpoint(
                parent=parent, endpoint=Endpoint(display_name=display_name)
            )
            created = operation.result(timeout=self._timeout)
        return _endpoint_info(created)

    def get_endpoint(self, name: str) -> EndpointInfo:
        with translate_google_errors(f"reading endpoint {name}"):
            endpoint = self._endpoints(location_of(name)).get_endpoint(name=name)
        return _endpoint_info(endpoint)

    def _start_deploy(
        self, endpoint: str, model: str, traffic_percent: int, incumbent: str | None
    ) -> Any:
        """Ask for the deployment; the ``google.api_core.operation.Operation`` it answers."""
        from google.cloud.aiplatform_v1 import AutomaticResources, DeployedModel

        current = self.get_endpoint(endpoint)
        split = canary_split(
            {
                d.deployed_model_id: current.traffic_split.get(d.deployed_model_id, 0)
                for d in current.deployed_models
            },
            traffic_percent,
            incumbent,
        )
        deployed = DeployedModel(
            model=model,
            automatic_resources=AutomaticResources(min_replica_count=1, max_replica_count=1),
        )
        with translate_google_errors(f"deploying {model} on {endpoint}"):
            return self._endpoints(location_of(endpoint)).deploy_model(
                endpoint=endpoint, deployed_model=deployed, traffic_split=split
            )

    def deploy(
        self, endpoint: str, model: str, traffic_percent: int = 100, incumbent: str | None = None
    ) -> str:
        operation = self._start_deploy(endpoint, model, traffic_percent, incumbent)
        with translate_google_errors(f"deploying {model} on {endpoint}"):
            response = operation.result(timeout=self._timeout)
        return str(response.deployed_model.id)

    def start_deploy(
        self, endpoint: str, model: str, traffic_percent: int = 100, incumbent: str | None = None
    ) -> str:
        operation = self._start_deploy(endpoint, model, traffic_percent, incumbent)
        # deploy_model answers a google.api_core.operation.Operation; its ``operation`` is the
        # google.longrunning.Operation proto, whose ``name`` addresses it for operations.get.
        return str(operation.operation.name)

    def deploy_operation(self, name: str) -> DeployOperationInfo:
        from google.cloud.aiplatform_v1 import DeployModelResponse

        # EndpointServiceClient.get_operation (the operations mixin; GetOperationRequest → a
        # google.longrunning.operations_pb2.Operation) reads an operation by its name; a done
        # one carries ``error`` (a google.rpc.Status) or ``response`` (an Any holding the
        # DeployModelResponse).
        with translate_google_errors(f"reading operation {name}"):
            operation = self._endpoints(location_of(name)).get_operation(request={"name": name})
        if not operation.done:
            return DeployOperationInfo(name=name, done=False)
        if operation.HasField("error") and operation.error.code:
            return DeployOperationInfo(
                name=name, done=True, error=operation.error.message or str(operation.error.code)
            )
        response = DeployModelResponse.deserialize(operation.response.value)
        return DeployOperationInfo(
            name=name, done=True, deployed_model_id=str(response.deployed_model.id)
        )

    def undeploy(
        self, endpoint: str, deployed_model_id: str, traffic_split: Mapping[str, int] | None = None
    ) -> None:

        with translate_google_errors(f"undeploying {deployed_model_id} from {endpoint}"):
            operation = self._endpoints(location_of(endpoint)).undeploy_model(
                endpoint=endpoint,
                deployed_model_id=deployed_model_id,
                traffic_split=dict(traffic_split or {}),
            )
            operation.result(timeout=self._timeout)

    def set_traffic(self, endpoint: str, traffic_split: Mapping[str, int]) -> EndpointInfo:
        from google.cloud.aiplatform_v1 import Endpoint
        from google.protobuf import field_mask_pb2

        update = Endpoint(name=endpoint, traffic_split=dict(traffic_split))
        mask = field_mask_pb2.FieldMask(paths=["traffic_split"])
        with translate_google_errors(f"setting the traffic of {endpoint}"):
            updated = self._endpoints(location_of(endpoint)).update_endpoint(
                endpoint=update, update_mask=mask
            )
        return _endpoint_info(updated)

    def _prediction(self, location: str) -> Any:
        return self._prediction_clients.client(location)

    def predict(
        self, endpoint: str, prompts: Sequence[str], parameters: Mapping[str, Any] | None = None
    ) -> PredictResult:
        from google.protobuf import json_format, struct_pb2

        def value(data: Any) -> struct_pb2.Value:
            message = struct_pb2.Value()
            json_format.ParseDict(data, message)
            return message

        request: dict[str, Any] = {
            "endpoint": endpoint,
            "instances": [value({"prompt": prompt}) for prompt in prompts],
        }
        if parameters:
            request["parameters"] = value(dict(parameters))
        with translate_google_errors(f"asking {endpoint} for predictions"):
            response = self._prediction(location_of(endpoint)).predict(**request)
        data = type(response).to_dict(response)
        contents = []
        for prediction in data.get("predictions") or []:
            content = prediction.get("content") if isinstance(prediction, dict) else None
            contents.append(str(content) if content is not None else json.dumps(prediction))
        return PredictResult(
            contents=tuple(contents),
            deployed_model_id=str(data.get("deployed_model_id") or ""),
            model=str(data.get("model") or ""),
        )

    def get_model(self, name: str) -> ModelInfo:
        from google.cloud.aiplatform_v1 import Model

        with translate_google_errors(f"reading model {name}"):
            model = self._models(location_of(name)).get_model(name=name)
        metadata = json.loads(Model.to_json(model)).get("metadata") or {}
        raw = metadata.get("metrics") if isinstance(metadata, dict) else None
        metrics = {
            str(k): float(v)
            for k, v in (raw or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        return ModelInfo(name=model.name, display_name=model.display_name, metrics=metrics)
