"""Inference with a saved model: greedy generation, and labelling data with a teacher."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distillery.local.trainer._data import TextEncoder, pad_right
from distillery.local.trainer._model import ModelMetadata, load_seq2seq, read_metadata
from distillery.local.trainer._types import TrainingError, TrainingExample

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32


class Predictor:
    """Generates answers with a seq2seq model (greedy decoding, no sampling: deterministic).

    A model trained here gets the ``predict:`` prefix it was trained with; a foreign checkpoint
    (no metadata) gets the prompts as they are and cannot explain.
    """

    def __init__(self, model: Any, tokenizer: Any, metadata: ModelMetadata | None) -> None:
        """Wrap an already loaded ``model`` and ``tokenizer``."""
        self.model = model
        self.tokenizer = tokenizer
        self.metadata = metadata

    @property
    def can_explain(self) -> bool:
        """Whether the model was trained on the ``explain:`` task."""
        return self.metadata is not None and self.metadata.multi_task

    def predict(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[str]:
        """The model's answer to each prompt (special tokens removed, whitespace stripped)."""
        prefix = self.metadata.predict_prefix if self.metadata else ""
        return self._generate([prefix + p for p in prompts], max_new_tokens, batch_size)

    def explain(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 256,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[str]:
        """The model's rationale for each prompt.

        Raises:
            TrainingError: the model was not trained to explain (see :attr:`can_explain`).
        """
        if self.metadata is None or not self.metadata.multi_task:
            raise TrainingError("this model was not trained on the explain task")
        prefix = self.metadata.explain_prefix
        return self._generate([prefix + p for p in prompts], max_new_tokens, batch_size)

    def _encode(self, sources: list[str]) -> list[tuple[int, ...]]:
        """Token ids as in training (truncated, end-of-sequence appended) for a model trained
        here; the tokenizer's own special tokens for a foreign checkpoint."""
        if self.metadata is None:
            encoded = self.tokenizer(sources, truncation=True)["input_ids"]
            return [tuple(ids) for ids in encoded]
        encoder = TextEncoder(
            self.tokenizer,
            max_input_tokens=self.metadata.max_input_tokens,
            max_output_tokens=self.metadata.max_output_tokens,
        )
        return encoder.encode_texts(sources, self.metadata.max_input_tokens)

    def _generate(self, sources: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
        import torch

        encoded = self._encode(sources)
        # Longest first, so that each batch pads little; answers go back in prompt order.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        answers: list[str] = [""] * len(sources)
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                ids = [encoded[i] for i in rows]
                generated = self.model.generate(
                    input_ids=pad_right(ids, int(self.tokenizer.pad_token_id)),
                    attention_mask=pad_right([(1,) * len(row) for row in ids], 0),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                )
                texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
                for row, text in zip(rows, texts, strict=True):
                    answers[row] = text.strip()
        return answers


def load_predictor(model_dir: Path) -> Predictor:
    """A :class:`Predictor` for the model saved in ``model_dir`` (a ``TrainingResult.model_dir``,
    or any local Hugging Face seq2seq checkpoint).

    Raises:
        TrainingError: the directory holds no loadable model, tokenizer or valid metadata.
    """
    model, tokenizer = load_seq2seq(model_dir)
    return Predictor(model, tokenizer, read_metadata(Path(model_dir)))


def label_with_teacher(
    model_dir: Path,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    max_rationale_tokens: int = 256,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[TrainingExample]:
    """Label ``prompts`` with the local teacher model in ``model_dir``.

    Each prompt gets the teacher's answer as ``output_text``; when the teacher was trained on the
    explain task it also gets the teacher's rationale (None if the teacher cannot explain or its
    rationale is empty).

    Raises:
        TrainingError: the teacher cannot be loaded.
    """
    teacher = load_predictor(model_dir)
    labels = teacher.predict(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    rationales: list[str | None] = [None] * len(prompts)
    if teacher.can_explain:
        explained = teacher.explain(
            prompts, max_new_tokens=max_rationale_tokens, batch_size=batch_size
        )
        rationales = [text or None for text in explained]
    logger.info(
        "teacher labelled %d prompts (%d with a rationale)",
        len(prompts),
        sum(r is not None for r in rationales),
    )
    return [
        TrainingExample(prompt, label, rationale)
        for prompt, label, rationale in zip(prompts, labels, rationales, strict=True)
    ]
