"""The REST front of the emulator on the standard library's ``ThreadingHTTPServer``.

Routes (JSON in and out; enums answered as names; errors as google.rpc error bodies):

- ``GET /`` — readiness: 200 ``{"status": "ok"}`` once the server is up;
- ``POST /v1/projects/{p}/locations/{l}/pipelineJobs[?pipelineJobId=ID]`` — create;
- ``GET /v1/projects/{p}/locations/{l}/pipelineJobs[?pageSize&pageToken&filter&orderBy]`` — list;
- ``GET /v1/projects/{p}/locations/{l}/pipelineJobs/{id}`` — get;
- ``POST /v1/projects/{p}/locations/{l}/pipelineJobs/{id}:cancel`` — cancel (answers ``{}``);
- ``GET /v1/projects/{p}/locations/{l}/models[?pageSize&pageToken&filter]`` — list models
  (filter: ``display_name``, ``model_id``, ``labels.KEY``);
- ``GET /v1/projects/{p}/locations/{l}/models/{id}`` — get a model;
- ``POST /v1/projects/{p}/locations/{l}/endpoints[?endpointId=ID]`` — create (an Operation);
- ``GET /v1/projects/{p}/locations/{l}/endpoints[?pageSize&pageToken&filter]`` — list;
- ``GET|DELETE /v1/projects/{p}/locations/{l}/endpoints/{id}`` — get, delete (an Operation);
- ``POST /v1/projects/{p}/locations/{l}/endpoints/{id}:deployModel|:undeployModel`` (Operations);
- ``POST /v1/projects/{p}/locations/{l}/endpoints/{id}:predict`` — online prediction;
- ``GET /v1/publishers/google/models/{id}`` (or ``/v1beta1/``) — the publisher model of a teacher
  or student jobs use (what the Vertex AI SDK reads to load a tuned model);
- ``POST /v1/projects/{p}/locations/{l}/endpoints/{id}:generateContent`` — Gemini-shaped
  prediction (see :mod:`distillery.local.emulator._generate`);
- ``POST /v1/projects/{p}/locations/{l}/tuningJobs`` — create (answers the TuningJob);
- ``GET /v1/projects/{p}/locations/{l}/tuningJobs[?pageSize&pageToken&filter]`` — list;
- ``GET /v1/projects/{p}/locations/{l}/tuningJobs/{id}`` — get;
- ``POST /v1/projects/{p}/locations/{l}/tuningJobs/{id}:cancel`` — cancel (answers ``{}``);
  every tuningJobs route answers under ``/v1beta1/`` too (a ``distillationSpec`` there);
- ``GET /v1/{resource}/operations/{id}`` (or ``/ui/...``) — an Operation again;
- ``batchPredictionJobs`` create, list, get and ``:cancel`` (see
  :func:`distillery.local.emulator._batch_service.route`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

from distillery.core.ports import ObjectStore, Publisher
from distillery.core.settings import Settings
from distillery.local.emulator import _batch_service
from distillery.local.emulator._batch_runner import BatchRunner, LocalTeachers
from distillery.local.emulator._config import BatchFaults, TrainerOptions
from distillery.local.emulator._endpoints import EndpointService, PredictorLoader
from distillery.local.emulator._generate import generate_content
from distillery.local.emulator._publishers import PublisherModels
from distillery.local.emulator._registry import ArtifactCache, ModelRegistry
from distillery.local.emulator._runner import DatasetRunner, JobRunner
from distillery.local.emulator._service import EmulatorConfig, PipelineService
from distillery.local.emulator._status import ApiError
from distillery.local.emulator._training import LocalTrainer
from distillery.local.emulator._tuning_runner import LocalTuningTrainer, TuningDataRunner
from distillery.local.emulator._tuning_service import DEFAULT_START_DELAY_SECONDS, TuningService

logger = logging.getLogger(__name__)

#: The readiness probe: ``GET`` this path answers 200 once the server accepts requests.
HEALTH_PATH = "/"
MAX_BODY_BYTES = 10 << 20
#: How often the serving loop checks for :meth:`EmulatorServer.stop` (bounds the stop latency).
SHUTDOWN_POLL_SECONDS = 0.05

_COLLECTION = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/pipelineJobs"
)
_JOB = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/pipelineJobs/(?P<job_id>[^/:]+)(?P<verb>:cancel)?"
)
_PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_MODELS = re.compile(_PARENT + r"/models")
_MODEL = re.compile(_PARENT + r"/models/(?P<id>[^/:]+)")
_ENDPOINTS = re.compile(_PARENT + r"/endpoints")
_ENDPOINT = re.compile(
    _PARENT
    + r"/endpoints/(?P<id>[^/:]+)(?P<verb>:deployModel|:undeployModel|:predict|:generateContent)?"
)
_PUBLISHER_MODEL = re.compile(
    r"/v1(?:beta1)?/publishers/(?P<publisher>[^/]+)/models/(?P<id>[^/:]+)"
)
#: Tuning jobs answer v1 and v1beta1 (whose TuningJob adds the distillation mode's spec).
_TUNING_PARENT = (
    r"/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
)
_TUNING_JOBS = re.compile(_TUNING_PARENT + r"/tuningJobs")
_TUNING_JOB = re.compile(_TUNING_PARENT + r"/tuningJobs/(?P<id>[^/:]+)(?P<verb>:cancel)?")
#: The GAPIC REST transports (google-cloud-aiplatform 2.7.0) read operations at the first of
#: their URIs that matches, ``/ui/{name=...operations/*}``; ``/v1/`` is the documented one.
_OPERATION = re.compile(r"/(?:v1|ui)/(?P<name>projects/[^:]+/operations/[^/:]+)")
#: A request header that makes the traffic-split draw of ``:predict`` deterministic.
SEED_HEADER = "X-Distillery-Seed"


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the :class:`PipelineService` of its server."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "DistilleryVertexEmulator/1"
    # Headers and body leave in separate writes; without this, Nagle + delayed ACK cost ~40 ms.
    disable_nagle_algorithm = True
    _raw_body = b""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        try:
            # Read the whole body before routing: an unread body would be taken for the next
            # request on this keep-alive connection.
            self._raw_body = self._read_body()
            status, body = self._route(method)
        except ApiError as exc:
            status, body = exc.http_status, exc.body()
            logger.info(
                "request refused",
                extra={
                    "method": method,
                    "path": self.path,
                    "status": exc.status,
                    "error": exc.message,
                },
            )
        except Exception as exc:  # One bad request must never take the server down.
            logger.exception("request failed", extra={"method": method, "path": self.path})
            error = ApiError("INTERNAL", f"the emulator failed: {type(exc).__name__}: {exc}")
            status, body = error.http_status, error.body()
        self._send(status, body)

    def _route(self, method: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        service = self.server.service
        if path == HEALTH_PATH and method == "GET":
            return 200, {"status": "ok"}
        if match := _COLLECTION.fullmatch(path):
            project, location = unquote(match["project"]), unquote(match["location"])
            if method == "POST":
                job_id = _one(query, "pipelineJobId")
                return 200, service.create(project, location, job_id or None, self._json_body())
            if method == "GET":
                return 200, service.list(
                    project,
                    location,
                    **_list_query(query),
                    order_by=_one(query, "orderBy"),
                )
        if match := _JOB.fullmatch(path):
            project, location = unquote(match["project"]), unquote(match["location"])
            job_id = unquote(match["job_id"])
            if match["verb"] and method == "POST":
                self._json_body(allow_empty=True)
                service.cancel(project, location, job_id)
                return 200, {}
            if not match["verb"] and method == "GET":
                return 200, service.get(project, location, job_id)
        answer = self._route_serving(method, path, query)
        if answer is None:
            answer = self._route_tuning(method, path, query)
        if answer is None and self.server.batch is not None:
            answer = _batch_service.route(
                self.server.batch,
                method,
                path,
                lambda: _list_query(query),
                lambda allow_empty: self._json_body(allow_empty=allow_empty),
            )
        if answer is None:
            raise ApiError("NOT_FOUND", f"The emulator has no method {method} {path}.")
        return answer

    def _route_serving(
        self, method: str, path: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any]] | None:
        """Models, endpoints and operations; None when no route matches."""
        models, endpoints = self.server.models, self.server.endpoints
        if match := _MODELS.fullmatch(path):
            if method == "GET":
                return 200, models.list(
                    unquote(match["project"]),
                    unquote(match["location"]),
                    **_list_query(query),
                )
            return None
        if match := _MODEL.fullmatch(path):
            if method == "GET":
                return 200, models.get(
                    unquote(match["project"]), unquote(match["location"]), unquote(match["id"])
                )
            return None
        if match := _ENDPOINTS.fullmatch(path):
            project, location = unquote(match["project"]), unquote(match["location"])
            if method == "POST":
                endpoint_id = _one(query, "endpointId")
                return 200, endpoints.create(
                    project, location, endpoint_id or None, self._json_body()
                )
            if method == "GET":
                return 200, endpoints.list(
                    project,
                    location,
                    **_list_query(query),
                )
            return None
        if match := _ENDPOINT.fullmatch(path):
            project, location = unquote(match["project"]), unquote(match["location"])
            endpoint_id, verb = unquote(match["id"]), match["verb"]
            if verb and method == "POST":
                body = self._json_body(allow_empty=verb not in (":predict", ":generateContent"))
                if verb == ":generateContent":
                    return 200, generate_content(
                        endpoints,
                        project,
                        location,
                        endpoint_id,
                        body,
                        self.headers.get(SEED_HEADER),
                    )
                if verb == ":deployModel":
                    return 200, endpoints.deploy_model(project, location, endpoint_id, body)
                if verb == ":undeployModel":
                    return 200, endpoints.undeploy_model(project, location, endpoint_id, body)
                seed = self.headers.get(SEED_HEADER)
                return 200, endpoints.predict(project, location, endpoint_id, body, seed)
            if not verb and method == "GET":
                return 200, endpoints.get(project, location, endpoint_id)
            if not verb and method == "DELETE":
                return 200, endpoints.delete(project, location, endpoint_id)
            return None
        if (match := _OPERATION.fullmatch(path)) and method == "GET":
            return 200, endpoints.get_operation(unquote(match["name"]))
        if (match := _PUBLISHER_MODEL.fullmatch(path)) and method == "GET":
            return 200, self.server.publishers.get(
                unquote(match["publisher"]), unquote(match["id"])
            )
        return None

    def _route_tuning(
        self, method: str, path: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any]] | None:
        """Tuning jobs; None when no route matches."""
        tuning = self.server.tuning
        if tuning is None:
            return None
        if match := _TUNING_JOBS.fullmatch(path):
            project, location = unquote(match["project"]), unquote(match["location"])
            version = match["version"]
            if method == "POST":
                return 200, tuning.create(project, location, self._json_body(), version)
            if method == "GET":
                return 200, tuning.list(
                    project,
                    location,
                    **_list_query(query),
                    api_version=version,
                )
            return None
        if match := _TUNING_JOB.fullmatch(path):
            project, location = unquote(match["project"]), unquote(match["location"])
            job_id = unquote(match["id"])
            if match["verb"] and method == "POST":
                self._json_body(allow_empty=True)
                tuning.cancel(project, location, job_id)
                return 200, {}
            if not match["verb"] and method == "GET":
                return 200, tuning.get(project, location, job_id, match["version"])
        return None

    def _read_body(self) -> bytes:
        """The request body's bytes.

        Raises:
            ApiError: INVALID_ARGUMENT, a bad or too large ``Content-Length`` (the connection is
                then closed, since the body stays unread).
        """
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Content-Length must be a number of bytes up to {MAX_BODY_BYTES}",
            )
        return self.rfile.read(length) if length else b""

    def _json_body(self, *, allow_empty: bool = False) -> dict[str, Any]:
        """The request body as a JSON object.

        Raises:
            ApiError: INVALID_ARGUMENT, the body is missing or not a JSON object.
        """
        raw = self._raw_body
        if not raw.strip():
            if allow_empty:
                return {}
            raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received. Empty body.")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}.") from None
        if not isinstance(body, dict):
            raise ApiError(
                "INVALID_ARGUMENT",
                "Invalid JSON payload received. The body must be a JSON object (a PipelineJob).",
            )
        return body

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _one(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[-1] if values else ""


def _page_size(raw: str) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", f"pageSize must be an integer, got {raw!r}") from None


class _ListQuery(TypedDict):
    page_size: int
    page_token: str
    filter_text: str


def _list_query(query: dict[str, list[str]]) -> _ListQuery:
    """The paging and filter arguments every ``list`` method takes, from the query string.

    Raises:
        ApiError: INVALID_ARGUMENT, a ``pageSize`` that is not an integer.
    """
    return _ListQuery(
        page_size=_page_size(_one(query, "pageSize")),
        page_token=_one(query, "pageToken"),
        filter_text=_one(query, "filter"),
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    #: The ``batchPredictionJobs`` service (None: the server has no such methods).
    batch: _batch_service.BatchService | None = None

    def __init__(
        self,
        address: tuple[str, int],
        service: PipelineService,
        models: ModelRegistry,
        endpoints: EndpointService,
        publishers: PublisherModels,
        tuning: TuningService | None,
    ) -> None:
        self.service = service
        self.models = models
        self.endpoints = endpoints
        self.publishers = publishers
        self.tuning = tuning
        super().__init__(address, _Handler)


class EmulatorServer:
    """The emulator's HTTP server around one :class:`PipelineService`; a context manager.

    Binds at construction (``port=0`` picks a free port); :meth:`start` serves on a background
    thread, :meth:`serve_forever` on the calling one.
    """

    def __init__(
        self,
        service: PipelineService,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: ModelRegistry | None = None,
        endpoints: EndpointService | None = None,
        tuning: TuningService | None = None,
        on_stop: Callable[[], None] | None = None,
        batch: _batch_service.BatchService | None = None,
    ) -> None:
        self.service = service
        self.models = models or ModelRegistry()
        self.endpoints = endpoints or EndpointService(self.models, None, None)
        catalog = service.config.catalog
        self.publishers = PublisherModels(
            (catalog.teacher_model, catalog.student_model), self.models.students
        )
        #: None: the server has no tuningJobs methods (``create_server`` always gives one).
        self.tuning = tuning
        self._on_stop = on_stop
        self._httpd = _Server(
            (host, port), service, self.models, self.endpoints, self.publishers, self.tuning
        )
        #: None: the server has no batchPredictionJobs methods (``create_server`` gives one).
        self.batch = batch
        self._httpd.batch = batch
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """The bound host."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` — the ``api_endpoint`` for the client and
        ``DISTILLERY_VERTEX_API_ENDPOINT``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmulatorServer:
        """Start the service's workers and serve on a daemon thread; returns ``self``."""
        self.service.start()
        if self.tuning is not None:
            self.tuning.start()
        if self.batch is not None:
            self.batch.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name="emulator-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, cancel running jobs, publish the last events, close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._httpd.server_close()
        self.service.shutdown(timeout)
        if self.tuning is not None:
            self.tuning.shutdown(timeout)
        if self.batch is not None:
            self.batch.shutdown(timeout)
        if self._on_stop is not None:
            self._on_stop()
            self._on_stop = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def create_server(
    settings: Settings,
    *,
    object_store: ObjectStore,
    publisher: Publisher,
    host: str = "127.0.0.1",
    port: int = 0,
    runner: JobRunner | None = None,
    max_concurrent_jobs: int = 1,
    extra_template_uris: tuple[str, ...] = (),
    trainer: TrainerOptions | None = None,
    create_delay_seconds: float = 0.0,
    tuning_start_delay_seconds: float = DEFAULT_START_DELAY_SECONDS,
    batch_start_delay_seconds: float = _batch_service.DEFAULT_START_DELAY_SECONDS,
    batch_faults: BatchFaults | None = None,
) -> EmulatorServer:
    """A bound, not yet started emulator server.

    With ``trainer`` options, jobs are trained by :class:`~distillery.local.emulator.LocalTrainer`
    (worker processes; the ``settings.long_context_student_list`` decides batch sizes unless the
    options name their own) and deployed models are served by the trainer module's
    ``load_predictor``; without, the default :class:`~distillery.local.emulator.DatasetRunner` fails
    every job after reading its data (no trainer installed) and ``:predict`` is refused. An
    explicit ``runner`` wins over both. The known templates are ``settings.template_uri`` plus
    ``extra_template_uris``; events go to ``settings.job_events_topic`` through ``publisher``.
    ``pipelineJobs.create`` answers ``create_delay_seconds`` after it stored the job. Tuning
    jobs (one at a time) are trained by :class:`~distillery.local.emulator.LocalTuningTrainer`
    with the same ``trainer`` options, and wait ``tuning_start_delay_seconds`` PENDING first.
    Batch prediction jobs are answered by the local teachers of the same options (see
    :mod:`distillery.local.emulator._batch_runner`; none without ``trainer``), and wait
    ``batch_start_delay_seconds`` PENDING first; ``batch_faults`` fails chosen request lines
    on purpose (fault injection, see :class:`~distillery.local.emulator._config.BatchFaults`).

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
        ValueError: ``max_concurrent_jobs`` is below 1.
    """
    config = EmulatorConfig.from_settings(
        settings,
        max_concurrent_jobs=max_concurrent_jobs,
        extra_template_uris=extra_template_uris,
        create_delay_seconds=create_delay_seconds,
    )
    models = ModelRegistry()
    endpoints = EndpointService(models, None, None)
    on_stop: Callable[[], None] | None = None
    tuning_runner = TuningDataRunner()
    teachers = LocalTeachers(None, models, None, None)
    if trainer is not None:
        if not trainer.long_context_students:
            trainer = dataclasses.replace(
                trainer, long_context_students=settings.long_context_student_list
            )
        if trainer.data_dir is not None:
            root = trainer.data_dir
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="distillery-emulator-"))
            on_stop = functools.partial(shutil.rmtree, root, ignore_errors=True)
        cache = ArtifactCache(object_store, root)
        endpoints = EndpointService(models, cache, _predictor_loader(trainer.trainer_module))
        if runner is None:
            runner = DatasetRunner(LocalTrainer(trainer, models, cache, root, endpoints))
        tuning_runner = TuningDataRunner(
            LocalTuningTrainer(trainer, models, endpoints, cache), root
        )
        teachers = LocalTeachers(trainer, models, cache, _predictor_loader(trainer.trainer_module))
    service = PipelineService(config, object_store=object_store, publisher=publisher, runner=runner)
    tuning = TuningService(
        object_store=object_store,
        runner=tuning_runner,
        start_delay_seconds=tuning_start_delay_seconds,
    )
    batch = _batch_service.BatchService(
        object_store=object_store,
        runner=BatchRunner(teachers, batch_faults),
        registered=lambda name: models.find(name) is not None,
        start_delay_seconds=batch_start_delay_seconds,
    )
    try:
        return EmulatorServer(
            service,
            host,
            port,
            models=models,
            endpoints=endpoints,
            tuning=tuning,
            on_stop=on_stop,
            batch=batch,
        )
    except BaseException:
        if on_stop is not None:
            on_stop()
        raise


def _predictor_loader(module_name: str) -> PredictorLoader:
    """``load_predictor`` of the trainer module, imported on first use (torch is heavy)."""

    def load(model_dir: Path) -> Any:
        module = importlib.import_module(module_name)
        return module.load_predictor(model_dir)

    return load
