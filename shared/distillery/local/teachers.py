"""Local teachers that explain: small models trained with the local trainer on rationale-bearing
data, to stand in for a Gemini teacher in the local batch prediction API.

Gemini is not available offline. The local batch API answers a request for
``publishers/google/models/ID`` with the local checkpoint ``DISTILLERY_LOCAL_TEACHERS`` maps
``ID`` to (see :mod:`distillery.local.emulator._batch_runner`), and a checkpoint trained on the
explain task answers a request that carries a ``systemInstruction`` (how the product asks for a
rationale) as ``Rationale: R\\nAnswer: L``. :func:`train_local_teacher` trains such a checkpoint
on the example task with rationales (:func:`~distillery.local.example_data.generate`), or on
examples of your own, and :meth:`LocalTeacher.env` is the environment that hands it to an
emulator — for a stack, ``StackConfig(vertex_env=teacher.env())``.
:func:`cached_local_teacher` trains one once per set of training parameters and keeps it in a
cache directory (``distillery dev up`` does, so the local stack's batch prediction has a teacher).

What the teacher learns is the example task's rule and its rationales, nothing more: it answers
other tasks with one of the classes it knows. Training takes a minute or two on two cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from distillery import facts
from distillery.local.emulator._config import LOCAL_TEACHERS_VARIABLE
from distillery.local.example_data import Example, generate
from distillery.local.trainer import TrainingConfig, TrainingError, TrainingExample, train

#: The example data a default teacher is trained on (a seed of its own, so that a dataset made
#: with the generator's default seed holds prompts the teacher has not seen).
TEACHER_SEED = 101
DEFAULT_TRAIN_EXAMPLES = 400
DEFAULT_EVAL_EXAMPLES = 40
#: Steps, batch and learning rate at which the built-in student learns the example task's labels
#: and rationales (measured: labels exact on the held-out set, rationales nearly all exact).
DEFAULT_STEPS = 300
DEFAULT_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE_MULTIPLIER = 2.0
#: Every model a stack's local teacher stands in for: the Gemini labeling teachers, the
#: ``distillation`` mode's teachers and the seed pipeline's teacher (``text-unicorn@001``).
STACK_TEACHER_MODELS: tuple[str, ...] = (
    *facts.GEMINI_TEACHER_MODELS,
    *facts.GEMINI_DISTILLATION_TEACHERS,
    facts.DEFAULT_TEACHER_MODEL,
)
#: The file of a cached teacher's directory that describes it; written last, so a directory
#: without it is an interrupted training.
CACHE_MANIFEST = "teacher.json"
#: Bumped when what a cached teacher is (its training or its files) changes.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class LocalTeacher:
    """A trained local teacher: where it is, which model id it stands in for, how good it is."""

    model_dir: Path
    #: The Gemini model id it answers for (``gemini-2.5-pro``).
    model_id: str
    #: Held-out exact match of its answers, and of its rationales.
    label_accuracy: float
    rationale_accuracy: float

    def env(self, also: Sequence[str] = ()) -> dict[str, str]:
        """The emulator environment that makes it the local teacher of ``model_id`` and of the
        models ``also`` names (e.g. :data:`STACK_TEACHER_MODELS`)."""
        models = [self.model_id, *(m for m in also if m != self.model_id)]
        return {LOCAL_TEACHERS_VARIABLE: ",".join(f"{m}={self.model_dir}" for m in models)}


def teacher_examples(examples: Sequence[Example]) -> list[TrainingExample]:
    """``examples`` as the trainer's examples, each with its label and rationale.

    Raises:
        ValueError: an example has no label or no rationale (a teacher that explains learns
            from both; the message names the first such example by its position).
    """
    converted = []
    for number, example in enumerate(examples, start=1):
        if not example.output_text or not example.rationale:
            missing = "output_text" if not example.output_text else "rationale"
            raise ValueError(
                f"example {number} has no {missing}: a teacher that explains is trained on "
                "labeled examples with rationales (generate(..., rationales=True))"
            )
        converted.append(
            TrainingExample(example.input_text, example.output_text, example.rationale)
        )
    return converted


def train_local_teacher(
    output_dir: Path,
    *,
    model_id: str = facts.DEFAULT_GEMINI_TEACHER_MODEL,
    examples: tuple[Sequence[Example], Sequence[Example]] | None = None,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate_multiplier: float = DEFAULT_LEARNING_RATE_MULTIPLIER,
    seed: int = 0,
    num_threads: int | None = None,
) -> LocalTeacher:
    """Train a local teacher that explains, under ``output_dir``, for ``model_id``.

    ``examples`` are a training and a held-out set (labels and rationales); default: the example
    task with rationales (:data:`DEFAULT_TRAIN_EXAMPLES` and :data:`DEFAULT_EVAL_EXAMPLES`,
    seed :data:`TEACHER_SEED`). The held-out set measures the teacher (it does not stop the
    training early: the rationales go on improving after the labels are right).

    Raises:
        KeyError: ``model_id`` is not a known Gemini teacher (the message lists them).
        ValueError: an example has no label or rationale.
        TrainingError: the training cannot run (see :func:`~distillery.local.trainer.train`).
        OSError: ``output_dir`` cannot be written.
    """
    facts.gemini_teacher_model(model_id)
    train_set, held_out = examples or generate(
        DEFAULT_TRAIN_EXAMPLES, DEFAULT_EVAL_EXAMPLES, seed=TEACHER_SEED, rationales=True
    )
    train_examples, eval_examples = teacher_examples(train_set), teacher_examples(held_out)
    if not eval_examples:
        raise ValueError("a teacher needs a held-out set to be measured on")
    config = TrainingConfig(
        train_steps=steps,
        batch_size=batch_size,
        learning_rate_multiplier=learning_rate_multiplier,
        enable_early_stopping=False,
        evaluation_interval=steps,
        seed=seed,
        num_threads=num_threads,
    )
    result = train(config, train_examples, eval_examples, Path(output_dir))
    from distillery.local.trainer import load_predictor

    predictor = load_predictor(result.model_dir)
    if not predictor.can_explain:  # every example has a rationale: the trainer's contract
        raise TrainingError(f"the teacher in {result.model_dir} was not trained to explain")
    prompts = [e.input_text for e in eval_examples]
    rationales = predictor.explain(prompts)
    rationale_hits = sum(
        got == e.rationale for got, e in zip(rationales, eval_examples, strict=True)
    )
    return LocalTeacher(
        model_dir=result.model_dir,
        model_id=model_id,
        label_accuracy=result.eval_exact_match or 0.0,
        rationale_accuracy=rationale_hits / len(eval_examples),
    )


@dataclass(frozen=True)
class CachedTeacher:
    """A local teacher from a cache: the teacher, where it is cached, and whether this call
    trained it (False: an earlier one did)."""

    teacher: LocalTeacher
    directory: Path
    trained: bool


def cached_local_teacher(
    cache_dir: Path,
    *,
    model_id: str = facts.DEFAULT_GEMINI_TEACHER_MODEL,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate_multiplier: float = DEFAULT_LEARNING_RATE_MULTIPLIER,
    seed: int = 0,
    num_threads: int | None = None,
    on_training: Callable[[Path], None] | None = None,
) -> CachedTeacher:
    """The local teacher of these training parameters from ``cache_dir``, trained (with
    :func:`train_local_teacher`, on the default example data) only when the cache has none.

    Each set of parameters has a directory of its own (named after their hash); its
    :data:`CACHE_MANIFEST` is written after the training, and the directory renamed into place,
    so an interrupted training is never taken for a teacher. A cached teacher whose manifest
    does not match, or whose checkpoint no longer loads as a teacher that explains, is trained
    again. ``on_training`` is called with the directory just before a training starts.

    Raises:
        KeyError: ``model_id`` is not a known Gemini teacher.
        TrainingError: the training cannot run.
        OSError: ``cache_dir`` cannot be written.
    """
    facts.gemini_teacher_model(model_id)
    parameters = {
        "format": CACHE_FORMAT,
        "model_id": model_id,
        "examples": [DEFAULT_TRAIN_EXAMPLES, DEFAULT_EVAL_EXAMPLES, TEACHER_SEED],
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate_multiplier": learning_rate_multiplier,
        "seed": seed,
    }
    key = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
    directory = Path(cache_dir) / f"{model_id}-{key}"
    found = _cached(directory, parameters)
    if found is not None:
        return CachedTeacher(found, directory, trained=False)
    directory.parent.mkdir(parents=True, exist_ok=True)
    if on_training is not None:
        on_training(directory)
    work = directory.parent / f".{directory.name}.{os.getpid()}.partial"
    shutil.rmtree(work, ignore_errors=True)
    try:
        teacher = train_local_teacher(
            work,
            model_id=model_id,
            steps=steps,
            batch_size=batch_size,
            learning_rate_multiplier=learning_rate_multiplier,
            seed=seed,
            num_threads=num_threads,
        )
        manifest = {
            "parameters": parameters,
            "model_dir": str(teacher.model_dir.relative_to(work)),
            "label_accuracy": teacher.label_accuracy,
            "rationale_accuracy": teacher.rationale_accuracy,
            "trained_at": datetime.now(UTC).isoformat(),
        }
        (work / CACHE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(directory, ignore_errors=True)  # a stale or broken entry
        try:
            work.rename(directory)
        except OSError:  # another process put its teacher there first: take that one
            found = _cached(directory, parameters)
            if found is None:
                raise
            return CachedTeacher(found, directory, trained=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # The training loaded it to measure it; renamed into place, it is the same files.
    moved = replace(teacher, model_dir=directory / teacher.model_dir.relative_to(work))
    return CachedTeacher(moved, directory, trained=True)


def _cached(directory: Path, parameters: dict[str, object]) -> LocalTeacher | None:
    """The teacher cached in ``directory`` for ``parameters``, or None (absent, another
    format, or a checkpoint that does not load as a teacher that explains)."""
    try:
        manifest = json.loads((directory / CACHE_MANIFEST).read_text())
        if manifest.get("parameters") != parameters:
            return None
        model_dir = directory / str(manifest["model_dir"])
        teacher = LocalTeacher(
            model_dir=model_dir,
            model_id=str(parameters["model_id"]),
            label_accuracy=float(manifest["label_accuracy"]),
            rationale_accuracy=float(manifest["rationale_accuracy"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    from distillery.local.trainer import load_predictor

    try:
        if not load_predictor(model_dir).can_explain:
            return None
    except (TrainingError, OSError, ValueError):  # a checkpoint that does not load
        return None
    return teacher
