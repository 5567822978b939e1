"""Vertex AI's tuning metrics, computed under teacher forcing.

- ``*_total_loss``: the training objective — the mean token cross-entropy of the label task, or
  ``alpha * label_loss + (1 - alpha) * rationale_loss`` when rationales are trained too (each task's
  loss is the mean over its own target tokens).
- ``*_fraction_of_correct_next_step_preds``: the fraction of target tokens (both tasks) whose
  argmax prediction equals the target, padding excluded.
- ``*_num_predictions``: how many target tokens were scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distillery.local.trainer._data import IGNORE_INDEX


@dataclass(frozen=True)
class TokenScore:
    """One forward pass scored: the summed cross-entropy (a tensor, differentiable), hits, count."""

    loss_sum: Any
    correct: int
    count: int

    @property
    def mean_loss(self) -> Any:
        """The mean token cross-entropy (a tensor); zero when nothing was scored."""
        return self.loss_sum / max(self.count, 1)


def score_tokens(logits: Any, labels: Any) -> TokenScore:
    """Score ``logits`` (batch, length, vocabulary) against ``labels`` (batch, length).

    Positions whose label is :data:`~distillery.local.trainer._data.IGNORE_INDEX` are not scored.

    Raises:
        ValueError: the shapes do not match.
    """
    import torch.nn.functional as functional

    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    scored = labels != IGNORE_INDEX
    loss_sum = functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    correct = (logits.detach().argmax(dim=-1) == labels) & scored
    return TokenScore(loss_sum, int(correct.sum()), int(scored.sum()))


def combine_losses(label_loss: Any, rationale_loss: Any | None, alpha: float) -> Any:
    """``alpha * label_loss + (1 - alpha) * rationale_loss``, or the label loss alone."""
    if rationale_loss is None:
        return label_loss
    return alpha * label_loss + (1.0 - alpha) * rationale_loss


@dataclass
class TrainWindow:
    """Train metrics accumulated since the last log point."""

    loss_sum: float = 0.0
    steps: int = 0
    correct: int = 0
    count: int = 0

    def add(self, loss: float, scores: list[TokenScore]) -> None:
        """Record one step: its (weighted) loss and the scores of its forward passes."""
        self.loss_sum += loss
        self.steps += 1
        self.correct += sum(s.correct for s in scores)
        self.count += sum(s.count for s in scores)

    def metrics(self) -> dict[str, float]:
        """Mean step loss, token accuracy and tokens scored over the window (``train_*``)."""
        return {
            "train_total_loss": self.loss_sum / max(self.steps, 1),
            "train_fraction_of_correct_next_step_preds": self.correct / max(self.count, 1),
            "train_num_predictions": float(self.count),
        }


@dataclass
class EvalTotals:
    """Eval metrics accumulated over the eval set, per task."""

    alpha: float
    label_loss_sum: float = 0.0
    label_count: int = 0
    rationale_loss_sum: float = 0.0
    rationale_count: int = 0
    correct: int = 0

    def add(self, score: TokenScore, *, rationale: bool) -> None:
        """Record one scored batch of the label (or, with ``rationale``, the explain) task."""
        if rationale:
            self.rationale_loss_sum += float(score.loss_sum)
            self.rationale_count += score.count
        else:
            self.label_loss_sum += float(score.loss_sum)
            self.label_count += score.count
        self.correct += score.correct

    def metrics(self) -> dict[str, float]:
        """The ``eval_*`` metrics over everything added."""
        count = self.label_count + self.rationale_count
        label_loss = self.label_loss_sum / max(self.label_count, 1)
        rationale_loss = (
            self.rationale_loss_sum / self.rationale_count if self.rationale_count else None
        )
        return {
            "eval_total_loss": float(combine_losses(label_loss, rationale_loss, self.alpha)),
            "eval_fraction_of_correct_next_step_preds": self.correct / max(count, 1),
            "eval_num_predictions": float(count),
        }
