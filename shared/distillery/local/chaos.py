"""Chaos scenarios on the in-memory ports: faults at every step, redeliveries, races.

Each scenario builds a fresh world of fakes (the unkind ones of :mod:`distillery.fakes`: a
compare-and-set that runs twice, deployments that take time), drives the real services through
:func:`~distillery.core.runtime.run_handler` as Pub/Sub and Eventarc would — redelivering an event
until it is acknowledged — and checks what must hold:

- **duplicate jobs**: pipeline jobs (or deployments) beyond one for one request (or promotion);
- **lost events**: requests that never became a job, states a job reached but never announced,
  promotions that never happened;
- **wrong champions**: a family whose champion is not its best model, or whose serving endpoint
  and ``models/{family}`` record disagree.

A *crash* is the function's process dying: :class:`Crash` is raised before or after the k-th call
to any port (so after the call, its effect happened and its answer is lost) and is not caught by
the service; the event is then delivered again. ``bench/chaos.py`` runs every scenario and prints
the totals; the test suite runs the quick form.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.http import CloudEvent

from distillery.core.errors import ServiceUnavailableError
from distillery.core.events import PUBSUB_PUBLISHED
from distillery.core.jobs import announce
from distillery.core.models import JobState, LaunchRequest, StatusEvent, StorageObject
from distillery.core.runtime import Dependencies, run_handler
from distillery.core.settings import Settings
from distillery.fakes import (
    InMemoryModelEndpoints,
    InMemoryObjectStore,
    InMemoryPublisher,
    InMemoryRecordStore,
    InMemoryVertexPipelines,
)

PROJECT = "chaos"
BUCKET = "chaos-datasets"
FAMILY = "news-distilled"
#: Deliveries of one event before Pub/Sub dead-letters it (infra's ``max_delivery_attempts``).
MAX_DELIVERIES = 5
#: Pub/Sub's exponential backoff between deliveries of a failed event (Eventarc's subscriptions).
MIN_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(seconds=600)
#: How often Cloud Scheduler runs ``reconcile`` (infra's ``reconcile_schedule``).
RECONCILE_EVERY = timedelta(minutes=15)
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ACCURACY = "eval_fraction_of_correct_next_step_preds"


class Crash(BaseException):
    """The function's process died here (not an Exception: no service code may catch it)."""


@dataclass
class Counts:
    """What one scenario saw; it held when every count is zero."""

    duplicate_jobs: int = 0
    lost_events: int = 0
    wrong_champions: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not (self.duplicate_jobs or self.lost_events or self.wrong_champions)

    def add(self, other: Counts) -> None:
        self.duplicate_jobs += other.duplicate_jobs
        self.lost_events += other.lost_events
        self.wrong_champions += other.wrong_champions
        self.notes.extend(other.notes)


@dataclass(frozen=True)
class Result:
    """One scenario's name and counts."""

    name: str
    counts: Counts


# --- the world -----------------------------------------------------------------------------------


class Injector:
    """Counts port calls; raises :class:`Crash` once, before or after call number ``at``."""

    def __init__(self, at: int | None = None, *, after: bool = False) -> None:
        self.at = at
        self.after = after
        self.calls = 0
        self.crashed = False
        self._lock = threading.Lock()

    def around(self, call: Callable[[], Any]) -> Any:
        with self._lock:
            self.calls += 1
            number = self.calls
        armed = not self.crashed and number == self.at
        if armed and not self.after:
            self.crashed = True
            raise Crash(f"before port call {number}")
        result = call()
        if armed:
            self.crashed = True
            raise Crash(f"after port call {number}")
        return result


class _Proxy:
    """A port whose public methods go through an :class:`Injector`."""

    def __init__(self, target: Any, injector: Injector) -> None:
        self._target = target
        self._injector = injector

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._injector.around(lambda: attribute(*args, **kwargs))

        return call


