"""The local Eventarc: pulls each route's subscription and POSTs production-shaped CloudEvents.

Run as ``python -m distillery.local.stack.bridge --config FILE`` (the stack starts it). For every
route a pull loop feeds a small thread pool, so one slow function never blocks another delivery.
A 2xx answer acknowledges the message; anything else (or no answer) leaves it unacknowledged with
its ack deadline set to an exponential backoff (1 s, 2 s, 4 s … capped), so Pub/Sub delivers it
again — and after ``max_delivery_attempts`` the subscription's dead-letter policy moves it to
``<topic>-dlq`` (the emulator counts pull deliveries and dead-letters them, verified).

The bridge never crashes on Pub/Sub trouble (emulator restarted, subscriptions reset): it logs and
retries. ``GET /healthz`` on its status port reports deliveries in flight.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from distillery.core.errors import InvalidEventError
from distillery.core.logs import setup_logging
from distillery.local.stack.bridge_config import (
    KIND_STORAGE,
    BridgeConfig,
    BridgeRoute,
    BridgeSchedule,
)
from distillery.local.stack.eventarc import (
    InboundMessage,
    message_published_event,
    storage_finalized_event,
)

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.pubsub_v1.types import ReceivedMessage

# Named after the module even when run with ``python -m`` (where __name__ is "__main__").
logger = logging.getLogger(__spec__.name if __spec__ else __name__)

#: How long one pull may wait. The emulator answers an empty pull after ~2 s; a pull on a
#: subscription deleted meanwhile (emulator ``/reset``) hangs until this client-side timeout.
_PULL_TIMEOUT_SECONDS = 5.0
#: Pause after a Pub/Sub error before pulling again (the emulator may be restarting).
_ERROR_PAUSE_SECONDS = 1.0


class Bridge:
    """Pull loops and deliveries for every route of a :class:`BridgeConfig`."""

    def __init__(
        self, config: BridgeConfig, subscriber: pubsub_v1.SubscriberClient | None = None
    ) -> None:
        self.config = config
        self._subscriber = subscriber
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._inflight = 0
        self._counts = {"delivered": 0, "failed": 0, "ignored": 0}
        self._threads: list[threading.Thread] = []
        self._pools: list[ThreadPoolExecutor] = []

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        """The Pub/Sub subscriber client (built on first use)."""
        if self._subscriber is None:
            from distillery.local.stack._clients import subscriber_client

            self._subscriber = subscriber_client(self.config.pubsub_host)
        return self._subscriber

    def start(self) -> None:
        """Start one pull loop (and thread pool) per route."""
        _ = self.subscriber
        for route in self.config.routes:
            pool = ThreadPoolExecutor(
                max_workers=self.config.concurrency, thread_name_prefix=f"deliver-{route.target}"
            )
            self._pools.append(pool)
            thread = threading.Thread(
                target=self._pull_loop, args=(route, pool), name=f"pull-{route.target}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for schedule in self.config.schedules:
            thread = threading.Thread(
                target=self._schedule_loop, args=(schedule,), name=f"schedule-{schedule.target}",
                daemon=True,
            )  # fmt: skip
            thread.start()
            self._threads.append(thread)
        logger.info(
            "bridge started",
            extra={"routes": [f"{r.subscription} -> {r.url}" for r in self.config.routes]},
        )

    def _schedule_loop(self, schedule: BridgeSchedule) -> None:
        """POST to a scheduled function every ``every_seconds``, as Cloud Scheduler would."""
        while not self._stop.wait(schedule.every_seconds):
            started = time.monotonic()
            headers = {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler"}
            request = urllib.request.Request(
                schedule.url, data=b"{}", method="POST", headers=headers
            )
            try:
                with urllib.request.urlopen(
                    request, timeout=self.config.request_timeout_seconds
                ) as response:
                    status: int | str = int(response.status)
            except urllib.error.HTTPError as exc:
                status = int(exc.code)
            except OSError as exc:
                status = f"unreachable: {exc}"
            logger.info(
                "scheduled call",
                extra={
                    "target": schedule.target,
                    "status": status,
                    "latency_ms": round((time.monotonic() - started) * 1000),
                },
            )

    def stop(self, timeout: float = 1.0) -> None:
        """Stop pulling; deliveries in flight are left to finish or be redelivered."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:  # daemons, possibly inside a long pull: do not wait long
            thread.join(max(0.0, deadline - time.monotonic()))
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)

    def status(self) -> dict[str, Any]:
        """Deliveries in flight and counts so far (served on ``GET /healthz``)."""
        with self._lock:
            return {"inflight": self._inflight, **self._counts}

    # --- pulling ----------------------------------------------------------------------------

    def _pull_loop(self, route: BridgeRoute, pool: ThreadPoolExecutor) -> None:
        """Pull while there is a free delivery slot; never raises."""
        path = f"projects/{self.config.project}/subscriptions/{route.subscription}"
        slots = threading.BoundedSemaphore(self.config.concurrency)
        last_error = ""
        while not self._stop.is_set():
            if not slots.acquire(timeout=0.5):
                continue
            free = 1
            while free < self.config.concurrency and slots.acquire(blocking=False):
                free += 1
            try:
                response = self.subscriber.pull(
                    request={"subscription": path, "max_messages": free},
                    timeout=_PULL_TIMEOUT_SECONDS,
                    retry=None,
                )
                received = list(response.received_messages)
                last_error = ""
            except Exception as exc:  # any Pub/Sub or transport fault: log, pause, retry
                received = []
                if not _is_deadline(exc):
                    error = f"{type(exc).__name__}: {exc}"
                    if error != last_error:  # once per distinct error, not once a second
                        logger.warning(
                            "pull failed; retrying",
                            extra={"route": route.target, "error": error},
                        )
                        last_error = error
                    self._stop.wait(_ERROR_PAUSE_SECONDS)
            for _ in range(free - len(received)):
                slots.release()
            for message in received:
                with self._lock:
                    self._inflight += 1
                pool.submit(self._deliver_and_release, route, path, message, slots)

    def _deliver_and_release(
        self,
        route: BridgeRoute,
        path: str,
        received: ReceivedMessage,
        slots: threading.BoundedSemaphore,
    ) -> None:
        try:
            self._deliver(route, path, received)
        except Exception:  # a bug here must not kill the pool thread or leak the slot
            logger.exception("delivery crashed", extra={"route": route.target})
        finally:
            with self._lock:
                self._inflight -= 1
            slots.release()

    # --- delivering -------------------------------------------------------------------------

    def _deliver(self, route: BridgeRoute, path: str, received: ReceivedMessage) -> None:
        """POST one message as a CloudEvent; ack on 2xx, otherwise back off for redelivery."""
        message = received.message
        inbound = InboundMessage(
            message_id=message.message_id,
            data=bytes(message.data),
            attributes=dict(message.attributes),
            publish_time=_as_datetime(message.publish_time),
        )
        attempt = max(1, int(received.delivery_attempt))
        started = time.monotonic()
        fields: dict[str, Any] = {
            "route": route.target,
            "message_id": inbound.message_id,
            "attempt": attempt,
        }
        try:
            event = self._to_event(route, inbound)
        except InvalidEventError as exc:
            # Undeliverable: let the dead-letter policy keep it rather than drop it.
            self._retry_later(path, received, attempt, {**fields, "status": "invalid"}, str(exc))
            return
        if event is None:
            self._ack(path, received, fields)
            with self._lock:
                self._counts["ignored"] += 1
            logger.info("ignored", extra={**fields, "status": "ignored"})
            return
        status, detail = self._post(route.url, event)
        fields["status"] = status
        fields["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        if isinstance(status, int) and 200 <= status < 300:
            self._ack(path, received, fields)
            with self._lock:
                self._counts["delivered"] += 1
            logger.info("delivered", extra=fields)
        else:
            self._retry_later(path, received, attempt, fields, detail)

    def _to_event(self, route: BridgeRoute, inbound: InboundMessage) -> CloudEvent | None:
        if route.kind == KIND_STORAGE:
            return storage_finalized_event(inbound, self.config.bucket)
        return message_published_event(
            inbound,
            project=self.config.project,
            topic=route.topic,
            subscription=route.subscription,
        )

    def _post(self, url: str, event: CloudEvent) -> tuple[int | str, str]:
        """POST ``event`` in binary content mode; the HTTP status, or an error label."""
        headers, body = to_binary(event)
        payload = body if isinstance(body, bytes) else str(body).encode("utf-8")
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(
                request, timeout=self.config.request_timeout_seconds
            ) as response:
                return int(response.status), ""
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read(500).decode("utf-8", errors="replace")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # A function that died mid-request resets the connection (an OSError) or leaves a
            # truncated answer (an HTTPException such as IncompleteRead): redeliver either way.
            return "unreachable", f"{type(exc).__name__}: {exc}"

    def _ack(self, path: str, received: ReceivedMessage, fields: dict[str, Any]) -> None:
        try:
            self.subscriber.acknowledge(
                request={"subscription": path, "ack_ids": [received.ack_id]}
            )
        except Exception as exc:  # subscription reset meanwhile: nothing left to ack
            logger.warning("ack failed", extra={**fields, "error": str(exc)})

    def _retry_later(
        self,
        path: str,
        received: ReceivedMessage,
        attempt: int,
        fields: dict[str, Any],
        detail: str,
    ) -> None:
        backoff = min(
            self.config.max_backoff_seconds,
            self.config.backoff_base_seconds * 2 ** min(attempt - 1, 16),
        )
        with self._lock:
            self._counts["failed"] += 1
        logger.warning(
            "delivery failed; will be redelivered",
            extra={**fields, "retry_in_s": backoff, "detail": detail[:500]},
        )
        try:
            self.subscriber.modify_ack_deadline(
                request={
                    "subscription": path,
                    "ack_ids": [received.ack_id],
                    "ack_deadline_seconds": backoff,
                }
            )
        except Exception as exc:  # the message comes back when its deadline expires anyway
            logger.warning("modify_ack_deadline failed", extra={**fields, "error": str(exc)})


def _is_deadline(exc: Exception) -> bool:
    from google.api_core import exceptions as api_exceptions

    return isinstance(exc, api_exceptions.DeadlineExceeded)


def _as_datetime(value: Any) -> datetime:
    """A protobuf timestamp (as the client returns it) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if hasattr(value, "ToDatetime"):
        return value.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]
    return datetime.now(UTC)


class _StatusHandler(BaseHTTPRequestHandler):
    bridge: Bridge

    def do_GET(self) -> None:
        if self.path.rstrip("/") not in ("", "/healthz"):
            self.send_error(404)
            return
        body = json.dumps(self.bridge.status()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""


def serve(config: BridgeConfig) -> None:
    """Run the bridge and its status server until SIGTERM or SIGINT."""
    bridge = Bridge(config)
    bridge.start()
    handler = type("StatusHandler", (_StatusHandler,), {"bridge": bridge})
    server = ThreadingHTTPServer(("127.0.0.1", config.status_port), handler)
    server.daemon_threads = True

    def _shutdown(signum: int, _frame: Any) -> None:
        logger.info("bridge stopping", extra={"signal": signum})
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        bridge.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m distillery.local.stack.bridge``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m distillery.local.stack.bridge")
    parser.add_argument("--config", type=Path, required=True, help="the bridge's JSON config")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = BridgeConfig.from_file(args.config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.error("cannot read the bridge configuration %s: %s", args.config, exc)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
