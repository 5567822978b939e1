"""Split a binary stream into lines without ever holding more than one (capped) line.

Only ``stream.read(n)`` is used: ``google.cloud.storage``'s ``BlobReader`` has no ``peek``, so its
inherited ``readline`` would fetch one byte per call. Every byte read is fed to a running SHA-256,
so the digest covers exactly the bytes validated.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Protocol

#: Bytes asked of the stream per read: large enough that per-read overhead vanishes.
READ_CHUNK_BYTES = 1 << 20


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Sha256Feed:
    """A SHA-256 of chunks fed in order, hashed on a helper thread when a spare CPU exists.

    ``hashlib`` releases the GIL while it hashes buffers of 2 KiB or more, so with a second CPU
    the file digest costs the parsing thread almost nothing (it is a third of the validator's
    work otherwise). With one CPU a thread would only add switches, so it hashes inline.
    At most ``max_pending`` chunks wait for the helper, which bounds the memory it holds.
    """

    def __init__(self, *, threaded: bool | None = None, max_pending: int = 2) -> None:
        self._sha256 = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        if threaded if threaded is not None else _usable_cpus() > 1:
            self._queue = queue.Queue(maxsize=max_pending)
            self._thread = threading.Thread(
                target=self._hash_queued, name="distillery-sha256", daemon=True
            )
            self._thread.start()

    def _hash_queued(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            self._sha256.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Hash ``chunk`` after every chunk given before it."""
        if self._queue is None:
            self._sha256.update(chunk)
        else:
            self._queue.put(chunk)

    def close(self) -> None:
        """Finish hashing what was fed and stop the helper thread (idempotent)."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            self._queue = None

    def hexdigest(self) -> str:
        """The digest of everything fed (stops the helper thread: feed nothing after)."""
        self.close()
        return self._sha256.hexdigest()


class ReadableStream(Protocol):
    """What the validator needs of a stream: ``read(n)`` returning bytes, ``b""`` at the end."""

    def read(self, size: int = -1, /) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the stream, without its ``\\n``."""

    #: The bytes of the line, or ``None`` when it was longer than the cap and was skipped.
    data: bytes | None
    #: Length in bytes (of the whole line, even when it was skipped).
    length: int
    #: Offset of the line's first byte in the stream.
    offset: int


class LineReader:
    """Iterate over the lines of ``stream``; ``size`` and ``sha256`` cover every byte read.

    A line longer than ``max_line_bytes`` is yielded with ``data=None``: its bytes are hashed and
    counted but dropped as they arrive, so memory stays bounded by the cap plus one read chunk.
    A final line without a newline is a line; the newline ending the last line starts no new one.
    """

    def __init__(
        self,
        stream: ReadableStream,
        *,
        max_line_bytes: int,
        chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self._stream = stream
        self._max_line_bytes = max_line_bytes
        self._chunk_bytes = chunk_bytes
        self._sha256 = Sha256Feed()
        self.size = 0

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes read so far (of the whole stream once iterated)."""
        return self._sha256.hexdigest()

    def __iter__(self) -> Iterator[Line]:
        return self.lines()

    def lines(self) -> Generator[Line, None, None]:
        """Yield the lines; close the generator to stop early (that also stops the hashing).

        Raises whatever ``stream.read`` raises.
        """
        try:
            yield from self._lines()
        finally:
            self._sha256.close()

    def _lines(self) -> Iterator[Line]:
        cap = self._max_line_bytes
        pieces: list[bytes] = []  # the start of a line that continues in the next chunk
        pending = 0  # bytes of that line so far (counted even when dropped)
        skipping = False  # the line is over the cap: count its bytes, keep none
        line_start = 0
        while True:
            chunk = self._stream.read(self._chunk_bytes)
            if not chunk:
                break
            self._sha256.update(chunk)
            chunk_offset = self.size
            self.size += len(chunk)
            start = 0
            end = len(chunk)
            while start < end:
                newline = chunk.find(b"\n", start)
                if newline < 0:
                    pending += end - start
                    if not skipping and pending > cap:
                        skipping = True
                        pieces.clear()
                    if not skipping:
                        pieces.append(chunk[start:] if start else chunk)
                    break
                length = pending + newline - start
                if skipping or length > cap:
                    yield Line(None, length, line_start)
                elif pieces:
                    pieces.append(chunk[start:newline])
                    yield Line(b"".join(pieces), length, line_start)
                else:
                    yield Line(chunk[start:newline], length, line_start)
                pieces.clear()
                pending = 0
                skipping = False
                start = newline + 1
                line_start = chunk_offset + start
        if pending or skipping:
            yield Line(None if skipping else b"".join(pieces), pending, line_start)
