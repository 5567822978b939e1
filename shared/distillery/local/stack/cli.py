"""``distillery dev up | down | status | env``: the local stack for people.

``up`` starts the stack detached and records it in a state directory; ``down`` stops exactly the
recorded processes; ``status`` probes them; ``env`` prints ``export`` lines for
``eval "$(distillery dev env)"``. Exit codes: 0 ok, 2 usage, 3 a service problem.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from distillery.core.errors import ConfigurationError
from distillery.local.stack.control import (
    DEFAULT_BUCKET,
    DEFAULT_PROJECT,
    POLL_TUNING_JOBS_TARGET,
    STATE_DIR_VARIABLE,
    Stack,
    StackConfig,
    StackState,
    default_poll_tuning_jobs_seconds,
    default_state_dir,
)
from distillery.local.stack.errors import LocalStackError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def register(subparsers: Any) -> None:
    """Add ``dev`` and its actions to the ``distillery`` command."""
    dev = subparsers.add_parser(
        "dev",
        help="run the local Google Cloud stack (emulators, functions, Eventarc bridge)",
        description="Run the local Google Cloud stack on 127.0.0.1.",
    )
    actions = dev.add_subparsers(dest="dev_action", metavar="ACTION", required=True)

    def with_state_dir(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help=f"where the stack records its PIDs, ports and logs (default "
            f"${STATE_DIR_VARIABLE} or ${{XDG_STATE_HOME:-~/.local/state}}/distillery/dev)",
        )
        return parser

    up = with_state_dir(actions.add_parser("up", help="start the stack in the background"))
    defaults = StackConfig(state_dir=Path("."))
    up.add_argument("--project", default=DEFAULT_PROJECT, help="project id (%(default)s)")
    up.add_argument("--bucket", default=DEFAULT_BUCKET, help="datasets bucket (%(default)s)")
    for option, value in (
        ("--pubsub-port", defaults.pubsub_port),
        ("--firestore-port", defaults.firestore_port),
        ("--gcs-port", defaults.gcs_port),
        ("--bridge-port", defaults.bridge_port),
        ("--vertex-port", defaults.vertex_port),
        ("--functions-port", defaults.functions_port),
    ):
        up.add_argument(option, type=_port, default=value, help="(default %(default)s; 0: any)")
    up.add_argument(
        "--functions-source",
        type=Path,
        default=None,
        help="the functions' main.py (default: <repo>/functions/main.py)",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    up.add_argument(
        "--no-teacher",
        dest="teacher",
        action="store_false",
        help="start the local Vertex AI API without a local teacher (batch prediction, and so "
        "the labeling of unlabeled datasets, then fails and says why)",
    )
    up.add_argument(
        "--teacher-cache",
        type=Path,
        default=None,
        help="where the local teacher is trained once and kept (default <state-dir>/teachers)",
    )
    up.set_defaults(handler=_up)

    with_state_dir(actions.add_parser("down", help="stop the stack")).set_defaults(handler=_down)
    status = with_state_dir(actions.add_parser("status", help="show each service up or down"))
    status.set_defaults(handler=_status)
    env = with_state_dir(actions.add_parser("env", help="print `export` lines for the stack"))
    env.set_defaults(handler=_env)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {port}")
    return port


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()


def _err(message: str) -> None:
    print(f"distillery dev: {message}", file=sys.stderr)


def _up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    try:
        existing = StackState.load(state_dir)
    except LocalStackError as exc:
        _err(f"{exc}; remove it if no stack runs")
        return EXIT_UNAVAILABLE
    if existing is not None:
        if existing.any_running():
            _err(
                f"a local stack is already running (state in {state_dir}); "
                "stop it first with `distillery dev down`"
            )
            return EXIT_UNAVAILABLE
        existing.stop()  # stale: every process is gone; forget it
    try:
        poll_seconds = default_poll_tuning_jobs_seconds()
    except ConfigurationError as exc:
        _err(str(exc))
        return EXIT_USAGE
    from distillery.local.trainer import TrainingError  # the trainer: only `up` needs it

    try:
        vertex_env, teacher_note = _local_teacher(args, state_dir)
    except (TrainingError, OSError) as exc:
        _err(f"the local teacher could not be trained: {exc} (--no-teacher starts without one)")
        return EXIT_UNAVAILABLE
    config = StackConfig(
        project=args.project,
        bucket=args.bucket,
        pubsub_port=args.pubsub_port,
        firestore_port=args.firestore_port,
        gcs_port=args.gcs_port,
        bridge_port=args.bridge_port,
        vertex_port=args.vertex_port,
        functions_port=args.functions_port,
        state_dir=state_dir,
        functions_source=args.functions_source,
        startup_timeout=args.timeout,
        poll_tuning_jobs_seconds=poll_seconds,
        vertex_env=vertex_env,
    )
    try:
        stack = Stack(config)
    except ConfigurationError as exc:  # a malformed DISTILLERY_* variable in this shell
        _err(str(exc))
        return EXIT_USAGE
    try:
        stack.start()
    except LocalStackError as exc:  # missing tools, taken ports, a service that did not start
        _err(str(exc))
        return EXIT_UNAVAILABLE
    try:
        state = stack.state()
        state.save()
    except BaseException:
        stack.stop()
        raise
    polls = [config.every_seconds(r) for r in config.routes if r.target == POLL_TUNING_JOBS_TARGET]
    polled = f", tuning jobs polled every {polls[0]} s" if polls else ""
    print(
        f"local stack up, backend {stack.settings.backend}{polled} (state and logs in {state_dir}):"
    )
    _print_services(state, dict.fromkeys(state.services, True))
    print(teacher_note)
    print()
    print('point a shell at it with: eval "$(distillery dev env)"')
    _print_exports(state)
    return EXIT_OK


def _local_teacher(args: argparse.Namespace, state_dir: Path) -> tuple[dict[str, str], str]:
    """The local Vertex AI API's extra environment for the local teacher ``up`` provides, and
    the line that says what it is.

    Unless ``--no-teacher`` or the shell's own ``DISTILLERY_LOCAL_TEACHERS``: the cached local
    teacher (trained on the first ``up``), standing in for every teacher model the product asks.

    Raises:
        TrainingError: the teacher cannot be trained.
        OSError: its cache cannot be written.
    """
    from distillery.local.emulator._config import LOCAL_TEACHERS_VARIABLE
    from distillery.local.teachers import STACK_TEACHER_MODELS, cached_local_teacher

    if not args.teacher:
        return {}, (
            "no local teacher (--no-teacher): batch prediction jobs, and so the labeling of "
            "unlabeled datasets, fail"
        )
    if os.environ.get(LOCAL_TEACHERS_VARIABLE, "").strip():
        return {}, f"local teachers: {LOCAL_TEACHERS_VARIABLE} of this shell"
    cache = Path(args.teacher_cache).expanduser() if args.teacher_cache else state_dir / "teachers"

    def training(directory: Path) -> None:
        print(
            f"training the local teacher (once; a minute or two on two cores) into {directory}",
            flush=True,
        )

    cached = cached_local_teacher(cache, on_training=training)
    teacher = cached.teacher
    return teacher.env(STACK_TEACHER_MODELS), (
        f"local teacher {teacher.model_dir} (held out: labels {teacher.label_accuracy:.0%}, "
        f"rationales {teacher.rationale_accuracy:.0%}) answers batch prediction for "
        f"{', '.join(STACK_TEACHER_MODELS)}; it was trained on the example task only"
    )


def _down(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    try:
        state = StackState.load(state_dir)
    except LocalStackError as exc:
        _err(str(exc))
        return EXIT_UNAVAILABLE
    if state is None:
        print(f"no local stack recorded in {state_dir}; nothing to stop")
        return EXIT_OK
    state.stop()
    print(f"local stack stopped ({len(state.services)} processes)")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    state = _running_state(args)
    if state is None:
        return EXIT_UNAVAILABLE
    health = state.health()
    _print_services(state, health)
    return EXIT_OK if all(health.values()) else EXIT_UNAVAILABLE


def _env(args: argparse.Namespace) -> int:
    state = _running_state(args)
    if state is None:
        return EXIT_UNAVAILABLE
    _print_exports(state)
    return EXIT_OK


def _running_state(args: argparse.Namespace) -> StackState | None:
    """The recorded stack if any of its processes is alive; else says so and returns None."""
    state_dir = _state_dir(args)
    try:
        state = StackState.load(state_dir)
    except LocalStackError as exc:
        _err(str(exc))
        return None
    if state is None or not state.any_running():
        _err(
            f"no local stack is running (state dir {state_dir}); start one with `distillery dev up`"
        )
        return None
    return state


def _print_services(state: StackState, health: dict[str, bool]) -> None:
    supervised = state.supervised()
    for name, record in state.services.items():
        mark = "up  " if health.get(name) else "DOWN"
        line = f"  {mark}  {name:<28} {record.url:<24} pid {record.pid:<8} log {record.log}"
        if name in supervised:
            status = supervised[name]
            line += f" restarts {'?' if status is None else status.restarts}"
        print(line)


def _print_exports(state: StackState) -> None:
    for name, value in state.env.items():
        print(f"export {name}={shlex.quote(value)}")
