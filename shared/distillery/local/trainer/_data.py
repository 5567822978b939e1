"""From examples to training batches: task prefixes, truncation, sampling, padding.

Distilling step-by-step is a multi-task seq2seq problem: ``predict: <input>`` → label and
``explain: <input>`` → rationale. Each sampled example contributes its predict pair and, when it
has a rationale, its explain pair, so a step sees exactly ``batch_size`` examples but up to twice
as many sequences; the two tasks are padded and run as two separate forward passes (rationales are
much longer than labels, so one shared padding would waste most of the label rows).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from distillery.local.trainer._types import TrainingError, TrainingExample

logger = logging.getLogger(__name__)

PREDICT_PREFIX = "predict: "
EXPLAIN_PREFIX = "explain: "
#: Label positions that score nothing (padding), as torch's cross-entropy expects.
IGNORE_INDEX = -100

Task = Literal["predict", "explain"]


@dataclass(frozen=True)
class TaskText:
    """One seq2seq pair in text form."""

    task: Task
    source: str
    target: str


def task_texts(example: TrainingExample) -> list[TaskText]:
    """The pairs ``example`` contributes: predict (needs a label), then explain (needs a rationale).

    Raises:
        TrainingError: ``example`` has no ``output_text``.
    """
    if example.output_text is None:
        raise TrainingError("an unlabeled example cannot be trained on")
    pairs = [TaskText("predict", PREDICT_PREFIX + example.input_text, example.output_text)]
    if example.rationale:
        pairs.append(TaskText("explain", EXPLAIN_PREFIX + example.input_text, example.rationale))
    return pairs


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one pair; both end with the end-of-sequence token."""

    source_ids: tuple[int, ...]
    target_ids: tuple[int, ...]


@dataclass(frozen=True)
class EncodedExample:
    """An example's predict pair and, when it has a rationale, its explain pair."""

    predict: EncodedPair
    explain: EncodedPair | None


class TextEncoder:
    """Tokenizes and truncates with the student's tokenizer, counting what was cut."""

    def __init__(self, tokenizer: Any, *, max_input_tokens: int, max_output_tokens: int) -> None:
        """Wrap ``tokenizer`` (a transformers tokenizer).

        Raises:
            TrainingError: the tokenizer has no end-of-sequence token.
        """
        if tokenizer.eos_token_id is None:
            raise TrainingError("the student's tokenizer has no end-of-sequence token")
        self.tokenizer = tokenizer
        self.max_input_tokens = max_input_tokens
        self.max_output_tokens = max_output_tokens
        self.truncated_fields = 0

    def encode_texts(self, texts: Sequence[str], limit: int) -> list[tuple[int, ...]]:
        """Token ids of each text, cut to ``limit - 1`` tokens, then end-of-sequence appended."""
        if not texts:
            return []
        eos = int(self.tokenizer.eos_token_id)
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        result = []
        for ids in encoded:
            if len(ids) > limit - 1:
                self.truncated_fields += 1
                ids = ids[: limit - 1]
            result.append((*ids, eos))
        return result

    def encode_examples(self, examples: Sequence[TrainingExample]) -> list[EncodedExample]:
        """Encode labeled ``examples`` (see :func:`task_texts`).

        Raises:
            TrainingError: an example has no label.
        """
        pairs = [task_texts(example) for example in examples]
        flat = [pair for example_pairs in pairs for pair in example_pairs]
        sources = self.encode_texts([p.source for p in flat], self.max_input_tokens)
        targets = self.encode_texts([p.target for p in flat], self.max_output_tokens)
        encoded_pairs = iter(zip(sources, targets, strict=True))
        result = []
        for example_pairs in pairs:
            predict = EncodedPair(*next(encoded_pairs))
            explain = EncodedPair(*next(encoded_pairs)) if len(example_pairs) == 2 else None
            result.append(EncodedExample(predict, explain))
        return result


class BatchSampler:
    """Endless batches of exactly ``batch_size`` example indices, deterministic for a seed.

    Indices are drawn epoch by epoch from a fresh shuffle; a batch that crosses an epoch boundary
    is completed from the next shuffle (so a dataset smaller than a batch is simply repeated).
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        """Sample from ``range(size)``.

        Raises:
            TrainingError: ``size`` is zero.
        """
        if size < 1:
            raise TrainingError("no training examples to sample from")
        self._size = size
        self._batch_size = batch_size
        self._random = random.Random(seed)
        self._order: list[int] = []

    def __iter__(self) -> Iterator[list[int]]:
        return self

    def __next__(self) -> list[int]:
        batch: list[int] = []
        while len(batch) < self._batch_size:
            if not self._order:
                self._order = list(range(self._size))
                self._random.shuffle(self._order)
            take = self._batch_size - len(batch)
            batch.extend(self._order[:take])
            del self._order[:take]
        return batch


@dataclass(frozen=True)
class TaskBatch:
    """One task's padded tensors (``labels`` use :data:`IGNORE_INDEX` on padding)."""

    input_ids: Any
    attention_mask: Any
    labels: Any


@dataclass(frozen=True)
class StepBatch:
    """What one training step consumes."""

    predict: TaskBatch
    explain: TaskBatch | None
    examples: int


def pad_right(sequences: Sequence[Sequence[int]], value: int) -> Any:
    """A (rows, longest) long tensor of ``sequences`` padded on the right with ``value``.

    Raises:
        ValueError: ``sequences`` is empty.
    """
    import torch

    if not sequences:
        raise ValueError("cannot pad an empty batch")
    padded = torch.full((len(sequences), max(map(len, sequences))), value, dtype=torch.long)
    for row, ids in enumerate(sequences):
        padded[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return padded


def collate(pairs: Sequence[EncodedPair], pad_id: int) -> TaskBatch:
    """Pad ``pairs`` to their longest source and target.

    Raises:
        ValueError: ``pairs`` is empty.
    """
    if not pairs:
        raise ValueError("cannot collate an empty batch")
    sources = [p.source_ids for p in pairs]
    input_ids = pad_right(sources, pad_id)
    attention_mask = pad_right([(1,) * len(ids) for ids in sources], 0)
    labels = pad_right([p.target_ids for p in pairs], IGNORE_INDEX)
    return TaskBatch(input_ids, attention_mask, labels)


def step_batch(examples: Sequence[EncodedExample], pad_id: int) -> StepBatch:
    """The step's predict batch (every example) and explain batch (examples with a rationale).

    Raises:
        ValueError: ``examples`` is empty.
    """
    explain = [e.explain for e in examples if e.explain is not None]
    return StepBatch(
        predict=collate([e.predict for e in examples], pad_id),
        explain=collate(explain, pad_id) if explain else None,
        examples=len(examples),
    )


def chunks(items: Sequence[EncodedPair], size: int) -> Iterator[Sequence[EncodedPair]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
