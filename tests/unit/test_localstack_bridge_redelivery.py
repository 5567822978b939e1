"""The bridge redelivers (with backoff) an event whose function died during the request."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

from distillery.local.stack.bridge import Bridge
from distillery.local.stack.bridge_config import KIND_PUBSUB, BridgeConfig, BridgeRoute
from distillery.local.stack.processes import HOST, free_port


class _Subscriber:
    """Records what the bridge asks of Pub/Sub."""

    def __init__(self) -> None:
        self.acked: list[list[str]] = []
        self.deadlines: list[tuple[list[str], int]] = []

    def acknowledge(self, request: dict[str, Any]) -> None:
        self.acked.append(list(request["ack_ids"]))

    def modify_ack_deadline(self, request: dict[str, Any]) -> None:
        self.deadlines.append((list(request["ack_ids"]), int(request["ack_deadline_seconds"])))


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset, as the kernel does for a process killed mid-request."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _garbage(conn: socket.socket) -> None:
    """A torn answer: not an HTTP status line."""
    conn.sendall(b"HTTP/1.1 2")
    # Half-close and wait for the client, so it reads the torn line rather than a reset.
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(5.0)
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass
    conn.close()


def _silent_close(conn: socket.socket) -> None:
    conn.close()


@pytest.fixture
def dying_function() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A server that reads the request, then ends the connection as ``ending`` says."""
    servers: list[socket.socket] = []

    def start(ending: Callable[[socket.socket], None]) -> str:
        server = socket.socket()
        server.bind((HOST, 0))
        server.listen()
        servers.append(server)

        def serve() -> None:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            ending(conn)

        threading.Thread(target=serve, daemon=True).start()
        return f"http://{HOST}:{server.getsockname()[1]}/"

    yield start
    for server in servers:
        server.close()


def _bridge(url: str, subscriber: _Subscriber) -> tuple[Bridge, BridgeRoute]:
    route = BridgeRoute(target="launch_job", kind=KIND_PUBSUB, subscription="s", topic="t", url=url)
    config = BridgeConfig(
        project="p",
        bucket="b",
        pubsub_host="unused:1",
        status_port=0,
        routes=(route,),
        backoff_base_seconds=1,
        max_backoff_seconds=60,
        request_timeout_seconds=5.0,
    )
    return Bridge(config, subscriber=subscriber), route  # type: ignore[arg-type]


def _received(attempt: int) -> ReceivedMessage:
    return ReceivedMessage(
        ack_id="ack-1",
        delivery_attempt=attempt,
        message=PubsubMessage(data=b"{}", message_id="m-1"),
    )


@pytest.mark.parametrize("ending", [_reset, _garbage, _silent_close])
def test_function_dying_mid_request_is_redelivered_with_backoff(
    dying_function: Callable[[Callable[[socket.socket], None]], str],
    ending: Callable[[socket.socket], None],
) -> None:
    subscriber = _Subscriber()
    bridge, route = _bridge(dying_function(ending), subscriber)
    bridge._deliver(route, "projects/p/subscriptions/s", _received(attempt=3))
    assert subscriber.acked == []
    assert subscriber.deadlines == [(["ack-1"], 4)]  # 1 s * 2 ** (3 - 1)
    assert bridge.status()["failed"] == 1


def test_refused_connection_is_redelivered_with_backoff() -> None:
    subscriber = _Subscriber()
    bridge, route = _bridge(f"http://{HOST}:{free_port()}/", subscriber)
    bridge._deliver(route, "projects/p/subscriptions/s", _received(attempt=1))
    assert subscriber.acked == []
    assert subscriber.deadlines == [(["ack-1"], 1)]
