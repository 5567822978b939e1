"""Task metrics of a model's answers on a golden set, per example and overall."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from distillery.evaluation._task import TASKS

#: The metric whose per-example values two models are compared on, by task.
PRIMARY_METRIC: Mapping[str, str] = {
    "classification": "accuracy",
    "summarization": "rouge_l",
    "extractive_qa": "token_f1",
}

# Stands for "no answer" among the predicted labels; it can never equal a normalized class (a
# normalized label has no surrounding control characters), so it counts against every class.
_NO_ANSWER = "\x00"

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


@dataclass(frozen=True)
class ClassScore:
    """One class of a classification golden set."""

    accuracy: float  # recall of the class: the share of its examples answered with it
    f1: float
    support: int  # examples whose expected answer is this class


@dataclass(frozen=True)
class Scores:
    """A model's answers on a golden set, scored."""

    task: str
    primary: str
    per_example: tuple[float, ...]
    metrics: Mapping[str, float]
    per_class: Mapping[str, ClassScore] = field(default_factory=dict)
    errors: int = 0


def score(task: str, expected: Sequence[str], predicted: Sequence[str | None]) -> Scores:
    """Score ``predicted`` against ``expected`` (golden-set order) as ``task``.

    A ``None`` prediction is no answer (the endpoint failed on that example): it scores 0 on every
    metric and is counted in ``errors``.

    - classification: ``exact_match`` (the stripped answer equals the stripped expected one),
      ``accuracy`` (the labels are equal once case-folded and stripped of surrounding whitespace
      and punctuation; the primary metric) and ``macro_f1`` over the expected classes, with
      ``per_class`` accuracy (recall), F1 and support (scikit-learn).
    - summarization: ``rouge_l``, the ROUGE-L F-measure of Google's rouge-score with the Porter
      stemmer (primary).
    - extractive_qa: ``exact_match`` and ``token_f1`` (primary) after SQuAD's normalization
      (lower case, no punctuation, no articles, single spaces).

    Raises:
        ValueError: ``task`` is not one of ``TASKS``; the two sequences differ in length or are
            empty.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if len(expected) != len(predicted):
        raise ValueError(
            f"cannot score {len(predicted)} predictions against {len(expected)} expected answers"
        )
    if not expected:
        raise ValueError("cannot score an empty golden set")
    errors = sum(1 for answer in predicted if answer is None)
    if task == "classification":
        return _classification(expected, predicted, errors)
    if task == "summarization":
        return _summarization(expected, predicted, errors)
    return _extractive_qa(expected, predicted, errors)


def latency_summary(milliseconds: Sequence[float]) -> dict[str, float]:
    """``{"p50": .., "p95": ..}`` of the latencies (linear interpolation); ``{}`` when empty."""
    if not milliseconds:
        return {}
    ordered = sorted(float(value) for value in milliseconds)
    return {"p50": _percentile(ordered, 50), "p95": _percentile(ordered, 95)}


def normalize_label(text: str) -> str:
    """A class label as compared: case-folded, surrounding whitespace and punctuation removed."""
    folded = text.casefold()
    start, end = 0, len(folded)
    while start < end and _is_edge(folded[start]):
        start += 1
    while end > start and _is_edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def normalize_answer(text: str) -> str:
    """SQuAD's normalization of an answer: lower case, no punctuation, no articles, one space."""
    lowered = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())


def _is_edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _percentile(ordered: Sequence[float], percent: float) -> float:
    # The "linear" method (numpy's default): interpolate between the two nearest ranks.
    position = (len(ordered) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _classification(
    expected: Sequence[str], predicted: Sequence[str | None], errors: int
) -> Scores:
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    exact = tuple(
        1.0 if answer is not None and answer.strip() == truth.strip() else 0.0
        for truth, answer in zip(expected, predicted, strict=True)
    )
    truths = [normalize_label(truth) for truth in expected]
    answers = [_NO_ANSWER if answer is None else normalize_label(answer) for answer in predicted]
    accuracy = tuple(
        1.0 if truth == answer else 0.0 for truth, answer in zip(truths, answers, strict=True)
    )
    # Only the expected classes are scored: an answer outside them is wrong for its example's
    # class but is no class of its own (a model must not be rewarded or punished per invention).
    labels = sorted(set(truths))
    # zero_division=0: a class never predicted has precision 0, not a warning.
    macro_f1 = float(f1_score(truths, answers, labels=labels, average="macro", zero_division=0))
    _, recall, f1, support = precision_recall_fscore_support(
        truths, answers, labels=labels, zero_division=0
    )
    per_class = {
        label: ClassScore(accuracy=float(r), f1=float(f), support=int(s))
        for label, r, f, s in zip(labels, recall, f1, support, strict=True)
    }
    return Scores(
        task="classification",
        primary=PRIMARY_METRIC["classification"],
        per_example=accuracy,
        metrics={"exact_match": _mean(exact), "accuracy": _mean(accuracy), "macro_f1": macro_f1},
        per_class=per_class,
        errors=errors,
    )


def _summarization(expected: Sequence[str], predicted: Sequence[str | None], errors: int) -> Scores:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    values = tuple(
        0.0 if answer is None else float(scorer.score(truth, answer)["rougeL"].fmeasure)
        for truth, answer in zip(expected, predicted, strict=True)
    )
    return Scores(
        task="summarization",
        primary=PRIMARY_METRIC["summarization"],
        per_example=values,
        metrics={"rouge_l": _mean(values)},
        errors=errors,
    )


def _token_f1(truth: str, answer: str) -> float:
    truth_tokens = normalize_answer(truth).split()
    answer_tokens = normalize_answer(answer).split()
    if not truth_tokens or not answer_tokens:
        # SQuAD 2.0's rule: an empty answer is right only against an empty expected answer.
        return 1.0 if truth_tokens == answer_tokens else 0.0
    common = sum((Counter(truth_tokens) & Counter(answer_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(answer_tokens)
    recall = common / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def _extractive_qa(expected: Sequence[str], predicted: Sequence[str | None], errors: int) -> Scores:
    exact = tuple(
        1.0 if answer is not None and normalize_answer(answer) == normalize_answer(truth) else 0.0
        for truth, answer in zip(expected, predicted, strict=True)
    )
    f1 = tuple(
        0.0 if answer is None else _token_f1(truth, answer)
        for truth, answer in zip(expected, predicted, strict=True)
    )
    return Scores(
        task="extractive_qa",
        primary=PRIMARY_METRIC["extractive_qa"],
        per_example=f1,
        metrics={"exact_match": _mean(exact), "token_f1": _mean(f1)},
        errors=errors,
    )
