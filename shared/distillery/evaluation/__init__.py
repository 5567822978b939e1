"""Distillery's own evaluation: task metrics on a golden set and the promotion rule.

Pure functions, no I/O. Importing this package is cheap: scikit-learn, scipy, numpy and
rouge-score are imported inside the functions that need them, because the deployed functions'
cold start pays for every module imported at load time.
"""

from distillery.evaluation._bootstrap import Interval, paired_bootstrap
from distillery.evaluation._judge import EvaluationThresholds, Judgement, judge
from distillery.evaluation._metrics import (
    PRIMARY_METRIC,
    ClassScore,
    Scores,
    latency_summary,
    normalize_answer,
    normalize_label,
    score,
)
from distillery.evaluation._task import SHORT_ANSWER_WORDS, TASKS, TaskChoice, infer_task

__all__ = [
    "PRIMARY_METRIC",
    "SHORT_ANSWER_WORDS",
    "TASKS",
    "ClassScore",
    "EvaluationThresholds",
    "Interval",
    "Judgement",
    "Scores",
    "TaskChoice",
    "infer_task",
    "judge",
    "latency_summary",
    "normalize_answer",
    "normalize_label",
    "paired_bootstrap",
    "score",
]
