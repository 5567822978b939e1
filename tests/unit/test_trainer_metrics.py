"""The trainer's metrics on hand-built logits and labels (values checked by hand)."""

from __future__ import annotations

import math

import pytest
import torch

from distillery.local.trainer._data import IGNORE_INDEX
from distillery.local.trainer._metrics import (
    EvalTotals,
    TokenScore,
    TrainWindow,
    combine_losses,
    score_tokens,
)

# Two rows, three positions, vocabulary of three. Row 0 scores all three positions, row 1 only
# the first (the rest is padding). Logits are 0 except the ones listed, so each position's
# softmax is known: with one logit of ln(2) among zeros, its probability is 2 / (2 + 1 + 1) = 0.5.
LN2 = math.log(2.0)


def _hand_batch() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.zeros(2, 3, 3)
    logits[0, 0, 1] = LN2  # argmax 1, label 1: correct, p = 0.5
    logits[0, 1, 2] = LN2  # argmax 2, label 0: wrong, p(label) = 0.25
    logits[0, 2, 0] = LN2  # argmax 0, label 0: correct, p = 0.5
    logits[1, 0, 2] = LN2  # argmax 2, label 2: correct, p = 0.5
    logits[1, 1, 1] = 9.0  # padding: must be ignored whatever it says
    labels = torch.tensor([[1, 0, 0], [2, IGNORE_INDEX, IGNORE_INDEX]])
    return logits, labels


def test_trainer_score_tokens_counts_only_target_tokens() -> None:
    logits, labels = _hand_batch()

    score = score_tokens(logits, labels)

    assert score.count == 4
    assert score.correct == 3
    expected_sum = 3 * -math.log(0.5) + -math.log(0.25)
    assert float(score.loss_sum) == pytest.approx(expected_sum, rel=1e-6)
    assert float(score.mean_loss) == pytest.approx(expected_sum / 4, rel=1e-6)


def test_trainer_score_tokens_loss_is_differentiable() -> None:
    logits, labels = _hand_batch()
    logits.requires_grad_(True)

    score_tokens(logits, labels).mean_loss.backward()

    assert logits.grad is not None
    assert torch.all(logits.grad[1, 1:] == 0)  # padding gets no gradient


def test_trainer_score_tokens_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        score_tokens(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_trainer_combine_losses_weights_label_and_rationale() -> None:
    assert combine_losses(2.0, 4.0, 0.5) == pytest.approx(3.0)
    assert combine_losses(2.0, 4.0, 0.75) == pytest.approx(2.5)
    assert combine_losses(2.0, None, 0.5) == 2.0  # label-only


def test_trainer_train_window_averages_steps_and_pools_tokens() -> None:
    window = TrainWindow()
    window.add(1.0, [TokenScore(torch.tensor(0.0), correct=1, count=4)])
    window.add(3.0, [TokenScore(torch.tensor(0.0), 2, 4), TokenScore(torch.tensor(0.0), 3, 2)])

    assert window.metrics() == {
        "train_total_loss": 2.0,
        "train_fraction_of_correct_next_step_preds": 6 / 10,
        "train_num_predictions": 10.0,
    }


def test_trainer_eval_totals_weigh_each_task_by_its_own_tokens() -> None:
    totals = EvalTotals(alpha=0.5)
    totals.add(TokenScore(torch.tensor(4.0), correct=2, count=2), rationale=False)  # mean 2.0
    totals.add(TokenScore(torch.tensor(2.0), correct=2, count=2), rationale=False)  # pooled 1.5
    totals.add(TokenScore(torch.tensor(30.0), correct=5, count=6), rationale=True)  # mean 5.0

    assert totals.metrics() == {
        "eval_total_loss": pytest.approx(0.5 * 1.5 + 0.5 * 5.0),
        "eval_fraction_of_correct_next_step_preds": 9 / 10,
        "eval_num_predictions": 10.0,
    }


def test_trainer_eval_totals_label_only() -> None:
    totals = EvalTotals(alpha=0.5)
    totals.add(TokenScore(torch.tensor(3.0), correct=1, count=3), rationale=False)

    assert totals.metrics()["eval_total_loss"] == pytest.approx(1.0)
