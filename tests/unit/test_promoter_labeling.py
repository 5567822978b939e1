"""A step-by-step model is judged, crowned and rolled back as it answers: the label task.

A job with a labeling stage trained its model on ``<label_task_prefix><prompt>`` → label, so the
promoter asks it the golden set in that form, and asks the champion with the prefix its own entry
records (none for older and pipeline champions). The fake models here are taught the golden set
only in the form they were trained on: asked another way, they answer wrong, so a prefix sent
wrong (or not at all) shows in the decision.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from distillery.core.models import JobState, StatusEvent
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryPublisher
from distillery.labeling import (
    DEFAULT_LABEL_TASK_PREFIX,
)
from distillery.labeling._prompt import (
    champion_prefix,
    label_task_prefix,
    prefix_last_user_turn,
    with_prefix,
)
from distillery.local.judged import EXAMPLES, succeeded_job
from distillery.services import evaluation
from distillery.services.promoter import promote, replace_golden_set, rollback
from tests.helpers import BUCKET, AskedModels, labeling_spec, succeeded_gemini_job
from tests.unit.test_promoter_gemini import FAMILY, _family, _job

PREDICT = DEFAULT_LABEL_TASK_PREFIX


def labeling_of(deps: Dependencies, job_id: str, prefix: str = PREDICT) -> dict[str, Any]:
    """The ``labeling`` a job record holds when its training set went through the teacher."""
    return labeling_spec(
        BUCKET,
        deps.settings.validated_prefix,
        job_id,
        source_uri=f"gs://{BUCKET}/validated/x/a.jsonl",
        source_examples=len(EXAMPLES),
        label_task_prefix=prefix,
        estimated_input_tokens=1000,
        estimated_output_tokens=2000,
        estimated_cost_usd=0.01,
    ).to_dict()


def gemini_job(deps: Dependencies, job_id: str, correct: float, *, trained_with: str | None) -> str:
    """A SUCCEEDED gemini job whose model answers the first ``correct`` share of the golden set
    right when asked in the form it was trained on: ``trained_with`` before each prompt (a job
    with a labeling stage of that label task prefix), or the bare prompt (None: no labeling).
    Asked any other way it answers wrong. Its model's endpoint."""
    return succeeded_gemini_job(
        deps,
        job_id,
        correct,
        family=FAMILY,
        prompt_prefix=trained_with or "",
        labeling=labeling_of(deps, job_id, trained_with) if trained_with is not None else None,
    )


def _events(deps: Dependencies, job_id: str) -> list[StatusEvent]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [
        StatusEvent.model_validate_json(m.data)
        for m in deps.publisher.on("distill-job-status")
        if m.attributes["job_id"] == job_id
    ]


def _report(deps: Dependencies, job_id: str) -> dict[str, Any]:
    uri = _job(deps, job_id)["promotion"]["report"]["json"]
    bucket, name = evaluation.split_gs(uri)
    report: dict[str, Any] = json.loads(deps.objects.read_bytes(bucket, name))
    return report


PROMPTS = [prompt for prompt, _ in EXAMPLES]


# --- the one place a prefix is applied ----------------------------------------------------------


def test_prompt_prefix_goes_before_the_text_at_the_given_place() -> None:
    assert with_prefix("Classify: x", PREDICT) == "predict: Classify: x"
    assert with_prefix("first\nsecond", PREDICT, at=6) == "first\npredict: second"
    assert with_prefix("as given", "") == "as given"
    with pytest.raises(ValueError, match="character 9 of a 8-character prompt"):
        with_prefix("as given", PREDICT, at=9)


def test_prompt_prefix_goes_before_the_last_user_turn_of_contents_and_copies_them() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "Earlier question"}]},
        {"role": "model", "parts": [{"text": "earlier answer"}]},
        {"role": "user", "parts": [{"text": "Classify: "}, {"text": "5 stocks to buy"}]},
    ]
    prefixed = prefix_last_user_turn(contents, PREDICT)
    assert prefixed[2]["parts"] == [{"text": "predict: Classify: "}, {"text": "5 stocks to buy"}]
    assert prefixed[0] == contents[0]
    assert contents[2]["parts"][0]["text"] == "Classify: "  # the input is left as it was
    with pytest.raises(ValueError, match="no user turn with text"):
        prefix_last_user_turn([{"role": "model", "parts": [{"text": "x"}]}], PREDICT)


def test_prompt_prefix_of_a_record_and_of_a_champion_entry(deps: Dependencies) -> None:
    assert label_task_prefix({"labeling": labeling_of(deps, "j", "label: ")}) == "label: "
    assert label_task_prefix({"labeling": None}) == ""
    assert label_task_prefix({}) == ""
    assert champion_prefix({"prompt_prefix": PREDICT}) == PREDICT
    assert champion_prefix({"job_id": "older"}) == ""  # crowned before the prefix was recorded
    assert champion_prefix(None) == ""


