"""``python -m distillery.local.emulator --host 127.0.0.1 --port PORT [--max-concurrent-jobs N]``.

Jobs are trained by the local trainer (:mod:`distillery.local.trainer`, in worker processes) unless
``--no-trainer`` is given or torch / transformers are not installed: then every job fails after
reading its data, saying no trainer is installed. ``--data-dir`` (or
``DISTILLERY_EMULATOR_DATA_DIR``) keeps job work directories and downloaded model artifacts;
``--trainer-module`` names another module with the trainer's API (for tests);
``--worker-threads`` caps torch's threads per worker.

Everything else comes from the environment through :meth:`Settings.from_env`
(``GOOGLE_CLOUD_PROJECT``, ``DISTILLERY_JOB_EVENTS_TOPIC``, ``DISTILLERY_TEMPLATE_URI``,
``DISTILLERY_LONG_CONTEXT_STUDENTS``, ...) and :mod:`distillery.local.emulator._config`
(``DISTILLERY_LOCAL_STUDENTS``, ``DISTILLERY_LOCAL_TEACHERS``); the Cloud Storage and Pub/Sub
clients follow ``STORAGE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST``. Ready when
``GET http://HOST:PORT/`` answers 200. Stops cleanly on SIGTERM or SIGINT (running workers are
stopped).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from distillery.core.errors import ConfigurationError
from distillery.core.logs import setup_logging
from distillery.core.settings import Settings
from distillery.local.emulator._config import (
    DEFAULT_TRAINER_MODULE,
    BatchFaults,
    TrainerOptions,
    create_delay_seconds,
)

logger = logging.getLogger("distillery.local.emulator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m distillery.local.emulator",
        description="The local Vertex AI API emulator (pipelineJobs create/get/list/cancel).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to bind (0: any free one)")
    parser.add_argument(
        "--max-concurrent-jobs",
        type=int,
        default=1,
        help="how many jobs run at a time; the others wait PENDING (default 1)",
    )
    parser.add_argument(
        "--template-uri",
        action="append",
        default=[],
        help="another known pipeline template besides DISTILLERY_TEMPLATE_URI (repeatable)",
    )
    parser.add_argument(
        "--no-trainer",
        action="store_true",
        help="install no trainer: jobs fail after reading their data, models cannot be served",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="job work directories and the model artifact cache "
        "(default: DISTILLERY_EMULATOR_DATA_DIR, else a temporary directory)",
    )
    parser.add_argument(
        "--trainer-module",
        default=DEFAULT_TRAINER_MODULE,
        help=f"the module with the trainer API (default {DEFAULT_TRAINER_MODULE})",
    )
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=None,
        help="torch threads per training worker (default: every core)",
    )
    return parser


def trainer_options(args: argparse.Namespace, settings: Settings) -> TrainerOptions | None:
    """The trainer to install, or None (``--no-trainer``, or torch/transformers missing).

    Raises:
        ConfigurationError: a ``DISTILLERY_LOCAL_*`` variable or a flag is malformed.
    """
    if args.no_trainer:
        return None
    if args.trainer_module == DEFAULT_TRAINER_MODULE:
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            logger.warning(
                "no trainer installed in the Vertex AI emulator: jobs will fail",
                extra={"missing_modules": missing},
            )
            return None
    if args.worker_threads is not None and args.worker_threads < 1:
        raise ConfigurationError("--worker-threads must be at least 1")
    overrides: dict[str, Any] = {
        "trainer_module": args.trainer_module,
        "long_context_students": settings.long_context_student_list,
        "num_threads": args.worker_threads,
    }
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    return TrainerOptions.from_env(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (1: could not start)."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        setup_logging(settings.log_level)
        settings.require("project")
        if args.max_concurrent_jobs < 1:
            raise ConfigurationError("--max-concurrent-jobs must be at least 1")
        trainer = trainer_options(args, settings)
        create_delay = create_delay_seconds()
        batch_faults = BatchFaults.from_env()
    except ConfigurationError as exc:
        setup_logging()
        logger.error("the Vertex AI emulator cannot start", extra={"error": str(exc)})
        return 1

    from distillery.adapters import GcsObjectStore, PubsubPublisher
    from distillery.local.emulator import create_server

    try:
        server = create_server(
            settings,
            object_store=GcsObjectStore(project=settings.project),
            publisher=PubsubPublisher(settings.project),
            host=args.host,
            port=args.port,
            max_concurrent_jobs=args.max_concurrent_jobs,
            extra_template_uris=tuple(args.template_uri),
            trainer=trainer,
            create_delay_seconds=create_delay,
            batch_faults=batch_faults,
        )
    except OSError as exc:
        logger.error(
            "the Vertex AI emulator cannot bind its address",
            extra={"host": args.host, "port": args.port, "error": str(exc)},
        )
        return 1

    if batch_faults:
        logger.warning(
            "fault injection: batch prediction request lines will fail on purpose",
            extra=batch_faults.env(),
        )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("stopping the Vertex AI emulator", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    logger.info(
        "the Vertex AI emulator is serving",
        extra={
            "url": server.url,
            "project": settings.project,
            "events_topic": settings.job_events_topic,
            "max_concurrent_jobs": args.max_concurrent_jobs,
            "trainer": trainer.trainer_module if trainer else None,
        },
    )
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
