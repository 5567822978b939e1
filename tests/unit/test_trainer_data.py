"""From examples to batches: task prefixes, truncation, sampling, padding, the tokenizer."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch

from distillery.local.trainer import TrainingError, TrainingExample
from distillery.local.trainer._data import (
    EXPLAIN_PREFIX,
    IGNORE_INDEX,
    PREDICT_PREFIX,
    BatchSampler,
    EncodedExample,
    EncodedPair,
    TextEncoder,
    collate,
    step_batch,
    task_texts,
)
from distillery.local.trainer._tokenizer import build_tokenizer

TEXTS = [
    "predict: Classify the text: The striker scored twice.",
    "explain: Classify the text: The bank posted a surprise loss.",
    "sports",
    "business",
    "A striker is a football player, so this is sports.",
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer(TEXTS)


def test_trainer_task_texts_prefix_predict_and_explain() -> None:
    pairs = task_texts(TrainingExample("Is it so?", "yes", rationale="Because."))

    assert [(p.task, p.source, p.target) for p in pairs] == [
        ("predict", "predict: Is it so?", "yes"),
        ("explain", "explain: Is it so?", "Because."),
    ]
    assert PREDICT_PREFIX == "predict: " and EXPLAIN_PREFIX == "explain: "


def test_trainer_task_texts_label_only_without_rationale() -> None:
    for rationale in (None, ""):
        pairs = task_texts(TrainingExample("Is it so?", "yes", rationale=rationale))
        assert [p.task for p in pairs] == ["predict"]


def test_trainer_task_texts_reject_unlabeled() -> None:
    with pytest.raises(TrainingError, match="unlabeled"):
        task_texts(TrainingExample("Is it so?"))


def test_trainer_tokenizer_round_trips_text_exactly(tokenizer: Any) -> None:
    text = "The striker scored twice, chart-topping: [sports]."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]

    assert tokenizer.decode(ids) == text
    assert len(tokenizer("sports", add_special_tokens=False)["input_ids"]) == 1  # a whole word
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1


def test_trainer_encoder_truncates_at_the_token_limits(tokenizer: Any) -> None:
    encoder = TextEncoder(tokenizer, max_input_tokens=4, max_output_tokens=3)
    long_text = "The bank posted a surprise loss."
    examples = [
        TrainingExample(long_text, "sports", rationale=long_text),
        TrainingExample("The bank", "sports"),
        TrainingExample("The", "sports"),
    ]

    encoded = encoder.encode_examples(examples)

    eos = tokenizer.eos_token_id
    first = encoded[0]
    assert first.explain is not None
    assert len(first.predict.source_ids) == 4 and first.predict.source_ids[-1] == eos
    assert len(first.explain.target_ids) == 3 and first.explain.target_ids[-1] == eos
    assert first.predict.target_ids == (
        *tokenizer("sports", add_special_tokens=False)["input_ids"],
        eos,
    )
    assert encoded[1].explain is None
    # "predict: The bank" is 4 tokens + end-of-sequence: cut; "predict: The" fits exactly.
    assert len(encoded[1].predict.source_ids) == 4
    assert encoded[2].predict.source_ids == (
        *tokenizer("predict: The", add_special_tokens=False)["input_ids"],
        eos,
    )
    # Cut: both sources of example 0, its rationale, and the source of example 1.
    assert encoder.truncated_fields == 4


def test_trainer_encoder_keeps_short_fields(tokenizer: Any) -> None:
    encoder = TextEncoder(tokenizer, max_input_tokens=7168, max_output_tokens=1024)

    (encoded,) = encoder.encode_examples([TrainingExample("The striker scored twice.", "sports")])

    assert encoder.truncated_fields == 0
    source = tokenizer.decode(encoded.predict.source_ids, skip_special_tokens=True)
    assert source == "predict: The striker scored twice."


def test_trainer_batch_sampler_gives_exact_batches_covering_each_epoch() -> None:
    sampler = BatchSampler(size=10, batch_size=4, seed=3)

    batches = [next(sampler) for _ in range(5)]  # 20 draws = two epochs

    assert all(len(batch) == 4 for batch in batches)
    assert Counter(i for batch in batches for i in batch) == Counter({i: 2 for i in range(10)})
    same_seed, other_seed = BatchSampler(10, 4, seed=3), BatchSampler(10, 4, seed=4)
    assert [next(same_seed) for _ in range(5)] == batches
    assert [next(other_seed) for _ in range(5)] != batches


def test_trainer_batch_sampler_repeats_a_dataset_smaller_than_a_batch() -> None:
    batch = next(BatchSampler(size=3, batch_size=8, seed=0))

    assert len(batch) == 8 and set(batch) == {0, 1, 2}


def test_trainer_batch_sampler_rejects_empty_dataset() -> None:
    with pytest.raises(TrainingError):
        BatchSampler(size=0, batch_size=8, seed=0)


def test_trainer_collate_pads_inputs_and_ignores_label_padding() -> None:
    batch = collate([EncodedPair((5, 6, 1), (7, 1)), EncodedPair((5, 1), (7, 8, 9, 1))], pad_id=0)

    assert batch.input_ids.tolist() == [[5, 6, 1], [5, 1, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.labels.tolist() == [[7, 1, IGNORE_INDEX, IGNORE_INDEX], [7, 8, 9, 1]]
    assert batch.labels.dtype == torch.long


def test_trainer_step_batch_mixes_predict_and_explain_pairs() -> None:
    with_rationale = EncodedExample(EncodedPair((2, 1), (3, 1)), EncodedPair((4, 1), (5, 6, 1)))
    label_only = EncodedExample(EncodedPair((2, 2, 1), (3, 1)), None)

    batch = step_batch([with_rationale, label_only, with_rationale], pad_id=0)

    assert batch.examples == 3
    assert batch.predict.input_ids.shape == (3, 3)  # every example predicts
    assert batch.explain is not None
    assert batch.explain.labels.tolist() == [[5, 6, 1], [5, 6, 1]]  # only those with rationales


def test_trainer_step_batch_label_only() -> None:
    batch = step_batch([EncodedExample(EncodedPair((2, 1), (3, 1)), None)] * 2, pad_id=0)

    assert batch.explain is None and batch.predict.labels.shape == (2, 2)