class SimulatedClock:
    """The world's time: it moves when Pub/Sub waits to redeliver and between scheduled runs."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self._now += by


@dataclass
class World:
    """Fakes of every port, the dependencies over them, and the injector between the two."""

    deps: Dependencies
    injector: Injector
    objects: InMemoryObjectStore
    records: InMemoryRecordStore
    publisher: InMemoryPublisher
    vertex: InMemoryVertexPipelines
    endpoints: InMemoryModelEndpoints
    clock: SimulatedClock

    @classmethod
    def make(cls, injector: Injector | None = None, **settings: Any) -> World:
        injector = injector or Injector()
        objects, records = InMemoryObjectStore(), InMemoryRecordStore()
        publisher, vertex = InMemoryPublisher(), InMemoryVertexPipelines(PROJECT)
        clock = SimulatedClock()
        # Deployments take real time (a delivery polls them) and simulated time (between runs).
        endpoints = InMemoryModelEndpoints(
            PROJECT, monotonic=lambda: time.monotonic() + (clock() - START).total_seconds()
        )
        deps = Dependencies(
            # The pipeline backend's world: its fakes are the pipeline ports (no tuning client).
            settings=Settings(
                **{"project": PROJECT, "bucket": BUCKET, "backend": "pipeline", **settings}
            ),
            objects=_Proxy(objects, injector),  # type: ignore[arg-type]
            records=_Proxy(records, injector),  # type: ignore[arg-type]
            publisher=_Proxy(publisher, injector),  # type: ignore[arg-type]
            vertex=_Proxy(vertex, injector),  # type: ignore[arg-type]
            endpoints=_Proxy(endpoints, injector),  # type: ignore[arg-type]
            clock=clock,
        )
        return cls(deps, injector, objects, records, publisher, vertex, endpoints, clock)

    @property
    def plain(self) -> Dependencies:
        """The same world without the injector (for setting it up and for checking it)."""
        return Dependencies(
            settings=self.deps.settings,
            objects=self.objects,
            records=self.records,
            publisher=self.publisher,
            vertex=self.vertex,
            endpoints=self.endpoints,
            clock=self.clock,
        )

    def jobs(self) -> list[dict[str, Any]]:
        return self.records.list(self.deps.settings.jobs_collection)

    def announced(self) -> set[tuple[str, str]]:
        return {
            (m.attributes["job_id"], m.attributes["state"])
            for m in self.publisher.on(self.deps.settings.status_topic)
        }


def pubsub_event(topic: str, data: bytes, attributes: dict[str, str] | None = None) -> CloudEvent:
    """The messagePublished CloudEvent Eventarc delivers for one message on ``topic``."""
    message_id = f"{random.getrandbits(48)}"
    return CloudEvent(
        {
            "id": message_id,
            "type": PUBSUB_PUBLISHED,
            "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}",
        },
        {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": attributes or {},
                "messageId": message_id,
            },
            "subscription": f"projects/{PROJECT}/subscriptions/{topic}-chaos",
        },
    )


def deliver(world: World, function: str, handler: Any, event: CloudEvent) -> bool:
    """Deliver ``event`` as Pub/Sub does until it is acknowledged: after a crash or a raised
    fault, again after an exponential backoff, at most :data:`MAX_DELIVERIES` times. False: it
    was dead-lettered (what is not finished by then must be finished by ``reconcile``)."""
    backoff = MIN_BACKOFF
    for _ in range(MAX_DELIVERIES):
        try:
            run_handler(function, event, handler, world.deps)
        except Crash:
            pass
        except Exception:
            pass  # a retryable fault: Pub/Sub delivers the event again
        else:
            return True
        world.clock.advance(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
    return False


def settle(world: World, rounds: int = 4) -> None:
    """Run ``reconcile`` every :data:`RECONCILE_EVERY`, as Cloud Scheduler does (a crashed or
    failed run is simply followed by the next)."""
    from distillery.services.status import reconcile

    for _ in range(rounds):
        world.clock.advance(RECONCILE_EVERY)
        try:
            reconcile(world.deps)
        except (Crash, Exception):
            continue


def validated_request(world: World, name: str = "news", examples: int = 240) -> LaunchRequest:
    """Upload and validate a dataset (without faults); the LaunchRequest validation published."""
    from distillery.local.example_data import generate
    from distillery.services.datasets import handle_object

    train, evaluation = generate(examples, 20)
    plain = world.plain
    world.objects.put(BUCKET, f"datasets/{name}.eval.jsonl", _jsonl(evaluation))
    info = world.objects.put(BUCKET, f"datasets/{name}.jsonl", _jsonl(train))
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), plain)
    message = world.publisher.on(plain.settings.launch_topic)[-1]
    return LaunchRequest.model_validate_json(message.data)


def _jsonl(examples: Any) -> bytes:
    return "".join(example.to_json() + "\n" for example in examples).encode()


def launch_event(world: World, request: LaunchRequest) -> CloudEvent:
    return pubsub_event(world.deps.settings.launch_topic, request.model_dump_json().encode())


# --- checks --------------------------------------------------------------------------------------


def check_launches(world: World, requests: int) -> Counts:
    """One pipeline job per request, each job at least SUBMITTED, every state announced."""
    counts = Counts()
    pipeline_jobs = len(world.vertex.jobs)
    if pipeline_jobs > requests:
        counts.duplicate_jobs += pipeline_jobs - requests
        counts.notes.append(f"{pipeline_jobs} pipeline jobs for {requests} requests")
    launched = [job for job in world.jobs() if job["state"] != JobState.REJECTED_BY_POLICY.value]
    if len(launched) < requests or pipeline_jobs < requests:
        counts.lost_events += requests - min(len(launched), pipeline_jobs)
        counts.notes.append(f"{len(launched)} jobs, {pipeline_jobs} pipeline jobs for {requests}")
    counts.lost_events += _unannounced(world)
    return counts


def _unannounced(world: World) -> int:
    announced = world.announced()
    missing = [
        (job["job_id"], entry["state"])
        for job in world.jobs()
        for entry in job.get("history", [])
        if (job["job_id"], entry["state"]) not in announced
    ]
    return len(missing)


def check_champion(world: World, best_model: str) -> Counts:
    """The family's champion is ``best_model`` and its endpoint serves exactly that."""
    counts = Counts()
    doc = world.records.get(world.deps.settings.models_collection, FAMILY)
    champion = (doc or {}).get("champion") or {}
    if champion.get("model") != best_model:
        counts.wrong_champions += 1
        counts.notes.append(f"champion {champion.get('model')}, best {best_model}")
        return counts
    serving = world.endpoints.serving(champion["endpoint"])
    if max(serving, key=lambda m: serving[m], default=None) != best_model:
        counts.wrong_champions += 1
        counts.notes.append(f"{champion['endpoint']} serves {serving}, champion {best_model}")
    return counts


