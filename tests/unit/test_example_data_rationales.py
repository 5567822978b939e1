"""The example data's rationales, the rumour task, and the local teacher that explains: trained
with the real local trainer, it answers a batch prediction job's instructed requests in the
step-by-step form."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from distillery.fakes import InMemoryObjectStore
from distillery.local.emulator import LocalModels, TrainerOptions
from distillery.local.emulator._batch import validate_batch_job
from distillery.local.emulator._batch_runner import BatchJobRun, BatchRunner, LocalTeachers
from distillery.local.emulator._config import LOCAL_TEACHERS_VARIABLE
from distillery.local.emulator._model import now
from distillery.local.emulator._registry import ArtifactCache, ModelRegistry
from distillery.local.emulator._runner import RunContext
from distillery.local.example_data import (
    CLASSES,
    INSTRUCTION,
    RUMOUR_INSTRUCTION,
    Example,
    generate,
    generate_rumours,
)
from distillery.local.teachers import teacher_examples, train_local_teacher
from distillery.local.trainer import load_predictor
from tests.unit.test_emulator_batch import BUCKET, PARENT, PROJECT, REGION, body, jsonl, read_output


def digest(examples: list[Example]) -> str:
    return hashlib.sha256("".join(e.to_json() + "\n" for e in examples).encode()).hexdigest()


def test_generate_without_rationales_is_unchanged() -> None:
    # The seed's example datasets, byte for byte (other tests and the demo depend on them).
    train, evaluation = generate(4, 2)
    assert [e.to_json() for e in train[:2]] == [
        '{"input_text": "' + INSTRUCTION + "The home team qualified for the tournament on "
        'Monday.", "output_text": "sports"}',
        '{"input_text": "' + INSTRUCTION + "The carmaker cut its interest rate forecast "
        'earlier today.", "output_text": "business"}',
    ]
    assert all(e.rationale is None for e in train + evaluation)
    assert digest(generate(1000, 100)[0]) == digest(generate(1000, 100, rationales=False)[0])
    unlabeled, _ = generate(10, 2, labeled=False, rationales=True)
    assert all(e.output_text is None and e.rationale is None for e in unlabeled)
    assert all(set(json.loads(e.to_json())) == {"input_text"} for e in unlabeled)


def test_generate_with_rationales_names_the_words_that_point_to_the_label() -> None:
    plain, plain_eval = generate(200, 20, seed=3)
    explained, explained_eval = generate(200, 20, seed=3, rationales=True)
    assert [(e.input_text, e.output_text) for e in plain + plain_eval] == [
        (e.input_text, e.output_text) for e in explained + explained_eval
    ]
    for example in explained + explained_eval:
        assert example.rationale is not None and example.output_text in CLASSES
        subject, event = re.findall(r'"([^"]+)"', example.rationale)
        text = example.input_text.removeprefix(INSTRUCTION).lower()
        assert text.startswith(f"{subject} {event} ")
        assert example.rationale.endswith(f"so the text is about {example.output_text}.")
        assert "\n" not in example.rationale and "Answer:" not in example.rationale
        assert json.loads(example.to_json())["rationale"] == example.rationale
    assert generate(200, 20, seed=3, rationales=True) == (explained, explained_eval)


def test_generate_rumours_labels_by_the_rule_the_rationale_names() -> None:
    train, evaluation = generate_rumours(600, 100, seed=5, rationales=True)
    assert len(train) == 600 and len(evaluation) == 100
    assert not {e.input_text for e in train} & {e.input_text for e in evaluation}
    kinds = set()
    for example in train + evaluation:
        assert example.input_text.startswith(RUMOUR_INSTRUCTION)
        assert example.rationale is not None and example.output_text in CLASSES
        cue, decider = re.findall(r'"([^"]+)"', example.rationale)
        text = example.input_text.removeprefix(RUMOUR_INSTRUCTION)
        assert text.endswith(f" {cue}.") and decider in text.lower()
        kind = "subject" if "a rumour" in example.rationale else "event"
        kinds.add(kind)
        assert text.lower().startswith(decider) == (kind == "subject")
        assert example.rationale.endswith(f"is {example.output_text} news.")
    assert kinds == {"subject", "event"}
    # The label is not the topic of every word: the rule over the cue decides.
    assert generate_rumours(600, 100, seed=5) == (
        [Example(e.input_text, e.output_text) for e in train],
        [Example(e.input_text, e.output_text) for e in evaluation],
    )
    with pytest.raises(ValueError, match="at most 7680"):
        generate_rumours(7600, 100)


def test_teacher_examples_need_labels_and_rationales() -> None:
    train, _ = generate(3, 1, rationales=True)
    assert [e.rationale for e in teacher_examples(train)] == [e.rationale for e in train]
    with pytest.raises(ValueError, match="example 1 has no rationale"):
        teacher_examples(generate(3, 1)[0])
    with pytest.raises(ValueError, match="example 2 has no output_text"):
        teacher_examples([train[0], Example("prompt", None)])


def test_train_local_teacher_refuses_an_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=re.escape("gemini-2.5-pro")):
        train_local_teacher(tmp_path, model_id="gemini-0-nano")


@pytest.mark.timeout(300)
def test_a_trained_local_teacher_answers_instructed_requests_step_by_step(tmp_path: Path) -> None:
    examples = generate(60, 8, seed=2, rationales=True)
    teacher = train_local_teacher(tmp_path / "teacher", examples=examples, steps=30, batch_size=8)
    assert teacher.env() == {LOCAL_TEACHERS_VARIABLE: f"gemini-2.5-pro={teacher.model_dir}"}
    assert 0.0 <= teacher.label_accuracy <= 1.0 and 0.0 <= teacher.rationale_accuracy <= 1.0
    assert load_predictor(teacher.model_dir).can_explain

    # The batch runner, with the emulator's own resolution of the teacher from its environment.
    options = TrainerOptions(local_models=LocalModels.from_env(teacher.env()))
    store = InMemoryObjectStore()
    teachers = LocalTeachers(
        options, ModelRegistry(), ArtifactCache(store, tmp_path / "cache"), load_predictor
    )
    prompt = examples[1][0].input_text
    instructed = {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "systemInstruction": {"parts": [{"text": "Explain, then answer."}]},
        }
    }
    plain = {"request": {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}}
    store.put(BUCKET, "labeling/news/in.jsonl", jsonl([instructed, plain]))
    job = BatchJobRun(
        name=f"{PARENT}/batchPredictionJobs/5",
        job_id="5",
        project=PROJECT,
        location=REGION,
        request=validate_batch_job(REGION, body()),
        create_time=now(),
    )
    result = BatchRunner(teachers).run(job, RunContext(store))
    assert (result.progress.successful, result.progress.failed) == (2, 0)
    texts = {
        "systemInstruction" in line["request"]: line["response"]["candidates"][0]["content"][
            "parts"
        ][0]["text"]
        for line in read_output(store, result.output_directory)
    }
    explained, answered = texts[True], texts[False]
    assert re.fullmatch(r"Rationale: .+\nAnswer: .+", explained), explained
    assert explained.endswith(f"\nAnswer: {answered}") and "Rationale:" not in answered
