"""What the tuning tests against the in-process local Vertex AI API share: ``contents`` lines
(the Gemini tuning dataset form) and a started emulator with the real local trainer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from distillery.core.settings import Settings
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import EmulatorServer, TrainerOptions, create_server
from distillery.local.example_data import generate


def contents_jsonl(pairs: Sequence[tuple[str, str]]) -> bytes:
    """One ``contents`` line a (prompt, answer) pair: a user turn, then the model's."""
    return "".join(
        json.dumps(
            {
                "contents": [
                    {"role": "user", "parts": [{"text": prompt}]},
                    {"role": "model", "parts": [{"text": answer}]},
                ]
            }
        )
        + "\n"
        for prompt, answer in pairs
    ).encode()


def contents_lines(count: int) -> tuple[bytes, list[tuple[str, str]]]:
    """``count`` labelled examples of the example task as tuning ``contents`` lines."""
    train, _ = generate(count, 10)
    pairs = [(e.input_text, str(e.output_text)) for e in train]
    return contents_jsonl(pairs), pairs


@contextlib.contextmanager
def tuning_emulator(
    store: InMemoryObjectStore,
    data_dir: Path,
    *,
    project: str,
    bucket: str,
    start_delay_seconds: float,
) -> Iterator[EmulatorServer]:
    """The local Vertex AI API over ``store``, training on one CPU thread under ``data_dir``;
    a tuning job waits ``start_delay_seconds`` before it runs. Stopped on exit."""
    running = create_server(
        Settings(project=project, bucket=bucket),
        object_store=store,
        publisher=InMemoryPublisher(),
        trainer=TrainerOptions(data_dir=data_dir, num_threads=1),
        tuning_start_delay_seconds=start_delay_seconds,
    ).start()
    try:
        yield running
    finally:
        running.stop(timeout=20)