def test_golden_contents_lines_get_the_prefix_before_their_last_user_turn(
    deps: Dependencies,
) -> None:
    lines = [
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Context: markets fell"}]},
                {"role": "user", "parts": [{"text": "Classify: 5 stocks"}]},
                {"role": "model", "parts": [{"text": "business"}]},
            ]
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Classify: Cup final"}]},
                {"role": "model", "parts": [{"text": "sports"}]},
            ]
        },
    ]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    deps.objects.write_bytes(BUCKET, "validated/c/golden.jsonl", data)
    golden = evaluation.freeze(f"gs://{BUCKET}/validated/c/golden.jsonl", "test", deps)
    assert golden.inputs == ("Context: markets fell\nClassify: 5 stocks", "Classify: Cup final")
    assert golden.prompts(PREDICT) == (
        "Context: markets fell\npredict: Classify: 5 stocks",
        "predict: Classify: Cup final",
    )
    assert golden.prompts("") == golden.inputs
    # Read back from its frozen place, it says the same.
    again = evaluation.load_golden(golden.entry("now"), deps)
    assert again.prompts(PREDICT) == golden.prompts(PREDICT)


# --- the candidate is asked the label task, the champion with its own prefix --------------------


def test_promote_asks_a_step_by_step_candidate_with_its_label_task_prefix(
    deps: Dependencies,
) -> None:
    endpoint = gemini_job(deps, "sbs-1", 1.0, trained_with=PREDICT)
    sent = AskedModels(deps)

    outcome = promote("sbs-1", deps)

    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert sent.by_endpoint[endpoint] == [PREDICT + prompt for prompt in PROMPTS]
    job = _job(deps, "sbs-1")
    assert job["promotion"]["prompt_prefix"] == PREDICT
    assert job["promotion"]["evaluation"]["candidate_prompt_prefix"] == PREDICT
    assert job["promotion"]["evaluation"]["candidate"]["accuracy"] == 1.0
    assert job["prompt_prefix"] == PREDICT
    champion = _family(deps)["champion"]
    assert champion["job_id"] == "sbs-1" and champion["prompt_prefix"] == PREDICT
    report = _report(deps, "sbs-1")
    assert report["candidate"]["prompt_prefix"] == PREDICT
    assert report["answers"]["candidate_prompt_prefix"] == PREDICT
    promoted = [e for e in _events(deps, "sbs-1") if e.state is JobState.PROMOTED]
    assert [e.prompt_prefix for e in promoted] == [PREDICT]
    # Only the PROMOTED event says how to call the model.
    assert all(e.prompt_prefix is None for e in _events(deps, "sbs-1") if e not in promoted)


def test_a_step_by_step_model_asked_without_its_prefix_answers_wrong(deps: Dependencies) -> None:
    # The control: the same kind of model, but its record forgets the labeling stage, so it is
    # asked the bare prompts it never learned, and the golden set rejects it.
    gemini_job(deps, "sbs-1", 1.0, trained_with=PREDICT)
    job = _job(deps, "sbs-1")
    job["labeling"] = None
    job["request"]["overrides"] = {"min_task_score": 0.5}
    deps.records.set("jobs", "sbs-1", job)

    outcome = promote("sbs-1", deps)

    assert outcome is not None and outcome.state is JobState.REJECTED
    promotion = _job(deps, "sbs-1")["promotion"]
    assert promotion["prompt_prefix"] == ""
    assert promotion["evaluation"]["candidate"]["accuracy"] == 0.0


def test_the_champion_is_asked_with_its_own_prefix_and_the_candidate_with_its(
    deps: Dependencies,
) -> None:
    first = gemini_job(deps, "sbs-1", 0.5, trained_with=PREDICT)
    assert promote("sbs-1", deps).state is JobState.PROMOTED  # type: ignore[union-attr]
    second = gemini_job(deps, "plain-2", 1.0, trained_with=None)
    sent = AskedModels(deps)

    outcome = promote("plain-2", deps)

    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert sent.by_endpoint[first] == [PREDICT + prompt for prompt in PROMPTS]
    assert sent.by_endpoint[second] == PROMPTS
    promotion = _job(deps, "plain-2")["promotion"]
    assert promotion["prompt_prefix"] == ""
    assert promotion["champion"]["prompt_prefix"] == PREDICT
    # Asked its own way, the champion scored what it knows, not zero.
    assert promotion["evaluation"]["champion"]["accuracy"] == 0.5
    assert promotion["evaluation"]["champion_prompt_prefix"] == PREDICT
    report = _report(deps, "plain-2")
    assert report["champion"]["prompt_prefix"] == PREDICT
    assert report["answers"]["champion_prompt_prefix"] == PREDICT
    family = _family(deps)
    assert family["champion"]["prompt_prefix"] == ""
    assert family["history"][-1]["prompt_prefix"] == PREDICT


def test_two_step_by_step_models_of_different_prefixes_are_each_asked_their_way(
    deps: Dependencies,
) -> None:
    first = gemini_job(deps, "sbs-1", 0.5, trained_with=PREDICT)
    promote("sbs-1", deps)
    second = gemini_job(deps, "sbs-2", 1.0, trained_with="label: ")
    sent = AskedModels(deps)

    assert promote("sbs-2", deps).state is JobState.PROMOTED  # type: ignore[union-attr]

    assert sent.by_endpoint[first] == [PREDICT + prompt for prompt in PROMPTS]
    assert sent.by_endpoint[second] == ["label: " + prompt for prompt in PROMPTS]
    assert _family(deps)["champion"]["prompt_prefix"] == "label: "


