"""The local Google Cloud stack: emulators, functions and the Eventarc bridge, as processes.

:class:`Stack` starts (``start``) and stops (``stop``) one stack; how each service is run is
defined in :mod:`distillery.local.stack._services`. :class:`StackState` is what ``distillery dev``
records in its state directory so another process can report on or stop exactly those processes
later. Clearing a running stack's data between tests is the test harness's job
(:meth:`distillery.local.stack.harness.StackHarness.reset`).

Start order: the Pub/Sub and Firestore emulators and the functions start together; once Pub/Sub
answers, every topic and subscription is created — the storage notifications topic *before*
fake-gcs-server starts, since it silently drops events for a missing topic — then fake-gcs-server
(and the bucket), then the bridge.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.core.errors import ConfigurationError
from distillery.core.settings import Settings
from distillery.local.stack import _services
from distillery.local.stack.bridge_config import (
    KIND_PUBSUB,
    KIND_STORAGE,
    BridgeConfig,
    BridgeRoute,
    BridgeSchedule,
)
from distillery.local.stack.errors import (
    MissingToolError,
    ServiceStartError,
    StackNotRunningError,
)
from distillery.local.stack.processes import (
    HOST,
    ServiceRecord,
    SupervisedStatus,
    check_ports_free,
    free_port,
    is_running,
    local_request,
    probe,
    process_start_time,
    spawn,
    stop_services,
    wait_ready,
)
from distillery.local.stack.routes import (
    PRODUCT_TOPIC_SETTINGS,
    ROUTES,
    Route,
    Scheduled,
    StorageFinalized,
    dead_letter_topic,
    default_functions_source,
)
from distillery.local.stack.tools import Tools, find_tools

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

logger = logging.getLogger(__name__)

#: Overrides the default state directory of ``distillery dev``.
STATE_DIR_VARIABLE = "DISTILLERY_DEV_STATE_DIR"
#: Seconds between two calls of the local stack's ``poll_tuning_jobs`` (default: the minute of
#: its route, as the deployed Cloud Scheduler job). A stack variable, not a product setting: the
#: demo and the tests shorten it so a tuning job's states are seen within seconds.
POLL_TUNING_JOBS_VARIABLE = "DISTILLERY_DEV_POLL_TUNING_JOBS_SECONDS"
#: The scheduled function whose interval :data:`POLL_TUNING_JOBS_VARIABLE` sets.
POLL_TUNING_JOBS_TARGET = "poll_tuning_jobs"
STATE_FILE = "stack.json"
BRIDGE_CONFIG_FILE = "bridge.json"

PUBSUB = "pubsub"
FIRESTORE = "firestore"
GCS = "gcs"
BRIDGE = "bridge"
VERTEX = "vertex"
FUNCTION_PREFIX = "function:"

DEFAULT_PROJECT = "distillery-local"
DEFAULT_BUCKET = "distillery-local-datasets"
DEFAULT_NOTIFICATIONS_TOPIC = "distill-local-storage-notifications"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$DISTILLERY_DEV_STATE_DIR``, else ``${XDG_STATE_HOME:-~/.local/state}/distillery/dev``."""
    environ = os.environ if environ is None else environ
    if environ.get(STATE_DIR_VARIABLE):
        return Path(environ[STATE_DIR_VARIABLE]).expanduser()
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "distillery" / "dev"


