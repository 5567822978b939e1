"""The stack's port check: a port left in TIME_WAIT is free, a port with a listener is not."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from distillery.local.stack.errors import PortInUseError
from distillery.local.stack.processes import HOST, check_ports_free, free_port_run, port_is_free


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on a free loopback port, bound as the services bind (SO_REUSEADDR)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def _leave_in_time_wait(listener: socket.socket) -> int:
    """Connect to ``listener``, close the server's end first, then stop listening; the port.

    The side that closes first keeps the connection in TIME_WAIT (on Linux for a minute), on the
    listener's port: what a stopped service leaves behind once it had clients.
    """
    port = int(listener.getsockname()[1])
    client = socket.create_connection((HOST, port))
    served, _ = listener.accept()
    served.close()
    assert client.recv(1) == b""  # the server's FIN arrived: the client may close without racing
    client.close()
    listener.close()
    return port


def _plain_bind_fails(port: int) -> bool:
    """Whether binding ``port`` without SO_REUSEADDR fails (what TIME_WAIT does to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def test_port_in_time_wait_counts_as_free(listener: socket.socket) -> None:
    port = _leave_in_time_wait(listener)
    # The scenario is real: the old connection still holds the port against a plain bind.
    assert _plain_bind_fails(port)
    assert port_is_free(port)
    check_ports_free({"pubsub": port})  # `dev up` right after `dev down` goes ahead


def test_port_with_a_listener_counts_as_in_use(listener: socket.socket) -> None:
    port = int(listener.getsockname()[1])
    assert not port_is_free(port)
    with pytest.raises(PortInUseError, match=rf"pubsub port {port}"):
        check_ports_free({"pubsub": port})


def test_port_with_a_listener_without_reuse_counts_as_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        assert not port_is_free(int(sock.getsockname()[1]))


def test_free_port_run_finds_consecutive_free_ports_below_the_ephemeral_range() -> None:
    base = free_port_run(8)
    assert base >= 20000 and base + 8 <= 32000
    assert all(port_is_free(base + offset) for offset in range(8))


def test_free_port_run_passes_over_a_run_with_a_listener_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen()
        taken = int(listener.getsockname()[1])
        # The first run tried holds the listener; the next one is clear of it.
        tries = iter([taken - 1, taken + 10])
        monkeypatch.setattr("random.Random.randrange", lambda self, low, high: next(tries))
        assert free_port_run(3) == taken + 10
    with pytest.raises(OSError, match="no 3 consecutive free ports"):
        free_port_run(3, attempts=0)
