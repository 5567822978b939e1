"""The local teacher's cache: trained once per set of training parameters, taken from the cache
afterwards, trained again when what is cached is not a teacher (an interrupted training, a
broken checkpoint, another format); and the emulator environment that hands it over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distillery import facts
from distillery.local.emulator._config import LOCAL_TEACHERS_VARIABLE, parse_model_map
from distillery.local.teachers import (
    CACHE_MANIFEST,
    STACK_TEACHER_MODELS,
    CachedTeacher,
    cached_local_teacher,
)
from distillery.local.trainer import load_predictor

#: A training short enough for a unit test (the teacher is poor, but it is a teacher that
#: explains: every example it learns from has a rationale).
STEPS = 6


def _cached(cache: Path, trainings: list[Path], **changes: int) -> CachedTeacher:
    return cached_local_teacher(
        cache,
        steps=changes.get("steps", STEPS),
        batch_size=4,
        num_threads=1,
        on_training=trainings.append,
    )


@pytest.mark.timeout(600)
def test_a_teacher_is_trained_once_then_taken_from_the_cache(tmp_path: Path) -> None:
    trainings: list[Path] = []
    first = _cached(tmp_path, trainings)
    assert first.trained and trainings == [first.directory]
    assert first.directory.parent == tmp_path
    assert first.directory.name.startswith(f"{facts.DEFAULT_GEMINI_TEACHER_MODEL}-")
    assert first.teacher.model_dir.is_relative_to(first.directory)
    assert load_predictor(first.teacher.model_dir).can_explain
    manifest = json.loads((first.directory / CACHE_MANIFEST).read_text())
    assert manifest["parameters"]["steps"] == STEPS
    # Nothing of the training is left beside the cached teacher.
    assert [p.name for p in tmp_path.iterdir()] == [first.directory.name]

    again = _cached(tmp_path, trainings)
    assert not again.trained and trainings == [first.directory]
    assert again.teacher == first.teacher

    # Other training parameters are another teacher, in a directory of its own.
    other = _cached(tmp_path, trainings, steps=STEPS + 1)
    assert other.trained and other.directory != first.directory
    assert trainings == [first.directory, other.directory]
    assert _cached(tmp_path, trainings).teacher == first.teacher


@pytest.mark.timeout(600)
def test_what_is_not_a_teacher_is_trained_again(tmp_path: Path) -> None:
    trainings: list[Path] = []
    first = _cached(tmp_path, trainings)
    # A checkpoint that no longer loads.
    shutil.rmtree(first.teacher.model_dir)
    broken = _cached(tmp_path, trainings)
    assert broken.trained and broken.directory == first.directory
    assert load_predictor(broken.teacher.model_dir).can_explain
    # An interrupted training: a directory without its manifest.
    (broken.directory / CACHE_MANIFEST).unlink()
    assert _cached(tmp_path, trainings).trained
    # A manifest of other parameters (another format).
    manifest_path = first.directory / CACHE_MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["parameters"]["format"] = 0
    manifest_path.write_text(json.dumps(manifest))
    assert _cached(tmp_path, trainings).trained
    assert len(trainings) == 4


def test_an_unknown_teacher_model_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="not a Gemini teacher model"):
        cached_local_teacher(tmp_path / "cache", model_id="gemini-0-ultra")
    assert not (tmp_path / "cache").exists()


@pytest.mark.timeout(600)
def test_the_environment_makes_it_the_teacher_of_every_model_a_stack_asks(
    tmp_path: Path,
) -> None:
    teacher = _cached(tmp_path, []).teacher
    assert teacher.env() == {LOCAL_TEACHERS_VARIABLE: f"{teacher.model_id}={teacher.model_dir}"}
    mapping = parse_model_map(
        teacher.env(STACK_TEACHER_MODELS)[LOCAL_TEACHERS_VARIABLE], LOCAL_TEACHERS_VARIABLE
    )
    assert set(mapping) == set(STACK_TEACHER_MODELS)
    assert set(mapping.values()) == {teacher.model_dir}
    # The labeling teachers, the distillation mode's and the seed pipeline's.
    assert set(facts.GEMINI_TEACHER_MODELS) | {facts.DEFAULT_TEACHER_MODEL} <= set(mapping)
    assert set(facts.GEMINI_DISTILLATION_TEACHERS) <= set(mapping)
