"""Property-based tests (hypothesis): the job state machine and the validator on any input.

- Jobs: whatever sequence of transitions arrives (duplicated, out of order), through the fake
  record store whose compare-and-set runs each mutation more than once, a job only moves forward,
  never leaves a terminal state (but PROMOTED → ROLLED_BACK), its history is the path it took,
  and its final state is what the state machine's rule gives for that sequence.
- Validator: any bytes, as a training or an eval set, give a report and never a traceback; every
  finding of a line rule names a line of the file, and the counts add up.
"""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillery.core.jobs import STATE_RANK, TERMINAL, can_move, new_record, transition
from distillery.core.models import JobState
from distillery.validation import DatasetKind, validate_jsonl
from tests.helpers import fake_dependencies

JOB = "job-1"
STATES = list(JobState)
#: Rules about the dataset as a whole: their findings name no line.
DATASET_RULES = frozenset(
    {
        "dataset_empty",
        "too_many_examples",
        "eval_too_few_examples",
        "eval_too_many_examples",
        "few_labeled_examples",
        "few_unlabeled_examples",
    }
)


def _expected_final(start: JobState, targets: list[JobState]) -> JobState:
    state = start
    for target in targets:
        if can_move(state, target):
            state = target
    return state


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(targets=st.lists(st.sampled_from(STATES), max_size=12))
def test_properties_job_moves_only_forward_whatever_the_events(targets: list[JobState]) -> None:
    deps = fake_dependencies()
    at = datetime(2026, 12, 1, tzinfo=UTC)
    collection = deps.settings.jobs_collection
    deps.records.create(collection, JOB, new_record(JOB, JobState.REQUESTED, at, {}))
    for target in targets:
        before = JobState(deps.records.get(collection, JOB)["state"])  # type: ignore[index]
        moved = transition(deps, JOB, target)
        after = JobState(moved.record["state"])
        assert moved.moved == can_move(before, target)
        assert after is (target if moved.moved else before)
        if before in TERMINAL and after is not before:
            assert (before, after) == (JobState.PROMOTED, JobState.ROLLED_BACK)
    record = deps.records.get(collection, JOB)
    assert record is not None
    history = [JobState(entry["state"]) for entry in record["history"]]
    assert history[0] is JobState.REQUESTED
    assert history[-1] is JobState(record["state"])
    assert JobState(record["state"]) is _expected_final(JobState.REQUESTED, targets)
    for earlier, later in itertools.pairwise(history):
        assert STATE_RANK[later] > STATE_RANK[earlier]
        assert can_move(earlier, later)
    # Each move is recorded once, although the fake ran every mutation more than once.
    assert len(history) == len(set(history))


def _lines_in(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


_FRAGMENTS = st.sampled_from(
    [
        b'{"input_text": "Classify the text: a", "output_text": "b"}',
        b'{"input_text": "question: q context: c"}',
        b'{"input_text": 1}',
        b'{"input_text": ""}',
        b'{"output_text": "x"}',
        b'{"input_text": "x", "extra": [1, 2]}',
        b"[]",
        b"null",
        b"{",
        b"",
        b"\r",
        b"\xef\xbb\xbf",
        b"\xff\xfe\x00",
        b'{"input_text": NaN}',
    ]
)
_DATA = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=12)), max_size=40).map(b"\n".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA, kind=st.sampled_from([DatasetKind.TRAINING, DatasetKind.EVAL]))
def test_properties_validator_reports_every_input_by_line(data: bytes, kind: DatasetKind) -> None:
    report = validate_jsonl(io.BytesIO(data), kind=kind, source="generated.jsonl").report
    lines = _lines_in(data)
    assert report.size_bytes == len(data)
    assert 0 <= report.examples <= lines
    assert report.labeled_examples + report.unlabeled_examples <= report.examples
    if not data.strip():
        assert not report.valid
    for result in (*report.errors, *report.warnings):
        assert result.count >= len(result.findings) >= 1
        for finding in result.findings:
            assert finding.message
            if result.rule in DATASET_RULES:
                continue
            assert finding.line is not None, (result.rule, finding)
            assert 1 <= finding.line <= lines, (result.rule, finding, lines)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deliveries=st.lists(
        st.tuples(st.integers(0, 2), st.none() | st.integers(1, 12), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_properties_launches_under_any_interleaving_of_deliveries(
    deliveries: list[tuple[int, int | None, bool]],
) -> None:
    """Three requests, delivered in any order and number, each delivery perhaps crashing before
    or after one of its port calls: every request delivered at least once without a crash that
    stopped it ends as exactly one pipeline job, and no request ever makes two."""
    from distillery.local import chaos
    from distillery.services.launcher import handle_launch_event

    world = chaos.World.make()
    requests = [chaos.validated_request(world, name=f"set{index}") for index in range(3)]
    events = [chaos.launch_event(world, request) for request in requests]
    delivered: set[int] = set()
    for index, crash_at, after in deliveries:
        world.injector.at = None if crash_at is None else world.injector.calls + crash_at
        world.injector.after = after
        world.injector.crashed = False
        if chaos.deliver(world, "launch_job", handle_launch_event, events[index]):
            delivered.add(index)
    counts = chaos.check_launches(world, len(delivered))
    assert counts.duplicate_jobs == 0, counts.notes
    assert counts.lost_events == 0, counts.notes
    # Each request's job names its own dataset: no request took another's job.
    by_dataset = {job["request"]["dataset_uri"] for job in world.jobs()}
    assert len(by_dataset) == len(world.jobs()) == len(delivered)
