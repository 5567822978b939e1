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

What the teacher learns is the example task's rule and its rationales, nothing more: it answers
other tasks with one of the classes it knows. Training takes seconds to a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class LocalTeacher:
    """A trained local teacher: where it is, which model id it stands in for, how good it is."""

    model_dir: Path
    #: The Gemini model id it answers for (``gemini-2.5-pro``).
    model_id: str
    #: Held-out exact match of its answers, and of its rationales.
    label_accuracy: float
    rationale_accuracy: float

    def env(self) -> dict[str, str]:
        """The emulator environment that makes it the local teacher of ``model_id``."""
        return {LOCAL_TEACHERS_VARIABLE: f"{self.model_id}={self.model_dir}"}


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
