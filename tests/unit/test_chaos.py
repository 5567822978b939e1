"""The quick form of the chaos suite (``bench/chaos.py`` runs the full one): every scenario holds.

A crash is injected before and after sampled port calls of a launch and a promotion, then the
event is redelivered; redeliveries are shuffled and concurrent; limits, fallback, family races,
rollback during a promotion, poison and newer-version messages. The counters themselves are
checked to catch what they are for.
"""

from __future__ import annotations

import logging

import pytest

from distillery.local import chaos


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL)


def test_chaos_quick_suite_holds_every_scenario() -> None:
    results = chaos.run_all(quick=True)
    failed = [(r.name, r.counts) for r in results if not r.counts.held]
    assert failed == []
    line = chaos.summary(results)
    assert line.endswith("duplicate jobs 0, lost events 0, wrong champions 0")
    assert line.startswith(f"chaos: {len(results)} scenarios, {len(results)} held")


def test_chaos_injector_crashes_once_before_or_after_the_chosen_call() -> None:
    done: list[int] = []
    for after in (False, True):
        injector = chaos.Injector(2, after=after)
        injector.around(lambda: done.append(1))
        with pytest.raises(chaos.Crash):
            injector.around(lambda: done.append(2))
        injector.around(lambda: done.append(3))
    assert done == [1, 3, 1, 2, 3]


def test_chaos_counts_a_second_pipeline_job_and_a_lost_request() -> None:
    world = chaos.World.make()
    request = chaos.validated_request(world)
    assert not chaos.check_launches(world, 1).held  # nothing launched: lost
    body = {"runtimeConfig": {"parameterValues": {"dataset_uri": request.dataset_uri}}}
    world.vertex.create("us-central1", "job-one", body)
    world.vertex.create("us-central1", "job-two", body)
    counts = chaos.check_launches(world, 1)
    assert counts.duplicate_jobs == 1


def test_chaos_counts_a_wrong_champion() -> None:
    world = chaos.World.make()
    better = chaos.family_race(world, "weaker first")
    assert chaos.check_champion(world, better).held
    weaker = f"projects/{chaos.PROJECT}/locations/us-central1/models/m-job-weak"
    assert chaos.check_champion(world, weaker).wrong_champions == 1