def test_an_older_pipeline_champion_is_asked_bare_against_a_step_by_step_candidate(
    deps: Dependencies,
) -> None:
    succeeded_job(deps, "pipe-1", FAMILY, 0.5, bucket=BUCKET)
    promote("pipe-1", deps)
    family = _family(deps)
    serving = family["champion"]["endpoint"]
    # A champion entry from before prompt_prefix was recorded.
    del family["champion"]["prompt_prefix"]
    deps.records.set("models", FAMILY, family)
    candidate = gemini_job(deps, "sbs-2", 1.0, trained_with=PREDICT)
    sent = AskedModels(deps)

    assert promote("sbs-2", deps).state is JobState.PROMOTED  # type: ignore[union-attr]

    assert sent.by_endpoint[serving] == PROMPTS
    assert sent.by_endpoint[candidate] == [PREDICT + prompt for prompt in PROMPTS]
    promotion = _job(deps, "sbs-2")["promotion"]
    assert promotion["champion"]["prompt_prefix"] == ""
    assert promotion["evaluation"]["champion_prompt_prefix"] == ""


def test_a_pipeline_champion_entry_records_no_prefix(deps: Dependencies) -> None:
    succeeded_job(deps, "pipe-1", FAMILY, 1.0, bucket=BUCKET)
    promote("pipe-1", deps)
    assert _family(deps)["champion"]["prompt_prefix"] == ""
    promoted = [e for e in _events(deps, "pipe-1") if e.state is JobState.PROMOTED]
    assert [e.prompt_prefix for e in promoted] == [""]


# --- rollback restores the previous entry with its own prefix ----------------------------------


def test_rollback_restores_the_previous_champion_with_its_own_prefix(deps: Dependencies) -> None:
    gemini_job(deps, "sbs-1", 0.5, trained_with=PREDICT)
    promote("sbs-1", deps)
    gemini_job(deps, "plain-2", 1.0, trained_with=None)
    promote("plain-2", deps)
    assert _family(deps)["champion"]["prompt_prefix"] == ""

    doc = rollback(FAMILY, deps, from_job="plain-2")

    assert doc["champion"]["job_id"] == "sbs-1"
    assert doc["champion"]["prompt_prefix"] == PREDICT
    assert doc["rolled_back"][-1]["prompt_prefix"] == ""
    assert doc["rolled_back"][-1]["restored_prompt_prefix"] == PREDICT
    job = _job(deps, "plain-2")
    assert job["state"] == "ROLLED_BACK"
    assert f"asked with the prompt prefix {PREDICT!r}" in job["reason"]
    rolled = [e for e in _events(deps, "plain-2") if e.state is JobState.ROLLED_BACK]
    assert rolled and PREDICT in (rolled[0].reason or "")


def test_rollback_to_a_model_without_prefix_says_nothing_of_one(deps: Dependencies) -> None:
    gemini_job(deps, "plain-1", 0.5, trained_with=None)
    promote("plain-1", deps)
    gemini_job(deps, "sbs-2", 1.0, trained_with=PREDICT)
    promote("sbs-2", deps)

    doc = rollback(FAMILY, deps, from_job="sbs-2")

    assert doc["champion"]["job_id"] == "plain-1" and doc["champion"]["prompt_prefix"] == ""
    assert "prefix" not in _job(deps, "sbs-2")["reason"]


# --- recorded answers and the golden set's replacement -----------------------------------------


def test_recorded_answers_are_reused_only_when_asked_with_the_champions_prefix(
    deps: Dependencies,
) -> None:
    gemini_job(deps, "sbs-1", 1.0, trained_with=PREDICT)
    promote("sbs-1", deps)
    sha = _report(deps, "sbs-1")["answers"]["golden_sha256"]

    reused = evaluation._recorded_answers("sbs-1", sha, PREDICT, deps)

    assert reused == [answer for _, answer in EXAMPLES]
    assert evaluation._recorded_answers("sbs-1", sha, "", deps) is None
    assert evaluation._recorded_answers("sbs-1", "0" * 64, PREDICT, deps) is None


def test_replacing_the_golden_set_rescores_a_step_by_step_champion_with_its_prefix(
    deps: Dependencies,
) -> None:
    endpoint = gemini_job(deps, "sbs-1", 1.0, trained_with=PREDICT)
    promote("sbs-1", deps)
    half = EXAMPLES[:10]
    data = b"".join(
        json.dumps({"input_text": p, "output_text": a}).encode() + b"\n" for p, a in half
    )
    deps.objects.write_bytes(BUCKET, "golden/new.jsonl", data)
    sent = AskedModels(deps)

    doc = replace_golden_set(FAMILY, f"gs://{BUCKET}/golden/new.jsonl", deps)

    assert sent.by_endpoint[endpoint] == [PREDICT + prompt for prompt, _ in half]
    assert doc["champion"]["golden_metrics"]["accuracy"] == 1.0