# --- scenarios -----------------------------------------------------------------------------------


def _count_calls(run: Callable[[World], Any], make: Callable[[Injector], World]) -> int:
    world = make(Injector())
    run(world)
    return world.injector.calls


def crash_everywhere(
    name: str,
    make: Callable[[Injector], World],
    run: Callable[[World], Any],
    check: Callable[[World], Counts],
    *,
    quick: bool,
) -> Iterator[Result]:
    """``run`` with a crash before and after every port call it makes; then ``check``."""
    calls = _count_calls(run, make)
    points = range(1, calls + 1)
    if quick:
        points = range(1, calls + 1, max(1, calls // 6))
    for at, after in itertools.product(points, (False, True)):
        world = make(Injector(at, after=after))
        run(world)
        yield Result(f"{name}: crash {'after' if after else 'before'} call {at}", check(world))


def _launch_world(injector: Injector, **settings: Any) -> World:
    world = World.make(injector, **settings)
    request = validated_request(world)
    world.records.set("chaos", "request", request.model_dump(mode="json"))
    return world


def _the_request(world: World) -> LaunchRequest:
    data = world.records.get("chaos", "request")
    assert data is not None
    return LaunchRequest.model_validate(data)


def _launch_once(world: World) -> None:
    from distillery.services.launcher import handle_launch_event

    deliver(world, "launch_job", handle_launch_event, launch_event(world, _the_request(world)))


def launch_scenarios(quick: bool) -> Iterator[Result]:
    """Crashes at every step of a launch; redeliveries; concurrency; limits and fallback."""
    from distillery.services.launcher import handle_launch_event

    yield from crash_everywhere(
        "launch", _launch_world, _launch_once, lambda w: check_launches(w, 1), quick=quick
    )

    # The same request delivered many times, shuffled among others.
    world = World.make()
    events = []
    for index in range(3 if quick else 6):
        request = validated_request(world, name=f"set{index}")
        events += [launch_event(world, request)] * 3
    random.Random(7).shuffle(events)
    for event in events:
        deliver(world, "launch_job", handle_launch_event, event)
    yield Result("launch: shuffled redeliveries", check_launches(world, len(events) // 3))

    # Concurrent deliveries of one request.
    world = World.make()
    event = launch_event(world, validated_request(world))
    threads = [
        threading.Thread(target=deliver, args=(world, "launch_job", handle_launch_event, event))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    yield Result("launch: four concurrent deliveries", check_launches(world, 1))

    # Concurrency limit, daily budget and accelerator fallback together, crash after Vertex AI.
    limits = {
        "accelerators": "TPU,GPU",
        "max_concurrent_jobs": 1,
        "daily_accelerator_hours": 100.0,
    }
    for at in _vertex_create_calls(limits):
        world = _launch_world(Injector(at, after=True), **limits)
        _launch_once(world)
        counts = check_launches(world, 1)
        yield Result(f"launch: limits and fallback, crash after call {at}", counts)

    # Vertex AI unavailable once before the create, with one job allowed at a time.
    world = _launch_world(Injector(), max_concurrent_jobs=1)
    world.vertex.fail_next.append(ServiceUnavailableError("injected: Vertex AI unavailable"))
    _launch_once(world)
    settle(world)
    counts = check_launches(world, 1)
    second = validated_request(world, name="later")
    job_ids = {job["job_id"] for job in world.jobs()}
    for job in world.jobs():  # the first job finishes, freeing the one slot
        if job.get("pipeline_job"):
            world.vertex.set_state(job["pipeline_job"], "PIPELINE_STATE_SUCCEEDED")
    settle(world)
    deliver(world, "launch_job", handle_launch_event, launch_event(world, second))
    new = [job for job in world.jobs() if job["job_id"] not in job_ids]
    if not new or new[0]["state"] == JobState.REJECTED_BY_POLICY.value:
        counts.lost_events += 1
        counts.notes.append("a later launch was refused after the slot freed")
    yield Result("launch: unavailable once under a concurrency limit", counts)


def _vertex_create_calls(settings: dict[str, Any]) -> list[int]:
    """The port-call numbers of a clean launch that reached Vertex AI's create."""
    world = _launch_world(Injector(), **settings)
    before = world.injector.calls
    numbers: list[int] = []
    original = world.vertex.create

    def create(*args: Any, **kwargs: Any) -> Any:
        numbers.append(world.injector.calls)
        return original(*args, **kwargs)

    world.vertex.create = create  # type: ignore[method-assign]
    _launch_once(world)
    return [n for n in numbers if n > before] or [before + 1]


# --- promotion -----------------------------------------------------------------------------------


def _succeeded(world: World, job_id: str, accuracy: float) -> str:
    """A SUCCEEDED job of the family whose model answers ``accuracy`` of the golden set right
    (and reports that token accuracy), on its own endpoint as its pipeline left it; its model's
    name."""
    from distillery.local.judged import succeeded_job

    metrics = {ACCURACY: accuracy, "eval_total_loss": 0.4, "eval_num_predictions": 500.0}
    plain = world.plain
    model = succeeded_job(plain, job_id, FAMILY, accuracy, bucket=BUCKET, metrics=metrics)
    record = world.records.get(world.deps.settings.jobs_collection, job_id) or {}
    record["announced"] = []
    world.records.set(world.deps.settings.jobs_collection, job_id, record)
    announce(plain, record)  # as track_status did when the job succeeded
    return model


def succeeded_event(world: World, job_id: str, **extra: Any) -> CloudEvent:
    status = StatusEvent(job_id=job_id, state=JobState.SUCCEEDED, at=world.deps.clock())
    data = status.model_dump(mode="json") | extra
    return pubsub_event(
        world.deps.settings.status_topic, json.dumps(data).encode(), status.attributes()
    )


def _promote(world: World, job_id: str) -> bool:
    from distillery.services.promoter import handle_status_event

    return deliver(world, "promote_model", handle_status_event, succeeded_event(world, job_id))


def _model_name(job_id: str) -> str:
    return f"projects/{PROJECT}/locations/us-central1/models/m-{job_id}"


def _promotion_world(injector: Injector) -> World:
    world = World.make(injector)
    _succeeded(world, "job-a", 0.8)
    return world


def _check_promoted(world: World, job_id: str, model: str) -> Counts:
    counts = check_champion(world, model)
    record = world.records.get(world.deps.settings.jobs_collection, job_id) or {}
    if record.get("state") != JobState.PROMOTED.value:
        counts.lost_events += 1
        counts.notes.append(f"{job_id} is {record.get('state')}")
    deployed = [op for op in world.endpoints.operations if op.model == model and not op.error]
    if len(deployed) > 1:
        counts.duplicate_jobs += len(deployed) - 1
        counts.notes.append(f"{model} deployed {len(deployed)} times")
    # The judged model's own endpoint is gone: one endpoint serves the family, nothing else bills.
    if len(world.endpoints.endpoints) > 1:
        counts.duplicate_jobs += len(world.endpoints.endpoints) - 1
        counts.notes.append(f"{len(world.endpoints.endpoints)} endpoints for one family")
    counts.lost_events += _unannounced(world)
    return counts


def family_race(world: World, order: str) -> str:
    """Jobs of 0.6 and 0.9 of one family SUCCEED and are promoted: one after the other
    (``order`` "weaker first" or "better first") or at once ("together"); the better model."""
    _succeeded(world, "job-weak", 0.6)
    better = _succeeded(world, "job-good", 0.9)
    jobs = ["job-weak", "job-good"] if order != "better first" else ["job-good", "job-weak"]
    if order == "together":
        start = threading.Barrier(len(jobs))

        def promote(job: str) -> None:
            start.wait()
            _promote(world, job)

        threads = [threading.Thread(target=promote, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for job in jobs:
            _promote(world, job)
    settle(world)
    return better


def promotion_scenarios(quick: bool) -> Iterator[Result]:
    """Crashes at every step of a promotion; jobs of one family finishing together; rollback."""
    from distillery.services.promoter import rollback

    def run(world: World) -> None:
        _promote(world, "job-a")
        settle(world)

    yield from crash_everywhere(
        "promotion",
        _promotion_world,
        run,
        lambda w: _check_promoted(w, "job-a", _model_name("job-a")),
        quick=quick,
    )

    # Two jobs of one family succeed together: the better one is champion, whatever the order.
    for order in ("weaker first", "better first", "together"):
        for attempt in range(1 if quick or order != "together" else 5):
            world = World.make()
            better = family_race(world, order)
            name = f"promotion: two jobs of a family, {order}"
            yield Result(
                name + (f" ({attempt + 1})" if attempt else ""), check_champion(world, better)
            )

    # A rollback while a newer model is being promoted: endpoint and record agree.
    world = World.make()
    _succeeded(world, "job-1", 0.7)
    _promote(world, "job-1")
    _succeeded(world, "job-2", 0.9)
    threads = [
        threading.Thread(target=_promote, args=(world, "job-2")),
        threading.Thread(target=_rollback_quietly, args=(world, rollback)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settle(world)
    doc = world.records.get(world.deps.settings.models_collection, FAMILY) or {}
    champion = (doc.get("champion") or {}).get("model", "")
    yield Result("promotion: rollback during a promotion", check_champion(world, champion))

    # An internal message with a field this version does not know still promotes.
    world = World.make()
    model = _succeeded(world, "job-new", 0.8)
    from distillery.services.promoter import handle_status_event

    deliver(
        world,
        "promote_model",
        handle_status_event,
        succeeded_event(world, "job-new", added_in_a_later_version={"x": 1}),
    )
    # No reconcile: the delivery itself must promote (reconcile would cover for a lost one).
    yield Result(
        "promotion: an unknown field from a newer version",
        _check_promoted(world, "job-new", model),
    )


def _rollback_quietly(world: World, rollback: Callable[..., Any]) -> None:
    for _ in range(MAX_DELIVERIES):
        try:
            rollback(FAMILY, world.deps)
            return
        except Exception:
            continue


def poison_scenarios() -> Iterator[Result]:
    """A message that can never be handled is recorded and acknowledged, and launches nothing."""
    from distillery.services.launcher import handle_launch_event

    world = World.make()
    for payload in (b"not json", b'{"dataset_uri": 3}', b'{"dataset_uri": "gs://b/x", "typo": 1}'):
        acked = deliver(
            world,
            "launch_job",
            handle_launch_event,
            pubsub_event(world.deps.settings.launch_topic, payload),
        )
        counts = Counts()
        if not acked:
            counts.lost_events += 1
            counts.notes.append(f"{payload!r} was never acknowledged")
        if world.vertex.jobs:
            counts.duplicate_jobs += len(world.vertex.jobs)
        yield Result(f"poison: {payload[:24]!r}", counts)
    failures = world.records.list(world.deps.settings.failures_collection)
    counts = Counts()
    if len(failures) != 3:
        counts.lost_events += abs(3 - len(failures))
        counts.notes.append(f"{len(failures)} failure records for 3 poison messages")
    yield Result("poison: each recorded", counts)


def run_all(*, quick: bool = False, seed: int = 0) -> list[Result]:
    """Every scenario; ``quick`` samples the crash points instead of trying each."""
    random.seed(seed)
    return [
        *launch_scenarios(quick),
        *promotion_scenarios(quick),
        *poison_scenarios(),
    ]


def summary(results: list[Result]) -> str:
    """``chaos: N scenarios, N held, duplicate jobs N, lost events N, wrong champions N``."""
    total = Counts()
    for result in results:
        total.add(result.counts)
    held = sum(result.counts.held for result in results)
    return (
        f"chaos: {len(results)} scenarios, {held} held, duplicate jobs {total.duplicate_jobs}, "
        f"lost events {total.lost_events}, wrong champions {total.wrong_champions}"
    )
