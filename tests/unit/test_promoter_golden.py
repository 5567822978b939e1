"""The golden set a family is judged on, and the side-by-side rule, on the in-memory ports."""

from __future__ import annotations

from typing import Any

import pytest

from distillery.core.errors import RequestRejectedError, RetryableError
from distillery.core.models import JobState
from distillery.core.runtime import Dependencies
from distillery.local.judged import EXAMPLES, WRONG, eval_set_bytes, succeeded_job
from distillery.services.datasets import dataset_id
from distillery.services.evaluation import GoldenSetError
from distillery.services.promoter import promote, replace_golden_set
from tests.helpers import BUCKET, fake_dependencies
from tests.unit.test_promoter import FAMILY, _fake, _job


def _family(deps: Dependencies) -> dict[str, Any]:
    doc = deps.records.get("models", FAMILY)
    assert doc is not None
    return doc


def _with_dataset(deps: Dependencies, job_id: str, golden: str | None) -> None:
    """Give job ``job_id`` a training-set record ``datasets/news.jsonl``; with ``golden``
    ("valid", "invalid" or "pending"), also a ``datasets/news.golden.jsonl`` beside it."""
    training = dataset_id(BUCKET, "datasets/news.jsonl", 1)
    deps.records.set("datasets", training, {"id": training, "bucket": BUCKET, "name": "news"})
    record = _job(deps, job_id)
    record["dataset_id"] = training
    deps.records.set("jobs", job_id, record)
    if golden is None:
        return
    # The user's golden set: the second half of the examples only.
    info = deps.objects.write_bytes(
        BUCKET, "datasets/news.golden.jsonl", eval_set_bytes(EXAMPLES[10:])
    )
    if golden != "pending":
        deps.records.set(
            "datasets",
            dataset_id(BUCKET, info.name, info.generation),
            {"status": golden, "report_uri": "gs://b/reports/x.json"},
        )


def test_a_first_model_is_judged_on_its_eval_set_which_becomes_the_familys(
    deps: Dependencies,
) -> None:
    succeeded_job(deps, "job-1", FAMILY, 0.5, bucket=BUCKET)
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED  # no minimum by default
    golden = _family(deps)["golden"]
    assert golden["examples"] == len(EXAMPLES) and "eval set of job job-1" in golden["source"]
    evaluation = _job(deps, "job-1")["promotion"]["evaluation"]
    assert evaluation["task"] == "classification" and "inferred" in evaluation["task_how"]
    assert evaluation["candidate"]["accuracy"] == 0.5 and evaluation["comparison"] is None


def test_a_first_model_below_the_minimum_task_score_is_rejected() -> None:
    deps = fake_dependencies(min_task_score=0.8)
    succeeded_job(deps, "job-1", FAMILY, 0.5, bucket=BUCKET)
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert "accuracy on the golden set 0.5000 is below the minimum 0.8" in str(outcome.reason)
    assert "(DISTILLERY_MIN_TASK_SCORE)" in str(outcome.reason)
    assert _fake(deps).endpoints == {}  # its own endpoint is gone, and nothing else was made


def test_the_challenger_is_compared_with_the_champion_on_the_same_golden_set(
    deps: Dependencies,
) -> None:
    succeeded_job(deps, "job-1", FAMILY, 0.6, bucket=BUCKET)
    promote("job-1", deps)
    succeeded_job(deps, "job-2", FAMILY, 0.9, bucket=BUCKET)
    better = promote("job-2", deps)
    assert better is not None and better.state is JobState.PROMOTED
    comparison = _job(deps, "job-2")["promotion"]["evaluation"]["comparison"]
    assert comparison["mean_difference"] == pytest.approx(0.3)
    assert 0 < comparison["low"] <= 0.3 <= comparison["high"]
    succeeded_job(deps, "job-3", FAMILY, 0.6, bucket=BUCKET)
    worse = promote("job-3", deps)
    assert worse is not None and worse.state is JobState.REJECTED
    assert "mean paired difference -0.3000 (95% CI" in str(worse.reason)
    assert "is below the margin 0 (DISTILLERY_PROMOTION_MARGIN)" in str(worse.reason)
    assert _family(deps)["champion"]["job_id"] == "job-2"
    # Only the family's serving endpoint is left: every judged model's own one is gone.
    assert [e["display_name"] for e in _fake(deps).endpoints.values()] == [f"{FAMILY}-serving"]
    report = _job(deps, "job-3")["promotion"]["report"]
    assert report["html"] == f"gs://{BUCKET}/reports/decisions/job-3.html"


