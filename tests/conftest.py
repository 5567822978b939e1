"""Shared fixtures: the local emulator stack for integration tests, environment isolation for all.

``local_stack`` (session) starts the real stack — Pub/Sub and Firestore emulators,
fake-gcs-server, the functions and the Eventarc bridge — on free ports through the same
:class:`~distillery.local.stack.Stack` as ``distillery dev up``, and points this process's
environment at it. It fails (never skips) when the stack cannot start: CI must not pass by
skipping. ``stack`` (function) is the same object after a reset: no messages, documents or objects
from an earlier test; ``stack_deps`` are the Google Cloud adapters pointed at it.

``teacher_cache`` (session) is a cache holding the local teacher ``distillery dev up`` trains
(trained once per session); ``local_teacher`` is that teacher, for stacks that need one.

``deps`` (function) are the service dependencies on fresh in-memory fakes, for unit tests.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillery.core.runtime import Dependencies, google_dependencies
from distillery.core.settings import Settings
from distillery.local.stack import Stack, StackConfig
from distillery.local.stack.harness import StackHarness
from distillery.local.teachers import CachedTeacher, LocalTeacher, cached_local_teacher
from tests.helpers import fake_dependencies

#: Variables the session stack set → their values before it did (None: unset), so tests that do
#: not use the stack see the environment they would have seen without it.
_STACK_ENV_BEFORE: dict[str, str | None] = {}


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHarness]:
    """The running local stack (one per test session), with clients and helpers.

    Sets GOOGLE_CLOUD_PROJECT, DISTILLERY_BUCKET, DISTILLERY_REGION, DISTILLERY_BACKEND
    (``pipeline``) and the three emulator variables for this process while it lives; restores
    them afterwards.
    """
    state_dir = tmp_path_factory.mktemp("localstack")
    # The tests on this stack test the pipeline backend (the default backend's end-to-end test
    # starts a stack of its own).
    stack = Stack(StackConfig.ephemeral(state_dir, startup_timeout=120.0, backend="pipeline"))
    stack.start()  # raises with the failing service's log: an error, not a skip
    harness = StackHarness(stack)
    _STACK_ENV_BEFORE.update({name: os.environ.get(name) for name in stack.env})
    os.environ.update(stack.env)
    try:
        yield harness
    finally:
        try:
            harness.close()
            stack.stop()
        finally:
            for name, value in _STACK_ENV_BEFORE.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _STACK_ENV_BEFORE.clear()


@pytest.fixture
def stack(local_stack: StackHarness) -> StackHarness:
    """The session stack, reset: pending messages dropped, Firestore wiped, the bucket emptied.

    Nothing is restarted; test subscriptions of earlier tests are deleted.
    """
    local_stack.reset()
    return local_stack


@pytest.fixture
def stack_deps(stack: StackHarness) -> Dependencies:
    """What the stack's functions build: the Google Cloud adapters, on the reset session stack."""
    # The stack's settings were read before it had a Vertex AI API to point them at.
    endpoint = stack.env[Settings.env_name("vertex_api_endpoint")]
    return google_dependencies(dataclasses.replace(stack.settings, vertex_api_endpoint=endpoint))


@pytest.fixture(scope="session")
def _cached_teacher(tmp_path_factory: pytest.TempPathFactory) -> CachedTeacher:
    """The default local teacher in a cache of the session: trained on first use (a minute or
    two), then shared by every test of the session."""
    return cached_local_teacher(tmp_path_factory.mktemp("teachers"))


@pytest.fixture(scope="session")
def teacher_cache(_cached_teacher: CachedTeacher) -> Path:
    """A teacher cache (``distillery dev up --teacher-cache``) with the default local teacher."""
    return _cached_teacher.directory.parent


@pytest.fixture(scope="session")
def local_teacher(_cached_teacher: CachedTeacher) -> LocalTeacher:
    """The local teacher of :func:`teacher_cache` (what ``distillery dev up`` provides)."""
    return _cached_teacher.teacher


@pytest.fixture
def deps() -> Dependencies:
    """Service dependencies on fresh in-memory fakes of every port (see ``fake_dependencies``)."""
    return fake_dependencies()


@pytest.fixture(autouse=True)
def _isolate_environ(request: pytest.FixtureRequest) -> Iterator[None]:
    """Undo every change a test makes to ``os.environ``.

    Tests not marked ``integration`` also run without the session stack's variables, so their
    outcome never depends on whether an integration test ran first.
    """
    saved = dict(os.environ)
    if request.node.get_closest_marker("integration") is None:
        for name, before in _STACK_ENV_BEFORE.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
