"""How each of the stack's services is run: one definition per service.

The services: the Pub/Sub emulator, the Firestore emulator, fake-gcs-server, the local Vertex AI
API, one functions-framework server per route, and the bridge. Each function returns a
:class:`ServiceCommand` (the command line, environment, working directory and readiness probe of
one service) and starts nothing: :class:`~distillery.local.stack.control.Stack` spawns them in its
start order.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from distillery.local.emulator._config import BATCH_FAULT_VARIABLES, CREATE_DELAY_VARIABLE
from distillery.local.stack.processes import HOST
from distillery.local.stack.routes import Route, Scheduled
from distillery.local.stack.tools import Tools

#: JVM flags of both emulators: a quick start and a small footprint (C1 only, the serial collector).
_JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


@dataclass(frozen=True)
class ServiceCommand:
    """How to run one service and how to tell that it is ready."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    #: The readiness probe is a GET of this path, answered with one of ``ready_statuses``.
    probe_path: str = "/"
    ready_statuses: tuple[int, ...] = (200,)
    cwd: Path | None = None


def pubsub_emulator(
    tools: Tools, port: int, *, jvm_heap: str, env: Mapping[str, str]
) -> ServiceCommand:
    """Google's Pub/Sub emulator, run from its jar (killing the gcloud wrapper orphans the JVM)."""
    argv = (
        str(tools.java), f"-Xmx{jvm_heap}", *_JVM_FLAGS,
        "-jar", str(tools.pubsub_jar), f"--host={HOST}", f"--port={port}",
    )  # fmt: skip
    return ServiceCommand(argv=argv, env=env)


def firestore_emulator(
    tools: Tools, port: int, *, jvm_heap: str, env: Mapping[str, str]
) -> ServiceCommand:
    """Google's Firestore emulator in native mode, run from its jar."""
    argv = (
        str(tools.java), f"-Xmx{jvm_heap}", *_JVM_FLAGS,
        "-Duser.language=en", "-cp", str(tools.firestore_jar),
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
        f"--host={HOST}", f"--port={port}", "--database-mode=firestore-native",
    )  # fmt: skip
    return ServiceCommand(argv=argv, env=env)


def fake_gcs_server(
    tools: Tools,
    port: int,
    *,
    project: str,
    notifications_topic: str,
    pubsub_host: str,
    env: Mapping[str, str],
) -> ServiceCommand:
    """fake-gcs-server in memory, publishing object finalizations to ``notifications_topic``.

    The topic must exist before it starts: it silently drops events for a missing topic.
    """
    url = f"http://{HOST}:{port}"
    argv = (
        str(tools.fake_gcs_server), "-scheme", "http", "-host", HOST,
        "-port", str(port), "-backend", "memory",
        "-external-url", url, "-log-level", "warn",
        "-event.pubsub-project-id", project,
        "-event.pubsub-topic", notifications_topic,
        "-event.list", "finalize",
    )  # fmt: skip
    return ServiceCommand(
        argv=argv,
        # It finds the Pub/Sub emulator only through its own environment.
        env={**env, "PUBSUB_EMULATOR_HOST": pubsub_host},
        probe_path="/storage/v1/b",
    )


def vertex_api(
    port: int,
    *,
    data_dir: Path,
    max_concurrent_jobs: int,
    trainer: bool,
    worker_threads: int,
    env: Mapping[str, str],
    create_delay_seconds: float = 0.0,
    extra_env: Mapping[str, str] | None = None,
) -> ServiceCommand:
    """The project's local Vertex AI API (pipeline jobs, models, endpoints).

    ``extra_env`` (e.g. ``DISTILLERY_LOCAL_TEACHERS``, the batch fault injection variables) wins
    over ``env``.
    """
    argv = [
        sys.executable, "-m", "distillery.local.emulator", "--host", HOST,
        "--port", str(port),
        "--max-concurrent-jobs", str(max_concurrent_jobs),
        # Model caches and work directories stay with the stack's state, not in /tmp.
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    if not trainer:
        argv.append("--no-trainer")
    if worker_threads:
        argv += ["--worker-threads", str(worker_threads)]
    service_env = {**env, "PYTHONUNBUFFERED": "1"}
    # Only the stack decides: a delay in the calling shell never leaks into its emulator.
    for name in (CREATE_DELAY_VARIABLE, *BATCH_FAULT_VARIABLES):
        service_env.pop(name, None)
    if create_delay_seconds:
        service_env[CREATE_DELAY_VARIABLE] = repr(float(create_delay_seconds))
    service_env.update(extra_env or {})
    return ServiceCommand(argv=tuple(argv), env=service_env)


def function(route: Route, port: int, *, source: Path, env: Mapping[str, str]) -> ServiceCommand:
    """A functions-framework server for ``route``'s target in ``source``: once up, it answers the
    GET probe with 405."""
    # Scheduled functions are HTTP functions; they answer a GET probe with 405 too.
    signature = "http" if isinstance(route.trigger, Scheduled) else "cloudevent"
    argv = (
        sys.executable, "-m", "functions_framework",
        "--source", str(source), "--target", route.target,
        "--signature-type", signature, "--host", HOST, "--port", str(port),
    )  # fmt: skip
    return ServiceCommand(
        argv=argv,
        env={**env, "PYTHONUNBUFFERED": "1"},
        ready_statuses=(405,),
        cwd=source.parent,
    )


def supervised(
    command: ServiceCommand,
    *,
    status_path: Path,
    max_restarts: int,
    window_seconds: float,
) -> ServiceCommand:
    """``command`` run under :mod:`~distillery.local.stack.supervisor`: restarted when it dies
    (at most ``max_restarts`` times in ``window_seconds``), its child named in ``status_path``."""
    argv = (
        sys.executable, "-m", "distillery.local.stack.supervisor",
        "--status", str(status_path),
        "--max-restarts", str(max_restarts),
        "--window-seconds", str(window_seconds),
        "--", *command.argv,
    )  # fmt: skip
    return ServiceCommand(
        argv=argv,
        env=command.env,
        probe_path=command.probe_path,
        ready_statuses=command.ready_statuses,
        cwd=command.cwd,
    )


def bridge(config_path: Path, *, env: Mapping[str, str]) -> ServiceCommand:
    """The local Eventarc bridge, configured by the file at ``config_path``."""
    return ServiceCommand(
        argv=(sys.executable, "-m", "distillery.local.stack.bridge", "--config", str(config_path)),
        env={**env, "PYTHONUNBUFFERED": "1"},
        probe_path="/healthz",
    )