def test_a_class_that_drops_too_far_rejects_the_challenger() -> None:
    deps = fake_dependencies(max_class_regression=0.1, promotion_tolerance=1.0)
    succeeded_job(deps, "job-1", FAMILY, 0.5, bucket=BUCKET)  # half of each class right
    promote("job-1", deps)
    # As good overall (0.5), but every "sports" example wrong and every "business" one right.
    model = succeeded_job(deps, "job-2", FAMILY, 0.5, bucket=BUCKET)
    labels = dict(EXAMPLES)
    _fake(deps).answers[model] = lambda prompt: (
        labels[prompt] if labels.get(prompt) == "business" else WRONG
    )
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert "class 'sports': accuracy drops by 0.5000 (0.5000 -> 0.0000)" in str(outcome.reason)
    assert "(DISTILLERY_MAX_CLASS_REGRESSION)" in str(outcome.reason)


def test_the_users_golden_file_is_the_familys_golden_set(deps: Dependencies) -> None:
    succeeded_job(deps, "job-1", FAMILY, 0.9, bucket=BUCKET)
    _with_dataset(deps, "job-1", "valid")
    promote("job-1", deps)
    golden = _family(deps)["golden"]
    assert golden["examples"] == 10
    assert golden["source"].startswith(f"the user's golden set gs://{BUCKET}/datasets/news.golden")


def test_an_invalid_golden_file_rejects_and_one_not_yet_validated_is_waited_for(
    deps: Dependencies,
) -> None:
    succeeded_job(deps, "job-1", FAMILY, 0.9, bucket=BUCKET)
    _with_dataset(deps, "job-1", "pending")
    with pytest.raises(RetryableError, match="not validated yet"):
        promote("job-1", deps)
    _with_dataset(deps, "job-1", "invalid")
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert "is invalid (report gs://b/reports/x.json)" in str(outcome.reason)


def test_replacing_the_golden_set_rescores_the_champion_and_judges_later_jobs_on_it(
    deps: Dependencies,
) -> None:
    succeeded_job(deps, "job-1", FAMILY, 0.5, bucket=BUCKET)  # right on examples 0-9 only
    promote("job-1", deps)
    first = _family(deps)["golden"]
    info = deps.objects.write_bytes(BUCKET, "sets/late.jsonl", eval_set_bytes(EXAMPLES[10:]))
    family = replace_golden_set(FAMILY, f"gs://{BUCKET}/{info.name}", deps)
    assert family["golden"]["examples"] == 10 and family["golden_history"] == [first]
    assert family["champion"]["golden_metrics"]["accuracy"] == 0.0  # wrong on all of them
    with pytest.raises(GoldenSetError, match="not a valid golden set"):
        deps.objects.write_bytes(BUCKET, "sets/tiny.jsonl", eval_set_bytes(EXAMPLES[:3]))
        replace_golden_set(FAMILY, f"gs://{BUCKET}/sets/tiny.jsonl", deps)
    # A later job is judged on the new set: 0.6 of the whole is 2 of its 10 (examples 10, 11).
    succeeded_job(deps, "job-2", FAMILY, 0.6, bucket=BUCKET)
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    evaluation = _job(deps, "job-2")["promotion"]["evaluation"]
    assert evaluation["golden"]["sha256"] == family["golden"]["sha256"]
    assert evaluation["candidate"]["accuracy"] == pytest.approx(0.2)


def test_during_a_canary_the_champion_answers_with_what_its_decision_recorded() -> None:
    deps = fake_dependencies(canary_percent=10)
    succeeded_job(deps, "job-1", FAMILY, 0.5, bucket=BUCKET)
    promote("job-1", deps)
    succeeded_job(deps, "job-2", FAMILY, 0.9, bucket=BUCKET)
    promote("job-2", deps)  # a canary: job-2's model takes 10%, job-1's 90%
    # The fake endpoint answers with the model of the largest share (job-1's, 0.5): the champion
    # (job-2, 0.9) would be measured wrong. Its recorded answers are used instead.
    succeeded_job(deps, "job-3", FAMILY, 0.7, bucket=BUCKET)
    outcome = promote("job-3", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    evaluation = _job(deps, "job-3")["promotion"]["evaluation"]
    assert evaluation["champion"]["accuracy"] == pytest.approx(0.9)


def test_without_any_golden_set_a_first_model_may_be_promoted_when_allowed() -> None:
    deps = fake_dependencies(promote_without_eval=True)
    succeeded_job(deps, "job-1", FAMILY, 0.9, bucket=BUCKET, eval_set=False)
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert (
        "promoted without evaluation" in _job(deps, "job-1")["promotion"]["evaluation"]["skipped"]
    )


def test_a_candidate_whose_endpoint_answers_nothing_is_rejected(deps: Dependencies) -> None:
    model = succeeded_job(deps, "job-1", FAMILY, 0.9, bucket=BUCKET)

    def refuses(prompt: str) -> str:
        raise RequestRejectedError("the endpoint does not take text-model instances")

    _fake(deps).answers[model] = refuses
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert "answered none of the golden set's 20 examples" in str(outcome.reason)
    assert "does not take text-model instances" in str(outcome.reason)