def default_poll_tuning_jobs_seconds(environ: Mapping[str, str] | None = None) -> int:
    """``$DISTILLERY_DEV_POLL_TUNING_JOBS_SECONDS``, else 0 (the route's own interval).

    Raises:
        ConfigurationError: the variable is not a whole number of seconds, 1 or more.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(POLL_TUNING_JOBS_VARIABLE, "").strip()
    if not raw:
        return 0
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise ConfigurationError(
            f"{POLL_TUNING_JOBS_VARIABLE} must be a whole number of seconds, 1 or more, got {raw!r}"
        )
    return seconds


@dataclass(frozen=True)
class StackConfig:
    """What to run and where. A port of 0 means "pick a free one when starting"."""

    project: str = DEFAULT_PROJECT
    bucket: str = DEFAULT_BUCKET
    region: str = "us-central1"
    pubsub_port: int = 8085
    firestore_port: int = 8086
    gcs_port: int = 4443
    #: The bridge's status port.
    bridge_port: int = 8100
    #: The local Vertex AI API (pipeline jobs) emulator.
    vertex_port: int = 8090
    #: Jobs the Vertex AI emulator runs at once (the rest wait PENDING).
    vertex_max_concurrent_jobs: int = 1
    #: Whether the Vertex AI emulator trains jobs (False: jobs fail after reading their data).
    vertex_trainer: bool = True
    #: Torch threads per training worker (0: every core).
    vertex_worker_threads: int = 0
    #: Seconds the Vertex AI emulator's ``pipelineJobs.create`` waits after storing the job
    #: before it answers (simulated latency, for fault tests; 0: none).
    vertex_create_delay_seconds: float = 0.0
    #: Extra environment variables of the local Vertex AI API, over the calling shell's: e.g.
    #: ``DISTILLERY_LOCAL_TEACHERS`` (a local teacher for batch prediction) or the batch fault
    #: injection variables (which the calling shell's environment never sets for it).
    vertex_env: Mapping[str, str] = field(default_factory=dict)
    #: The first function's port; the next functions take the following ports.
    functions_port: int = 8101
    state_dir: Path = field(default_factory=default_state_dir)
    routes: tuple[Route, ...] = ROUTES
    #: The functions' source file (default ``<repo>/functions/main.py``).
    functions_source: Path | None = None
    notifications_topic: str = DEFAULT_NOTIFICATIONS_TOPIC
    #: Programs; default: found by :func:`~distillery.local.stack.tools.find_tools`.
    java: str | None = None
    sdk_root: Path | None = None
    fake_gcs_server: Path | None = None
    jvm_heap: str = "256m"
    startup_timeout: float = 60.0
    stop_grace: float = 5.0
    #: Dead-letter policy and redelivery of the bridge subscriptions.
    max_delivery_attempts: int = 5
    ack_deadline_seconds: int = 600
    backoff_base_seconds: int = 1
    max_backoff_seconds: int = 60
    bridge_concurrency: int = 4
    #: Restarts of a dead function allowed per ``function_restart_window_seconds`` (then it
    #: stays down, so a function that crashes on start does not spin).
    function_max_restarts: int = 5
    function_restart_window_seconds: float = 60.0
    #: Extra environment variables for the functions (e.g. settings overrides).
    function_env: Mapping[str, str] = field(default_factory=dict)
    #: The functions' ``DISTILLERY_BACKEND``. Empty: the calling environment's (an exported
    #: ``DISTILLERY_BACKEND``), else the product's default backend (gemini).
    backend: str = ""
    #: Seconds between two calls of ``poll_tuning_jobs``; 0: its route's interval (60 s, the
    #: deployed schedule). ``distillery dev up`` reads ``$DISTILLERY_DEV_POLL_TUNING_JOBS_SECONDS``.
    poll_tuning_jobs_seconds: int = 0

    @classmethod
    def ephemeral(cls, state_dir: Path, **changes: Any) -> StackConfig:
        """A config on free ports (picked at start), for tests."""
        ports = dict.fromkeys(
            (
                "pubsub_port",
                "firestore_port",
                "gcs_port",
                "bridge_port",
                "vertex_port",
                "functions_port",
            ),
            0,
        )
        return cls(state_dir=state_dir, **{**ports, **changes})

    def settings(self, environ: Mapping[str, str] | None = None) -> Settings:
        """The product settings for this stack (topic names etc. from ``environ``).

        Raises:
            ConfigurationError: a setting in ``environ`` is malformed.
        """
        environ = os.environ if environ is None else environ
        overrides = {**environ, **self.function_env}
        if self.backend:
            overrides[Settings.env_name("backend")] = self.backend
        return Settings.from_env(
            overrides, project=self.project, bucket=self.bucket, region=self.region
        )

    def every_seconds(self, route: Route) -> int:
        """Seconds between two calls of the scheduled function of ``route``.

        Raises:
            ValueError: ``route`` is not a scheduled one.
        """
        if not isinstance(route.trigger, Scheduled):
            raise ValueError(f"route {route.target} is not scheduled")
        if route.target == POLL_TUNING_JOBS_TARGET and self.poll_tuning_jobs_seconds > 0:
            return self.poll_tuning_jobs_seconds
        return route.trigger.every_seconds


@dataclass
class StackState:
    """A running stack as recorded on disk: its services, ports and client environment."""

    state_dir: Path
    project: str
    bucket: str
    env: dict[str, str]
    services: dict[str, ServiceRecord]
    started_at: str = ""
    settings_env: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The state file."""
        return self.state_dir / STATE_FILE

    def save(self) -> None:
        """Write the state file (atomically)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "version": 1,
            "project": self.project,
            "bucket": self.bucket,
            "started_at": self.started_at,
            "env": self.env,
            "settings_env": self.settings_env,
            "services": {name: record.to_json() for name, record in self.services.items()},
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2))
        temporary.replace(self.path)

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        """The state recorded in ``state_dir``, or None when there is none.

        Raises:
            StackNotRunningError: the state file is unreadable (remove it by hand).
        """
        path = state_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                state_dir=state_dir,
                project=str(data["project"]),
                bucket=str(data["bucket"]),
                env={str(k): str(v) for k, v in data["env"].items()},
                services={
                    name: ServiceRecord.from_json(record)
                    for name, record in data["services"].items()
                },
                started_at=str(data.get("started_at", "")),
                settings_env={str(k): str(v) for k, v in data.get("settings_env", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StackNotRunningError(f"unreadable stack state {path}: {exc}") from exc

    def running(self) -> dict[str, bool]:
        """Service name → whether its recorded process is still alive."""
        return {name: is_running(record) for name, record in self.services.items()}

    def any_running(self) -> bool:
        """Whether any recorded process is alive."""
        return any(self.running().values())

    def health(self) -> dict[str, bool]:
        """Service name → alive and answering its probe."""
        return {
            name: is_running(record) and probe(record) for name, record in self.services.items()
        }

    def supervised(self) -> dict[str, SupervisedStatus | None]:
        """Supervised service name → its current child and restart count (None: not yet known)."""
        return supervised_status(self.services)

    def stop(self, grace: float = 5.0) -> None:
        """Stop every recorded process (and only those), bridge first, then forget the state."""
        _stop_all(self.services, grace=grace)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / BRIDGE_CONFIG_FILE).unlink()


def supervised_status(
    services: Mapping[str, ServiceRecord],
) -> dict[str, SupervisedStatus | None]:
    """For each supervised service: its supervisor's status file (None while it is unreadable)."""
    return {
        name: SupervisedStatus.read(Path(record.status_file))
        for name, record in services.items()
        if record.status_file is not None
    }


