"""``python -m distillery.emulator --host 127.0.0.1 --port PORT [--max-concurrent-jobs N]``.

Everything else comes from the environment through :meth:`Settings.from_env`
(``GOOGLE_CLOUD_PROJECT``, ``DISTILLERY_JOB_EVENTS_TOPIC``, ``DISTILLERY_TEMPLATE_URI``, ...); the
Cloud Storage and Pub/Sub clients follow ``STORAGE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST``.
Ready when ``GET http://HOST:PORT/`` answers 200. Stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from distillery.errors import ConfigurationError
from distillery.logs import setup_logging
from distillery.settings import Settings

logger = logging.getLogger("distillery.emulator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m distillery.emulator",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (1: could not start)."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        setup_logging(settings.log_level)
        settings.require("project")
        if args.max_concurrent_jobs < 1:
            raise ConfigurationError("--max-concurrent-jobs must be at least 1")
    except ConfigurationError as exc:
        setup_logging()
        logger.error("the Vertex AI emulator cannot start", extra={"error": str(exc)})
        return 1

    from distillery.adapters import GcsObjectStore, PubsubPublisher
    from distillery.emulator import create_server

    try:
        server = create_server(
            settings,
            object_store=GcsObjectStore(project=settings.project),
            publisher=PubsubPublisher(settings.project),
            host=args.host,
            port=args.port,
            max_concurrent_jobs=args.max_concurrent_jobs,
            extra_template_uris=tuple(args.template_uri),
        )
    except OSError as exc:
        logger.error(
            "the Vertex AI emulator cannot bind its address",
            extra={"host": args.host, "port": args.port, "error": str(exc)},
        )
        return 1

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
        },
    )
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
