"""The trainer end to end on tiny tasks: training, evaluation, selection, saving, predicting.

Tiny data and a few dozen steps keep each run at a second or two on two CPU cores. Scripted
evaluators (injected into :class:`TrainingRun`) make early stopping and checkpoint selection
deterministic to test.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import distillery.local.trainer as trainer_package
from distillery.core.errors import DistilleryError, PermanentError
from distillery.local.trainer import (
    ProgressEvent,
    TrainingCancelledError,
    TrainingConfig,
    TrainingError,
    TrainingExample,
    TrainingResult,
    label_with_teacher,
    load_predictor,
    train,
)
from distillery.local.trainer._loop import Evaluator, TrainingRun
from distillery.local.trainer._model import (
    METADATA_FILE,
    ModelMetadata,
    StudentArchitecture,
    build_student,
    load_seq2seq,
    read_metadata,
    save_model,
)
from distillery.local.trainer._tokenizer import build_tokenizer

_WORDS = {
    "fruit": ("apple", "pear", "plum", "cherry"),
    "animal": ("dog", "horse", "tiger", "otter"),
}
TINY_TASK = [
    TrainingExample(f"Is it a fruit or an animal? {word}", label)
    for label, words in _WORDS.items()
    for word in words
]
TINY_RATIONALES = [
    dataclasses.replace(e, rationale=f"{e.input_text.split()[-1]} is a kind of {e.output_text}.")
    for e in TINY_TASK
]
#: Enough for the built-in student to learn the tiny task (checked by the round-trip test).
TINY_CONFIG = TrainingConfig(
    train_steps=60, batch_size=8, base_learning_rate=3e-3, log_interval=5, evaluation_interval=20
)
TINY_ARCHITECTURE = StudentArchitecture(
    d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    """The built-in student trained on the tiny task (eval set = the training set)."""
    output = tmp_path_factory.mktemp("tiny")
    return train(TINY_CONFIG, TINY_TASK, TINY_TASK, output)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, very small local T5 checkpoint (a fixed tokenizer for comparisons)."""
    texts = [
        text
        for e in TINY_RATIONALES
        for text in (
            "predict: " + e.input_text,
            "explain: " + e.input_text,
            e.output_text or "",
            e.rationale or "",
        )
    ]
    tokenizer = build_tokenizer(texts)
    model = build_student(tokenizer, seed=0, architecture=TINY_ARCHITECTURE)
    directory = tmp_path_factory.mktemp("checkpoint")
    save_model(model, tokenizer, directory, ModelMetadata())
    return directory


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _scripted(
    accuracies: list[float], seen: dict[int, dict[str, torch.Tensor]] | None = None
) -> Evaluator:
    """An evaluator answering ``accuracies`` in turn (snapshotting the weights into ``seen``)."""
    answers = iter(accuracies)

    def evaluate(model: Any, step: int) -> dict[str, float]:
        if seen is not None:
            seen[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {
            "eval_total_loss": 1.0,
            "eval_fraction_of_correct_next_step_preds": next(answers),
            "eval_num_predictions": 8.0,
        }

    return evaluate


# -- the package -------------------------------------------------------------------------------


def test_trainer_exports_are_complete() -> None:
    public = {
        name
        for name, value in vars(trainer_package).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }

    assert set(trainer_package.__all__) == public


def test_trainer_errors_are_permanent_distillery_errors() -> None:
    assert issubclass(TrainingError, PermanentError)
    assert issubclass(TrainingError, DistilleryError)
    assert issubclass(TrainingCancelledError, TrainingError)


@pytest.mark.parametrize(
    "change",
    [
        {"train_steps": 0},
        {"batch_size": 0},
        {"alpha": 1.5},
        {"learning_rate_multiplier": 0.0},
        {"evaluation_interval": 0},
        {"max_input_tokens": 1},
        {"early_stopping_patience": 0},
    ],
)
def test_trainer_config_rejects_out_of_range_values(change: dict[str, Any]) -> None:
    with pytest.raises(TrainingError, match="invalid training configuration"):
        TrainingConfig(**change)


def test_trainer_config_learning_rate_is_base_times_multiplier() -> None:
    assert TrainingConfig(base_learning_rate=1e-3, learning_rate_multiplier=2.5).learning_rate == (
        pytest.approx(2.5e-3)
    )


# -- training ----------------------------------------------------------------------------------


def test_trainer_loss_decreases_on_a_tiny_task(tiny_run: TrainingResult) -> None:
    train_lines = [line for line in _lines(tiny_run.metrics_path) if line["phase"] == "train"]

    assert [line["step"] for line in train_lines] == list(range(5, 61, 5))
    assert train_lines[-1]["train_total_loss"] < 0.25 * train_lines[0]["train_total_loss"]
    assert tiny_run.metrics["train_fraction_of_correct_next_step_preds"] == 1.0


def test_trainer_reports_vertex_metrics_and_outputs(tiny_run: TrainingResult) -> None:
    assert set(tiny_run.metrics) == {
        "train_total_loss",
        "train_fraction_of_correct_next_step_preds",
        "train_num_predictions",
        "eval_total_loss",
        "eval_fraction_of_correct_next_step_preds",
        "eval_num_predictions",
    }
    # 8 eval examples, each a one-token label plus end-of-sequence.
    assert tiny_run.metrics["eval_num_predictions"] == 16.0
    # The last log window: 5 steps of 8 examples, two target tokens each.
    assert tiny_run.metrics["train_num_predictions"] == 80.0
    assert (tiny_run.steps_run, tiny_run.selected_step, tiny_run.stopped_early) == (60, 60, False)
    eval_lines = [line for line in _lines(tiny_run.metrics_path) if line["phase"] == "eval"]
    assert [line["step"] for line in eval_lines] == [20, 40, 60]
    assert list(tiny_run.tensorboard_dir.glob("events.out.tfevents.*"))
    assert tiny_run.eval_exact_match == 1.0


def test_trainer_event_files_carry_vertex_tags_and_the_result_metrics(
    tiny_run: TrainingResult,
) -> None:
    from tensorboard.compat.proto import event_pb2

    from distillery.core.training_metrics import _records

    tags: dict[str, dict[int, float]] = {}
    for path in tiny_run.tensorboard_dir.glob("events.out.tfevents.*"):
        with path.open("rb") as reader:
            for record in _records(reader, str(path)):
                event = event_pb2.Event.FromString(record)
                for value in event.summary.value:
                    tags.setdefault(value.tag, {})[event.step] = value.simple_value
    # SPEC "After the job": the names Vertex AI TensorBoard shows, with their leading "/".
    assert set(tags) == {f"/{name}" for name in tiny_run.metrics}
    assert sorted(tags["/eval_total_loss"]) == [20, 40, 60]
    for name, value in tiny_run.metrics.items():
        assert tags[f"/{name}"][tiny_run.selected_step] == pytest.approx(value, rel=1e-6)


def test_trainer_save_load_predict_round_trip(tiny_run: TrainingResult) -> None:
    predictor = load_predictor(tiny_run.model_dir)

    answers = predictor.predict([e.input_text for e in TINY_TASK], max_new_tokens=5)

    assert answers == [e.output_text for e in TINY_TASK]
    assert not predictor.can_explain
    with pytest.raises(TrainingError, match="explain"):
        predictor.explain(["Is it a fruit or an animal? dog"])


def test_trainer_teacher_labels_unlabeled_prompts(tiny_run: TrainingResult) -> None:
    prompts = [e.input_text for e in TINY_TASK[:3]]

    labelled = label_with_teacher(tiny_run.model_dir, prompts)

    assert labelled == [TrainingExample(p, "fruit", None) for p in prompts]


def test_trainer_trains_on_teacher_labels(tiny_run: TrainingResult, tmp_path: Path) -> None:
    unlabeled = [TrainingExample(e.input_text) for e in TINY_TASK]
    config = dataclasses.replace(
        TINY_CONFIG, train_steps=2, teacher_checkpoint=str(tiny_run.model_dir)
    )

    result = train(config, unlabeled, None, tmp_path)

    assert result.examples_used == len(TINY_TASK)
    assert result.eval_exact_match is None
    assert "eval_total_loss" not in result.metrics


@pytest.mark.parametrize(
    ("examples", "reason"),
    [([], "the training set is empty"), ([TrainingExample("a prompt")] * 3, "no teacher")],
)
def test_trainer_rejects_a_training_set_without_labels(
    examples: list[TrainingExample], reason: str, tmp_path: Path
) -> None:
    with pytest.raises(TrainingError, match=reason):
        train(TINY_CONFIG, examples, None, tmp_path)


def test_trainer_skips_unlabeled_examples_with_a_warning(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    config = TrainingConfig(train_steps=1, student_checkpoint=str(tiny_checkpoint))

    result = train(config, [*TINY_TASK, TrainingExample("no label")], None, tmp_path)

    assert result.examples_used == len(TINY_TASK)
    assert any("without output_text" in warning for warning in result.warnings)


def test_trainer_truncates_long_fields_with_a_warning(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    config = TrainingConfig(
        train_steps=1, max_input_tokens=4, student_checkpoint=str(tiny_checkpoint)
    )

    result = train(config, TINY_TASK, None, tmp_path)

    assert result.truncated_fields == len(TINY_TASK)
    assert any("truncated 8 fields" in warning for warning in result.warnings)


def _first_step_loss(
    checkpoint: Path, examples: list[TrainingExample], alpha: float, out: Path
) -> float:
    config = TrainingConfig(
        train_steps=1, log_interval=1, alpha=alpha, student_checkpoint=str(checkpoint)
    )
    return train(config, examples, None, out).metrics["train_total_loss"]


def test_trainer_weighs_label_and_rationale_losses_by_alpha(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    # The first step's logged loss is the untrained checkpoint's loss on the same first batch.
    label = _first_step_loss(tiny_checkpoint, TINY_RATIONALES, 1.0, tmp_path / "a")
    rationale = _first_step_loss(tiny_checkpoint, TINY_RATIONALES, 0.0, tmp_path / "b")
    mixed = _first_step_loss(tiny_checkpoint, TINY_RATIONALES, 0.25, tmp_path / "c")
    label_only = _first_step_loss(tiny_checkpoint, TINY_TASK, 0.25, tmp_path / "d")

    assert label != pytest.approx(rationale)
    assert mixed == pytest.approx(0.25 * label + 0.75 * rationale, rel=1e-5)
    assert label_only == pytest.approx(label, rel=1e-5)  # no rationale anywhere: label loss


def test_trainer_multi_task_model_explains_and_teaches_rationales(tmp_path: Path) -> None:
    result = train(TINY_CONFIG, TINY_RATIONALES, TINY_RATIONALES, tmp_path)

    predictor = load_predictor(result.model_dir)
    labelled = label_with_teacher(result.model_dir, [TINY_RATIONALES[5].input_text])

    assert predictor.can_explain
    assert labelled == [TINY_RATIONALES[5]]  # label and rationale, as trained
    # 8 predict pairs (label + end-of-sequence) and 8 explain pairs (several tokens each).
    assert result.metrics["eval_num_predictions"] > 16 * 2


def test_trainer_default_evaluation_interval_with_eval_data(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    config = TrainingConfig(train_steps=45, student_checkpoint=str(tiny_checkpoint))

    result = train(config, TINY_TASK, TINY_TASK, tmp_path)

    eval_steps = [line["step"] for line in _lines(result.metrics_path) if line["phase"] == "eval"]
    assert eval_steps[:2] == [20, 40]
    assert eval_steps[-1] == result.steps_run


def test_trainer_is_deterministic_for_a_seed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = TrainingConfig(train_steps=6, log_interval=2, student_checkpoint=str(tiny_checkpoint))

    first = train(config, TINY_TASK, TINY_TASK, tmp_path / "a")
    second = train(config, TINY_TASK, TINY_TASK, tmp_path / "b")
    other = train(dataclasses.replace(config, seed=1), TINY_TASK, TINY_TASK, tmp_path / "c")

    assert _lines(first.metrics_path) == _lines(second.metrics_path)
    assert _lines(first.metrics_path) != _lines(other.metrics_path)


# -- evaluation, early stopping, checkpoint selection --------------------------------------


def _run(
    checkpoint: Path,
    out: Path,
    accuracies: list[float],
    seen: dict[int, Any] | None = None,
    **c: Any,
) -> TrainingResult:
    config = TrainingConfig(
        train_steps=c.pop("train_steps", 40),
        evaluation_interval=2,
        student_checkpoint=str(checkpoint),
        **c,
    )
    return TrainingRun(
        config, TINY_TASK, TINY_TASK, out, evaluator=_scripted(accuracies, seen)
    ).run()


def test_trainer_early_stopping_after_patience(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # Best at step 4; steps 6, 8 and 10 do not beat it (an equal accuracy is no improvement).
    result = _run(tiny_checkpoint, tmp_path, [0.5, 0.6, 0.6, 0.55, 0.6, 0.9, 0.9])

    assert (result.steps_run, result.stopped_early, result.selected_step) == (10, True, 10)
    assert result.metrics["eval_fraction_of_correct_next_step_preds"] == 0.6
    assert [line["step"] for line in _lines(result.metrics_path) if line["phase"] == "eval"] == [
        2,
        4,
        6,
        8,
        10,
    ]


def test_trainer_improvement_resets_patience(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = _run(
        tiny_checkpoint, tmp_path, [0.5, 0.4, 0.4, 0.6, 0.6, 0.6, 0.7, 0.7], train_steps=16
    )

    assert (result.steps_run, result.stopped_early) == (16, False)


def test_trainer_without_early_stopping_runs_every_step(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    result = _run(tiny_checkpoint, tmp_path, [0.5] * 5, train_steps=10, enable_early_stopping=False)

    assert (result.steps_run, result.stopped_early) == (10, False)


def test_trainer_checkpoint_selection_saves_the_best_not_the_last(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    seen: dict[int, dict[str, torch.Tensor]] = {}
    result = _run(
        tiny_checkpoint,
        tmp_path,
        [0.5, 0.9, 0.6, 0.7],
        seen,
        train_steps=8,
        enable_early_stopping=False,
        enable_checkpoint_selection=True,
    )

    model, _ = load_seq2seq(result.model_dir)
    saved = model.state_dict()
    assert result.selected_step == 4 and result.steps_run == 8
    assert result.metrics["eval_fraction_of_correct_next_step_preds"] == 0.9
    assert all(torch.equal(saved[name], seen[4][name]) for name in seen[4])
    assert not all(torch.equal(saved[name], seen[8][name]) for name in seen[8])
    assert read_metadata(result.model_dir) == ModelMetadata(selected_step=4)


def test_trainer_without_selection_saves_the_last(tiny_checkpoint: Path, tmp_path: Path) -> None:
    seen: dict[int, dict[str, torch.Tensor]] = {}
    result = _run(
        tiny_checkpoint,
        tmp_path,
        [0.5, 0.9, 0.6, 0.7],
        seen,
        train_steps=8,
        enable_early_stopping=False,
    )

    saved = load_seq2seq(result.model_dir)[0].state_dict()
    assert result.selected_step == 8
    assert result.metrics["eval_fraction_of_correct_next_step_preds"] == 0.7
    assert all(torch.equal(saved[name], seen[8][name]) for name in seen[8])


# -- progress and cancellation ------------------------------------------------------------------


def test_trainer_reports_progress(tiny_checkpoint: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    config = TrainingConfig(
        train_steps=4,
        log_interval=2,
        evaluation_interval=4,
        student_checkpoint=str(tiny_checkpoint),
    )

    train(config, TINY_TASK, TINY_TASK, tmp_path, progress=events.append)

    assert [(e.step, e.phase) for e in events] == [
        (2, "train"),
        (4, "train"),
        (4, "eval"),
        (4, "done"),
    ]
    assert events[0].eval_fraction_of_correct_next_step_preds is None
    assert events[-1].eval_fraction_of_correct_next_step_preds is not None
    assert all(e.train_steps == 4 and e.train_total_loss is not None for e in events)


def _stop_after(calls: int) -> Callable[[], bool]:
    count = iter(range(calls + 1000))
    return lambda: next(count) >= calls


def test_trainer_cancellation_stops_between_steps(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = TrainingConfig(train_steps=50, log_interval=1, student_checkpoint=str(tiny_checkpoint))

    with pytest.raises(TrainingCancelledError, match="before step 4"):
        train(config, TINY_TASK, None, tmp_path, should_stop=_stop_after(3))

    assert len(_lines(tmp_path / "metrics.jsonl")) == 3
    assert not (tmp_path / "model").exists()


def test_trainer_load_predictor_rejects_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="does not exist"):
        load_predictor(tmp_path / "nothing")
    with pytest.raises(TrainingError, match="cannot load"):
        load_predictor(tmp_path)


def test_trainer_predictor_serves_a_foreign_checkpoint_as_is(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_checkpoint, foreign)
    (foreign / METADATA_FILE).unlink()

    predictor = load_predictor(foreign)
    answers = predictor.predict(["dog", "apple"], max_new_tokens=3)

    assert predictor.metadata is None and not predictor.can_explain
    assert len(answers) == 2 and all(isinstance(answer, str) for answer in answers)
    assert label_with_teacher(foreign, ["dog"])[0].rationale is None


def test_trainer_load_predictor_rejects_invalid_metadata(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / METADATA_FILE).write_text('{"kind": "something else"}', encoding="utf-8")

    with pytest.raises(TrainingError, match="invalid model metadata"):
        load_predictor(broken)
