"""Streaming: lines split across reads, the 8 MiB cap without buffering, the running SHA-256."""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
from collections.abc import Iterator

import pytest

from distillery.validation import MAX_LINE_BYTES, DatasetKind, validate_jsonl
from distillery.validation._lines import LineReader, Sha256Feed

MIB = 1 << 20


class TrickleStream:
    """A stream that only has ``read`` and hands out at most ``step`` bytes per call."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._position = 0
        self._step = step
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        take = self._step if size < 0 else min(size, self._step)
        piece = self._data[self._position : self._position + take]
        self._position += len(piece)
        return piece


class GeneratedStream:
    """A stream whose bytes are produced piece by piece and never held whole."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._buffer = b""

    def read(self, size: int = -1, /) -> bytes:
        while len(self._buffer) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def good_lines(count: int) -> bytes:
    return b"".join(
        json.dumps(
            {"input_text": f"question: {i} plus {i}? context: drill {i}", "output_text": str(2 * i)}
        ).encode()
        + b"\n"
        for i in range(count)
    )


def test_line_reader_joins_lines_split_across_reads() -> None:
    data = b"first line\nsecond\n\nlast without newline"
    reader = LineReader(TrickleStream(data, 3), max_line_bytes=100, chunk_bytes=4)
    lines = list(reader)
    assert [line.data for line in lines] == [b"first line", b"second", b"", b"last without newline"]
    assert [line.offset for line in lines] == [0, 11, 18, 19]
    assert reader.size == len(data)
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


def test_line_reader_final_newline_starts_no_line() -> None:
    assert [line.data for line in LineReader(io.BytesIO(b"a\nb\n"), max_line_bytes=10)] == [
        b"a",
        b"b",
    ]


def test_line_reader_skips_lines_over_the_cap_and_keeps_counting() -> None:
    data = b"short\n" + b"y" * 25 + b"\nafter\n" + b"z" * 30
    lines = list(LineReader(TrickleStream(data, 4), max_line_bytes=10, chunk_bytes=4))
    assert [(line.data, line.length) for line in lines] == [
        (b"short", 5),
        (None, 25),
        (b"after", 5),
        (None, 30),
    ]
    assert lines[2].offset == 32


def test_validate_jsonl_streams_a_line_split_across_reads() -> None:
    data = good_lines(120)
    stream = TrickleStream(data, 7)
    trickled = validate_jsonl(stream, kind=DatasetKind.TRAINING, source="s")
    whole = validate_jsonl(io.BytesIO(data), kind=DatasetKind.TRAINING, source="s")
    assert stream.reads > 100
    assert trickled.report.to_json_dict() == whole.report.to_json_dict()
    assert trickled.report.valid and trickled.report.examples == 120


def test_validate_jsonl_line_over_8_mib_is_an_error_and_never_buffered() -> None:
    head = b'{"input_text": "question: big? context: '
    tail = b'"}'
    filler_mib = 24
    line_length = len(head) + filler_mib * MIB + len(tail)

    def pieces() -> Iterator[bytes]:
        yield good_lines(60)
        yield head
        for _ in range(filler_mib):
            yield b"x" * MIB
        yield tail + b"\n"
        yield good_lines(60)

    tracemalloc.start()
    try:
        result = validate_jsonl(GeneratedStream(pieces()), kind=DatasetKind.TRAINING, source="s")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    report = result.report
    too_long = report.result_for("line_too_long")
    assert too_long is not None and too_long.findings[0].line == 61
    assert f"the line is {line_length:,} bytes" in too_long.findings[0].message
    assert report.examples == 121 and not report.valid
    assert report.size_bytes == 2 * len(good_lines(60)) + line_length + 1
    # Up to the cap is buffered before the line is known to be too long; never the whole line.
    assert peak < MAX_LINE_BYTES + 4 * MIB, f"peak {peak / MIB:.1f} MiB: the line was buffered"


def test_validate_jsonl_line_of_exactly_8_mib_is_read() -> None:
    head = b'{"input_text": "question: big? context: '
    tail = b'", "output_text": "ok"}'
    line = head + b"x" * (MAX_LINE_BYTES - len(head) - len(tail)) + tail
    assert len(line) == MAX_LINE_BYTES
    data = line + b"\n" + good_lines(119)
    report = validate_jsonl(io.BytesIO(data), kind=DatasetKind.TRAINING, source="s").report
    assert report.valid
    assert "line_too_long" not in {r.rule for r in report.errors}
    assert report.result_for("input_too_long") is not None


@pytest.mark.parametrize("threaded", [True, False])
def test_sha256_feed_matches_hashlib(threaded: bool) -> None:
    chunks = [bytes([i]) * (i * 997 + 3000) for i in range(20)]
    feed = Sha256Feed(threaded=threaded)
    for chunk in chunks:
        feed.update(chunk)
    assert feed.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    feed.close()  # idempotent


def test_line_reader_stops_the_hash_thread_when_abandoned() -> None:
    reader = LineReader(io.BytesIO(good_lines(5)), max_line_bytes=MIB)
    lines = reader.lines()
    next(lines)
    lines.close()
    assert reader._sha256._thread is None
