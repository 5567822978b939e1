"""What the end-to-end tests of the product's default backend share: a local stack of their own
that takes the default backend, the adapters pointed at it, and the states a job is announced in.

The session stack of the other ``test_localstack_*`` files runs the pipeline backend; these
stacks are started (and stopped) by the module that uses them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from distillery.core.runtime import Dependencies, google_dependencies
from distillery.core.settings import DEFAULT_BACKEND, Settings
from distillery.local.stack import Stack, StackConfig
from distillery.local.stack.harness import StackHarness
from tests.helpers import wait_for

#: The states a job ends in.
FINAL = {"PROMOTED", "REJECTED", "FAILED", "CANCELLED", "REJECTED_BY_POLICY"}


@contextlib.contextmanager
def default_backend_stack(config: StackConfig) -> Iterator[StackHarness]:
    """The stack of ``config`` on the product's default backend, started, its client
    environment set in this process while it runs (the adapters and the demo read the emulator
    variables); stopped, and the environment restored, on exit."""
    backend_variable = Settings.env_name("backend")
    before = dict(os.environ)
    # Another stack of this session may have exported its backend: this stack takes the default.
    os.environ.pop(backend_variable, None)
    stack = Stack(config)
    assert stack.settings.backend == DEFAULT_BACKEND == "gemini"
    try:
        stack.start()
        harness = StackHarness(stack)
        os.environ.update(stack.env)
        try:
            yield harness
        finally:
            harness.close()
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(before)


def stack_dependencies(harness: StackHarness) -> Dependencies:
    """The product's Google Cloud adapters, pointed at the stack and its Vertex AI emulator."""
    settings = dataclasses.replace(harness.settings, vertex_api_endpoint=harness.stack.vertex_url)
    return google_dependencies(settings)


def follow(harness: StackHarness, subscription: Any, timeout: float) -> dict[str, list[str]]:
    """Job id → the states announced on the status topic, in order, until one job ends."""
    announced: dict[str, list[str]] = {}

    def ended() -> bool:
        for message in subscription.pull(max_messages=20, timeout=2):
            event = message.json()
            states = announced.setdefault(event["job_id"], [])
            if not states or states[-1] != event["state"]:  # a redelivery repeats one
                states.append(event["state"])
        return any(states[-1] in FINAL for states in announced.values())

    wait_for(ended, timeout=timeout, interval=0, what="a job's final state on the status topic")
    return announced