def _stop_all(
    services: Mapping[str, ServiceRecord],
    *,
    grace: float,
    processes: Mapping[str, subprocess.Popen[bytes]] | None = None,
) -> None:
    """Stop the bridge first (no delivery to a dying function), then everything else at once."""
    first = [services[BRIDGE]] if BRIDGE in services else []
    rest = [record for name, record in services.items() if name != BRIDGE]
    stop_services(first, grace=grace, processes=processes)
    stop_services(rest, grace=grace, processes=processes)


class Stack:
    """One local stack. Use as a context manager, or ``start()`` … ``stop()``.

    ``start()`` leaves the processes running even after this object is gone (that is how
    ``distillery dev up`` detaches); only ``stop()`` (or ``StackState.stop``) ends them.
    """

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.settings = self.config.settings()
        self.services: dict[str, ServiceRecord] = {}
        self.ports: dict[str, int] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._started_at = ""

    # --- addresses --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The one interface every service binds."""
        return HOST

    @property
    def project(self) -> str:
        """The stack's project id."""
        return self.config.project

    @property
    def bucket(self) -> str:
        """The datasets bucket."""
        return self.config.bucket

    @property
    def pubsub_host(self) -> str:
        """``127.0.0.1:PORT`` of the Pub/Sub emulator (``PUBSUB_EMULATOR_HOST``)."""
        return f"{HOST}:{self.ports[PUBSUB]}"

    @property
    def firestore_host(self) -> str:
        """``127.0.0.1:PORT`` of the Firestore emulator (``FIRESTORE_EMULATOR_HOST``)."""
        return f"{HOST}:{self.ports[FIRESTORE]}"

    @property
    def storage_url(self) -> str:
        """``http://127.0.0.1:PORT`` of fake-gcs-server (``STORAGE_EMULATOR_HOST``)."""
        return f"http://{HOST}:{self.ports[GCS]}"

    @property
    def vertex_url(self) -> str:
        """The local Vertex AI API's endpoint (``DISTILLERY_VERTEX_API_ENDPOINT``)."""
        return f"http://{HOST}:{self.ports[VERTEX]}"

    @property
    def bridge_url(self) -> str:
        """The bridge's status server (``GET /healthz``)."""
        return f"http://{HOST}:{self.ports[BRIDGE]}"

    def function_url(self, target: str) -> str:
        """Where function ``target`` listens.

        Raises:
            KeyError: no route has that target.
        """
        return f"http://{HOST}:{self.ports[FUNCTION_PREFIX + target]}/"

    @property
    def env(self) -> dict[str, str]:
        """The client environment of this stack (what ``distillery dev env`` prints)."""
        env = {
            Settings.env_name("project"): self.project,
            Settings.env_name("bucket"): self.bucket,
            Settings.env_name("region"): self.config.region,
            # What the functions run on, so a shell pointed at the stack plans the same way.
            Settings.env_name("backend"): self.settings.backend,
        }
        if self.ports:
            env["STORAGE_EMULATOR_HOST"] = self.storage_url
            env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
            env["FIRESTORE_EMULATOR_HOST"] = self.firestore_host
            env[Settings.env_name("vertex_api_endpoint")] = self.vertex_url
        return env

    @property
    def functions_source(self) -> Path:
        """The functions' source file."""
        return (self.config.functions_source or default_functions_source()).resolve()

    @property
    def event_routes(self) -> list[Route]:
        """The routes fed by events (through the bridge's subscriptions)."""
        return [r for r in self.config.routes if not isinstance(r.trigger, Scheduled)]

    @property
    def scheduled_routes(self) -> list[Route]:
        """The routes the bridge calls on a schedule (HTTP functions)."""
        return [r for r in self.config.routes if isinstance(r.trigger, Scheduled)]

    def topics(self) -> list[str]:
        """Every topic the stack creates: the product's, the routes', notifications, their DLQs."""
        names = [getattr(self.settings, name) for name in PRODUCT_TOPIC_SETTINGS]
        for route in self.event_routes:
            names.append(self._route_topic(route))
        base = list(dict.fromkeys(names))
        return base + [dead_letter_topic(topic) for topic in base]

    def _route_topic(self, route: Route) -> str:
        if isinstance(route.trigger, StorageFinalized):
            return self.config.notifications_topic
        if isinstance(route.trigger, Scheduled):
            raise ValueError(f"the scheduled route {route.target} has no topic")
        return route.trigger.topic_name(self.settings)

    def dead_letter_subscriptions(self) -> dict[str, str]:
        """Dead-letter topic → its pull subscription (so nothing dead-lettered is lost)."""
        return {topic: f"{topic}-pull" for topic in self.topics() if topic.endswith("-dlq")}

    def managed_subscriptions(self) -> list[str]:
        """Every subscription the stack owns: the bridge's and the dead-letter pulls."""
        return [route.subscription for route in self.event_routes] + list(
            self.dead_letter_subscriptions().values()
        )

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Stack:
        """Start every service, wait until each answers, create topics, subscriptions, bucket.

        On failure everything already started is stopped again.

        Raises:
            MissingToolError: Java, an emulator, fake-gcs-server or the functions source is missing.
            PortInUseError: a configured port is taken.
            ServiceStartError: a service exited or did not become ready in time (with its log).
        """
        if self.services:
            raise ServiceStartError("this stack is already started")
        tools = find_tools(
            java=self.config.java,
            sdk_root=self.config.sdk_root,
            fake_gcs_server=self.config.fake_gcs_server,
        )
        if self.config.routes and not self.functions_source.is_file():
            raise MissingToolError(
                f"the functions source {self.functions_source} does not exist "
                "(set StackConfig.functions_source / --functions-source)"
            )
        self._assign_ports()
        self._started_at = datetime.now(UTC).isoformat()
        started = time.monotonic()
        deadline = started + self.config.startup_timeout
        try:
            self._launch(tools, deadline)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "local stack ready in %.1f s",
            time.monotonic() - started,
            extra={"ports": self.ports, "state_dir": str(self.config.state_dir)},
        )
        return self

    def _assign_ports(self) -> None:
        config = self.config
        wanted = {
            PUBSUB: config.pubsub_port,
            FIRESTORE: config.firestore_port,
            GCS: config.gcs_port,
            BRIDGE: config.bridge_port,
            VERTEX: config.vertex_port,
        }
        for index, route in enumerate(config.routes):
            port = config.functions_port + index if config.functions_port else 0
            wanted[FUNCTION_PREFIX + route.target] = port
        check_ports_free({name: port for name, port in wanted.items() if port})
        chosen: set[int] = set()
        for name, port in wanted.items():
            while not port or port in chosen:
                port = free_port()
            chosen.add(port)
            self.ports[name] = port

    def _launch(self, tools: Tools, deadline: float) -> None:
        logs = self.config.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        base_env = dict(os.environ)
        # Our own emulator variables must not leak into a service from the calling shell.
        for name in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
            base_env.pop(name, None)
        config = self.config

        heap = config.jvm_heap
        self._spawn(
            PUBSUB,
            _services.pubsub_emulator(tools, self.ports[PUBSUB], jvm_heap=heap, env=base_env),
        )
        self._spawn(
            FIRESTORE,
            _services.firestore_emulator(tools, self.ports[FIRESTORE], jvm_heap=heap, env=base_env),
        )
        self._spawn(
            VERTEX,
            _services.vertex_api(
                self.ports[VERTEX],
                data_dir=config.state_dir / "vertex",
                max_concurrent_jobs=config.vertex_max_concurrent_jobs,
                trainer=config.vertex_trainer,
                worker_threads=config.vertex_worker_threads,
                create_delay_seconds=config.vertex_create_delay_seconds,
                env={**base_env, **self.env},
                extra_env=config.vertex_env,
            ),
        )
        function_env = {**base_env, **self.env, **config.function_env}
        for route in config.routes:
            name = FUNCTION_PREFIX + route.target
            status_path = self.config.state_dir / "supervisor" / f"{route.target}.json"
            status_path.unlink(missing_ok=True)
            command = _services.function(
                route, self.ports[name], source=self.functions_source, env=function_env
            )
            self._spawn(
                name,
                _services.supervised(
                    command,
                    status_path=status_path,
                    max_restarts=config.function_max_restarts,
                    window_seconds=config.function_restart_window_seconds,
                ),
                status_file=status_path,
            )

        self._wait(PUBSUB, deadline)
        self.provision_pubsub()

        self._spawn(
            GCS,
            _services.fake_gcs_server(
                tools,
                self.ports[GCS],
                project=self.project,
                notifications_topic=config.notifications_topic,
                pubsub_host=self.pubsub_host,
                env=base_env,
            ),
        )
        self._wait(GCS, deadline)
        self.create_bucket()

        config_path = config.state_dir / BRIDGE_CONFIG_FILE
        config_path.write_text(self.bridge_config().to_json())
        self._spawn(BRIDGE, _services.bridge(config_path, env=base_env))
        for name in self.services:
            self._wait(name, deadline)

    def _spawn(
        self, name: str, command: _services.ServiceCommand, *, status_file: Path | None = None
    ) -> None:
        log = self.config.state_dir / "logs" / f"{name.replace(':', '-')}.log"
        log.unlink(missing_ok=True)
        logger.debug("starting %s: %s", name, " ".join(command.argv))
        process = spawn(command.argv, log_path=log, env=command.env, cwd=command.cwd)
        self._processes[name] = process
        port = self.ports[name]
        self.services[name] = ServiceRecord(
            name=name,
            pid=process.pid,
            port=port,
            url=f"http://{HOST}:{port}",
            probe_path=command.probe_path,
            probe_statuses=command.ready_statuses,
            log=str(log),
            start_time=process_start_time(process.pid),
            status_file=None if status_file is None else str(status_file),
        )

    def _wait(self, name: str, deadline: float) -> None:
        wait_ready(self.services[name], deadline=deadline, exited=self._processes[name].poll)

    def stop(self) -> None:
        """Stop every process this stack started (process groups: JVMs and workers included)."""
        _stop_all(self.services, grace=self.config.stop_grace, processes=self._processes)
        self.services.clear()
        self._processes.clear()
        for client in (self._publisher, self._subscriber):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.transport.close()
        self._publisher = self._subscriber = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def state(self) -> StackState:
        """What ``distillery dev`` records about this (started) stack."""
        settings_env = {
            Settings.env_name(name): str(getattr(self.settings, name))
            for name in PRODUCT_TOPIC_SETTINGS
        }
        return StackState(
            state_dir=self.config.state_dir,
            project=self.project,
            bucket=self.bucket,
            env=self.env,
            services=dict(self.services),
            started_at=self._started_at,
            settings_env=settings_env,
        )

    def function_pid(self, target: str) -> int:
        """The PID of function ``target``'s server process right now (the supervisor's child).

        Raises:
            KeyError: no route has that target.
            StackNotRunningError: the function's supervisor has not named its child (yet).
        """
        status = supervised_status({target: self.services[FUNCTION_PREFIX + target]}).get(target)
        if status is None:
            raise StackNotRunningError(f"function {target} has no running server process")
        return status.pid

    def health(self) -> dict[str, bool]:
        """Service name → whether it is alive and answers its probe."""
        return {
            name: is_running(record) and probe(record) for name, record in self.services.items()
        }

    # --- resources --------------------------------------------------------------------------

    def bridge_config(self) -> BridgeConfig:
        """The bridge's configuration for this stack's routes and ports."""
        routes = tuple(
            BridgeRoute(
                target=route.target,
                kind=KIND_STORAGE if isinstance(route.trigger, StorageFinalized) else KIND_PUBSUB,
                subscription=route.subscription,
                topic=self._route_topic(route),
                url=self.function_url(route.target),
            )
            for route in self.event_routes
        )
        schedules = tuple(
            BridgeSchedule(
                target=route.target,
                url=self.function_url(route.target),
                every_seconds=self.config.every_seconds(route),
            )
            for route in self.config.routes
            if isinstance(route.trigger, Scheduled)
        )
        return BridgeConfig(
            project=self.project,
            bucket=self.bucket,
            pubsub_host=self.pubsub_host,
            status_port=self.ports[BRIDGE],
            routes=routes,
            schedules=schedules,
            concurrency=self.config.bridge_concurrency,
            backoff_base_seconds=self.config.backoff_base_seconds,
            max_backoff_seconds=self.config.max_backoff_seconds,
            request_timeout_seconds=max(1.0, self.config.ack_deadline_seconds - 60.0),
        )

    def publisher(self) -> pubsub_v1.PublisherClient:
        """The stack's own Pub/Sub publisher client (built on first use)."""
        if self._publisher is None:
            from distillery.local.stack._clients import publisher_client

            self._publisher = publisher_client(self.pubsub_host)
        return self._publisher

    def subscriber(self) -> pubsub_v1.SubscriberClient:
        """The stack's own Pub/Sub subscriber client (built on first use)."""
        if self._subscriber is None:
            from distillery.local.stack._clients import subscriber_client

            self._subscriber = subscriber_client(self.pubsub_host)
        return self._subscriber

    def provision_pubsub(self) -> None:
        """Create every topic and subscription that is missing (idempotent).

        Bridge subscriptions get a dead-letter policy to ``<topic>-dlq`` and a long ack deadline
        (the bridge holds a message while the function runs); each dead-letter topic gets a pull
        subscription.

        Raises:
            ServiceStartError: the emulator refused a request.
        """
        from google.api_core import exceptions as api_exceptions

        publisher, subscriber = self.publisher(), self.subscriber()
        project = self.project
        try:
            for topic in self.topics():
                with contextlib.suppress(api_exceptions.AlreadyExists):
                    publisher.create_topic(request={"name": publisher.topic_path(project, topic)})
            for route in self.event_routes:
                topic = self._route_topic(route)
                request = {
                    "name": subscriber.subscription_path(project, route.subscription),
                    "topic": publisher.topic_path(project, topic),
                    "ack_deadline_seconds": self.config.ack_deadline_seconds,
                    "dead_letter_policy": {
                        "dead_letter_topic": publisher.topic_path(
                            project, dead_letter_topic(topic)
                        ),
                        "max_delivery_attempts": self.config.max_delivery_attempts,
                    },
                }
                with contextlib.suppress(api_exceptions.AlreadyExists):
                    subscriber.create_subscription(request=request)
            for topic, subscription in self.dead_letter_subscriptions().items():
                with contextlib.suppress(api_exceptions.AlreadyExists):
                    subscriber.create_subscription(
                        request={
                            "name": subscriber.subscription_path(project, subscription),
                            "topic": publisher.topic_path(project, topic),
                        }
                    )
        except api_exceptions.GoogleAPICallError as exc:
            raise ServiceStartError(f"could not create Pub/Sub resources: {exc}") from exc

    def create_bucket(self) -> None:
        """Create the datasets bucket in fake-gcs-server (idempotent).

        Raises:
            ServiceStartError: fake-gcs-server refused.
        """
        status, body = local_request(
            "POST",
            f"{self.storage_url}/storage/v1/b?project={urllib.parse.quote(self.project)}",
            {"name": self.bucket},
        )
        if status not in (200, 409):
            raise ServiceStartError(f"could not create bucket {self.bucket}: {status} {body!r}")
