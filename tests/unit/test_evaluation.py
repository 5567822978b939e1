"""distillery.evaluation: task metrics, the paired bootstrap and the promotion rule.

Expected figures are computed by hand in the comments next to them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import distillery.evaluation as evaluation
from distillery.evaluation import (
    TASKS,
    ClassScore,
    EvaluationThresholds,
    infer_task,
    judge,
    latency_summary,
    paired_bootstrap,
    score,
)
from distillery.local import example_data

# --- task inference ------------------------------------------------------------------------

QA_INPUTS = [
    "question: How many parishes are there in Louisiana? context: The U.S. state of Louisiana "
    "is divided into 64 parishes, as 48 other states are divided into counties.",
    "question: What is the capital of France? context: Paris is the capital and most populous "
    "city of France.",
    "question: Who wrote Hamlet? context: Hamlet is a tragedy written by William Shakespeare "
    "sometime between 1599 and 1601.",
    "question: When did the war end? context: The war ended in 1945 after six years of fighting.",
]
QA_OUTPUTS = ["64", "Paris", "William Shakespeare", "in 1945"]

SUMMARY_INPUTS = [
    "Summarize the following text: The city council met on Tuesday and voted to expand the "
    "bus network to the northern suburbs, citing growing demand from commuters.",
    "Summarize the following text: Heavy rain flooded several streets downtown overnight, and "
    "the fire brigade pumped water out of dozens of basements.",
    "Summarize the following text: The museum reopened after a two-year renovation that added "
    "a new wing for modern art and a rooftop cafe.",
    "Summarize the following text: A local bakery won a national prize for its sourdough bread, "
    "beating more than three hundred entries.",
]
SUMMARY_OUTPUTS = [
    "The council voted to extend buses to the northern suburbs.",
    "Overnight rain flooded downtown streets and basements.",
    "The renovated museum reopened with a modern art wing.",
    "A local bakery won a national sourdough prize.",
]


def test_infer_task_extractive_qa_from_marked_spans() -> None:
    choice = infer_task(QA_INPUTS, QA_OUTPUTS)
    assert choice.kind == "extractive_qa"
    assert choice.how == (
        "inferred: 4 of 4 answers are spans of their inputs, which carry question:/context: "
        "markers (extractive_qa)"
    )


def test_infer_task_classification_of_the_product_example() -> None:
    train, _ = example_data.generate(train_size=40, eval_size=10, seed=3)
    inputs = [e.input_text for e in train]
    outputs = [e.output_text or "" for e in train]
    distinct = len(set(outputs))
    choice = infer_task(inputs, outputs)
    assert choice.kind == "classification"
    assert choice.how == (
        f"inferred: {distinct} distinct answers over 40 examples, all short (classification)"
    )


def test_infer_task_classification_of_spec_example_kind() -> None:
    inputs = [
        "Classify the following text into one of the following classes: [business, "
        f"entertainment] Text: {text}"
        for text in ("5 stocks to buy now", "New album tops charts", "Bank cuts rates", "Film wins")
    ]
    outputs = ["business", "entertainment", "business", "Entertainment"]
    assert infer_task(inputs, outputs).kind == "classification"


def test_infer_task_summarization_otherwise() -> None:
    choice = infer_task(SUMMARY_INPUTS, SUMMARY_OUTPUTS)
    assert choice.kind == "summarization"
    assert "4 distinct answers over 4 examples" in choice.how
    assert "(summarization)" in choice.how


def test_infer_task_spans_without_markers_are_not_qa() -> None:
    # The answers are spans, but no question:/context: markers: short unique answers are neither
    # extractive QA nor a few repeated labels.
    inputs = ["The capital of France is Paris.", "Shakespeare wrote Hamlet."]
    choice = infer_task(inputs, ["Paris", "Shakespeare"])
    assert choice.kind == "summarization"


def test_infer_task_qa_needs_more_than_half_spanned() -> None:
    outputs = ["64", "Lyon", "Marlowe", "1918"]  # only the first is a span of its input
    assert infer_task(QA_INPUTS, outputs).kind != "extractive_qa"


def test_infer_task_configured_wins() -> None:
    choice = infer_task(QA_INPUTS, QA_OUTPUTS, configured="summarization")
    assert choice.kind == "summarization"
    assert choice.how == "set by the config's task"


def test_infer_task_rejects_unknown_configured_task() -> None:
    with pytest.raises(ValueError, match="classification, summarization, extractive_qa"):
        infer_task(QA_INPUTS, QA_OUTPUTS, configured="translation")


def test_infer_task_rejects_mismatched_or_empty() -> None:
    with pytest.raises(ValueError, match="4 inputs but 3 outputs"):
        infer_task(QA_INPUTS, QA_OUTPUTS[:3])
    with pytest.raises(ValueError, match="empty"):
        infer_task([], [])


# --- metrics -------------------------------------------------------------------------------


def test_score_classification_hand_computed() -> None:
    expected = ["cat", "cat", "cat", "dog", "dog", "bird"]
    predicted = ["cat", " Cat. ", "dog", "dog", "cat", None]
    scores = score("classification", expected, predicted)
    assert scores.task == "classification"
    assert scores.primary == "accuracy"
    # Normalized, examples 0, 1 and 3 are right.
    assert scores.per_example == (1.0, 1.0, 0.0, 1.0, 0.0, 0.0)
    assert scores.metrics["accuracy"] == pytest.approx(3 / 6)
    # Verbatim, only examples 0 and 3 (" Cat. " is not "cat").
    assert scores.metrics["exact_match"] == pytest.approx(2 / 6)
    # cat: TP 2, FP 1 (ex. 4), FN 1 (ex. 2) -> F1 2/3; dog: TP 1, FP 1, FN 1 -> 1/2;
    # bird: TP 0 -> 0. Macro: (2/3 + 1/2 + 0) / 3 = 7/18.
    assert scores.metrics["macro_f1"] == pytest.approx(7 / 18)
    assert scores.per_class == {
        "bird": ClassScore(accuracy=0.0, f1=0.0, support=1),
        "cat": ClassScore(accuracy=pytest.approx(2 / 3), f1=pytest.approx(2 / 3), support=3),
        "dog": ClassScore(accuracy=0.5, f1=0.5, support=2),
    }
    assert scores.errors == 1


def test_score_classification_answer_outside_the_classes_is_wrong() -> None:
    scores = score("classification", ["sports", "science"], ["weather", "science"])
    assert scores.per_example == (0.0, 1.0)
    assert set(scores.per_class) == {"science", "sports"}
    # science: TP 1, no FP -> F1 1; sports: TP 0 -> 0. "weather" is no class of its own.
    assert scores.metrics["macro_f1"] == pytest.approx(0.5)


def test_score_summarization_rouge_l_hand_computed() -> None:
    # Stemmed tokens: reference "the cat sat on the mat" (6), prediction "the cat were sit" (4);
    # the longest common subsequence is "the cat" (2): P 2/4, R 2/6, F = 2PR/(P+R) = 0.4.
    scores = score(
        "summarization",
        ["the cat sat on the mat", "A bakery won a prize.", "Rain flooded streets."],
        ["the cats were sitting", "a bakery WON a prize", None],
    )
    assert scores.primary == "rouge_l"
    assert scores.per_example == pytest.approx((0.4, 1.0, 0.0))
    assert scores.metrics == {"rouge_l": pytest.approx(1.4 / 3)}
    assert scores.per_class == {}
    assert scores.errors == 1


def test_score_extractive_qa_squad_style() -> None:
    scores = score(
        "extractive_qa",
        ["64", "The Eiffel Tower", "Paris", "in 1945"],
        ["64 parishes", "eiffel tower!", "London", None],
    )
    assert scores.primary == "token_f1"
    # "64" vs "64 parishes": 1 common token, P 1/2, R 1 -> F1 2/3, no exact match.
    # Articles and punctuation go: "eiffel tower" both -> exact, F1 1. "London": 0. None: 0.
    assert scores.per_example == pytest.approx((2 / 3, 1.0, 0.0, 0.0))
    assert scores.metrics["exact_match"] == pytest.approx(1 / 4)
    assert scores.metrics["token_f1"] == pytest.approx((2 / 3 + 1) / 4)
    assert scores.errors == 1


def test_score_extractive_qa_empty_answers() -> None:
    # SQuAD 2.0: an empty answer is right only against an empty expected answer.
    scores = score("extractive_qa", ["the", "Paris"], ["", ""])
    assert scores.per_example == (1.0, 0.0)


def test_score_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2 predictions against 3 expected"):
        score("classification", ["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        score("summarization", [], [])
    with pytest.raises(ValueError, match="unknown task 'translation'"):
        score("translation", ["a"], ["a"])


def test_latency_summary() -> None:
    # Linear interpolation: p50 between 20 and 30; p95 at rank 2.85 -> 30 + 0.85 * 10.
    assert latency_summary([40.0, 10.0, 30.0, 20.0]) == {
        "p50": pytest.approx(25.0),
        "p95": pytest.approx(38.5),
    }
    assert latency_summary([12.0]) == {"p50": 12.0, "p95": 12.0}
    assert latency_summary([]) == {}


# --- paired bootstrap ----------------------------------------------------------------------

CHALLENGER = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
CHAMPION = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_paired_bootstrap_is_seeded_and_contains_the_mean() -> None:
    interval = paired_bootstrap(CHALLENGER, CHAMPION, seed=3)
    # Differences: +1, 0, 0, +1, -1, 0, +1, 0, 0, 0 -> mean 0.2.
    assert interval.mean_difference == pytest.approx(0.2)
    assert interval.low <= interval.mean_difference <= interval.high
    assert interval.low < interval.high
    assert (interval.confidence, interval.resamples, interval.seed) == (0.95, 2000, 3)
    assert paired_bootstrap(CHALLENGER, CHAMPION, seed=3) == interval
    # A mean of resampled differences in {-1, 0, +1} over 10 examples is a multiple of 0.1.
    assert interval.low * 10 == pytest.approx(round(interval.low * 10))


def test_paired_bootstrap_is_paired() -> None:
    # Each model alone varies a lot, but the challenger is always exactly 0.1 better: pairing
    # keeps the interval at that single value, an unpaired comparison would not.
    champion = [0.1, 0.9, 0.3, 0.7, 0.5]
    challenger = [c + 0.1 for c in champion]
    interval = paired_bootstrap(challenger, champion)
    assert interval.low == pytest.approx(0.1)
    assert interval.high == pytest.approx(0.1)


def test_paired_bootstrap_narrower_with_lower_confidence() -> None:
    wide = paired_bootstrap(CHALLENGER, CHAMPION, confidence=0.99)
    narrow = paired_bootstrap(CHALLENGER, CHAMPION, confidence=0.5)
    assert wide.low <= narrow.low <= narrow.high <= wide.high
    assert (narrow.high - narrow.low) < (wide.high - wide.low)


def test_paired_bootstrap_all_equal_differences() -> None:
    # pytest turns warnings into errors: this also proves scipy's degenerate-data warning is
    # not raised.
    interval = paired_bootstrap([0.5, 0.5, 0.5], [0.25, 0.25, 0.25], seed=9)
    assert interval == evaluation.Interval(
        mean_difference=0.25, low=0.25, high=0.25, confidence=0.95, resamples=2000, seed=9
    )
    single = paired_bootstrap([1.0], [0.0])
    assert (single.low, single.mean_difference, single.high) == (1.0, 1.0, 1.0)


def test_paired_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="3 challenger scores but 2 champion scores"):
        paired_bootstrap([1.0, 0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="at least one example"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1.0, 0.0], [0.0, 0.0], confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([1.0, 0.0], [0.0, 0.0], resamples=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1)),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 2**32 - 1),
)
def test_paired_bootstrap_interval_contains_the_mean(
    pairs: list[tuple[float, float]], seed: int
) -> None:
    challenger = [a for a, _ in pairs]
    champion = [b for _, b in pairs]
    interval = paired_bootstrap(challenger, champion, resamples=500, seed=seed)
    assert interval.low - 1e-12 <= interval.mean_difference <= interval.high + 1e-12
    assert -1.0 <= interval.low <= interval.high <= 1.0


# --- the promotion rule --------------------------------------------------------------------

SPORTS_SCIENCE = ["sports"] * 4 + ["science"] * 4


def test_judge_first_model_meets_absolute_thresholds_only() -> None:
    # 3 of 5 right: accuracy 0.6. No champion: neither margin nor tolerance apply.
    candidate = score("classification", ["a"] * 5, ["a", "a", "a", "b", "b"])
    demanding = EvaluationThresholds(
        promotion_margin=0.5, promotion_tolerance=0.0, max_class_regression=0.0
    )
    passed = judge(candidate, None, demanding)
    assert passed.passed
    assert passed.interval is None
    assert passed.class_changes == {}

    failed = judge(candidate, None, EvaluationThresholds(min_task_score=0.8))
    assert not failed.passed
    assert failed.failures == (
        "accuracy on the golden set 0.6000 is below the minimum 0.8 (DISTILLERY_MIN_TASK_SCORE)",
    )


def test_judge_champion_better_fails_with_figures_and_sources() -> None:
    # The champion answers all 8 right, the candidate all 8 wrong: every difference is -1.
    champion = score("classification", SPORTS_SCIENCE, SPORTS_SCIENCE)
    candidate = score("classification", SPORTS_SCIENCE, ["science"] * 4 + ["sports"] * 4)
    thresholds = EvaluationThresholds(
        promotion_margin=0.05,
        promotion_tolerance=0.02,
        max_class_regression=0.1,
        sources={"promotion_margin": "config key promotion_margin"},
    )
    judgement = judge(candidate, champion, thresholds)
    assert not judgement.passed
    assert judgement.interval is not None
    assert judgement.interval.mean_difference == -1.0
    assert judgement.failures == (
        "accuracy on the golden set: mean paired difference -1.0000 (95% CI -1.0000 to -1.0000, "
        "2000 resamples, seed 0) is below the margin 0.05 (config key promotion_margin)",
        "accuracy on the golden set: the 95% CI's low bound -1.0000 is below -0.02, the "
        "tolerance (DISTILLERY_PROMOTION_TOLERANCE)",
        "class 'science': accuracy drops by 1.0000 (1.0000 -> 0.0000), more than 0.1 "
        "(DISTILLERY_MAX_CLASS_REGRESSION)",
        "class 'sports': accuracy drops by 1.0000 (1.0000 -> 0.0000), more than 0.1 "
        "(DISTILLERY_MAX_CLASS_REGRESSION)",
    )
    assert judgement.class_changes == {"science": -1.0, "sports": -1.0}


def test_judge_reason_carries_the_bootstrap_interval() -> None:
    champion = score("summarization", ["a b c d"] * 10, ["a b c d"] * 10)
    candidate_answers = ["a b c d"] * 7 + ["x y z w"] * 3
    candidate = score("summarization", ["a b c d"] * 10, candidate_answers)
    thresholds = EvaluationThresholds(resamples=1000, seed=4, confidence=0.9)
    judgement = judge(candidate, champion, thresholds)
    interval = judgement.interval
    assert interval is not None
    assert interval == paired_bootstrap(
        candidate.per_example, champion.per_example, confidence=0.9, resamples=1000, seed=4
    )
    assert judgement.failures[0] == (
        f"rouge_l on the golden set: mean paired difference -0.3000 (90% CI {interval.low:+.4f} "
        f"to {interval.high:+.4f}, 1000 resamples, seed 4) is below the margin 0 "
        "(DISTILLERY_PROMOTION_MARGIN)"
    )
    assert judgement.failures[1].startswith("rouge_l on the golden set: the 90% CI's low bound")
    assert judgement.failures[1].endswith(
        "is below 0, the tolerance (DISTILLERY_PROMOTION_TOLERANCE)"
    )


def test_judge_class_regression_alone() -> None:
    # Champion: sports 4/4, science 3/4. Candidate: sports 3/4, science 4/4. Same mean.
    champion = score(
        "classification", SPORTS_SCIENCE, ["sports"] * 4 + ["science"] * 3 + ["sports"]
    )
    candidate = score(
        "classification", SPORTS_SCIENCE, ["sports"] * 3 + ["science"] + ["science"] * 4
    )
    thresholds = EvaluationThresholds(promotion_tolerance=1.0, max_class_regression=0.1)
    judgement = judge(candidate, champion, thresholds)
    assert judgement.failures == (
        "class 'sports': accuracy drops by 0.2500 (1.0000 -> 0.7500), more than 0.1 "
        "(DISTILLERY_MAX_CLASS_REGRESSION)",
    )
    assert judgement.class_changes == {"science": 0.25, "sports": -0.25}
    # The default allows any class to drop.
    assert judge(candidate, champion, EvaluationThresholds(promotion_tolerance=1.0)).passed


def test_judge_better_candidate_passes() -> None:
    champion = score("extractive_qa", ["64", "Paris", "1945", "Hamlet"], ["6", "Paris", "", "x"])
    answers = ["64", "Paris", "1945", "Hamlet"]
    # Champion token F1: 0, 1, 0, 0 (mean 0.25); the candidate answers all four: 1 each.
    candidate = score("extractive_qa", answers, answers)
    thresholds = EvaluationThresholds(min_task_score=0.9, promotion_margin=0.5)
    judgement = judge(candidate, champion, thresholds)
    assert judgement.passed, judgement.failures
    assert judgement.interval is not None
    assert judgement.interval.mean_difference == pytest.approx(0.75)
    assert judgement.class_changes == {}


def test_judge_threshold_equal_to_the_figure_passes() -> None:
    # Class "a" drops from 8/10 to 7/10: 0.8 - 0.7 is 0.10000000000000009 in floating point,
    # equal to the allowed 0.1 in exact arithmetic, so not "more than" it.
    champion = score("classification", ["a"] * 10, ["a"] * 8 + ["b"] * 2)
    candidate = score("classification", ["a"] * 10, ["a"] * 7 + ["b"] * 3)
    judgement = judge(
        candidate,
        champion,
        EvaluationThresholds(
            min_task_score=0.7,
            promotion_margin=-0.1,
            promotion_tolerance=1.0,
            max_class_regression=0.1,
        ),
    )
    assert judgement.passed, judgement.failures
    assert judgement.class_changes["a"] == pytest.approx(-0.1)


def test_judge_rejects_scores_of_different_golden_sets() -> None:
    classification = score("classification", ["a", "b"], ["a", "b"])
    summary = score("summarization", ["a b", "c d"], ["a b", "c d"])
    with pytest.raises(ValueError, match="summarization champion"):
        judge(classification, summary, EvaluationThresholds())
    shorter = score("classification", ["a"], ["a"])
    with pytest.raises(ValueError, match="2 candidate scores with 1 champion scores"):
        judge(classification, shorter, EvaluationThresholds())


def test_thresholds_source_defaults_to_the_setting_name() -> None:
    thresholds = EvaluationThresholds(sources={"promotion_margin": "datasets/x.config.json"})
    assert thresholds.source("promotion_margin") == "datasets/x.config.json"
    assert thresholds.source("max_class_regression") == "DISTILLERY_MAX_CLASS_REGRESSION"


_LABELS = st.sampled_from(["business", "sports", "science", "entertainment"])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(_LABELS, st.one_of(st.none(), _LABELS)), min_size=1, max_size=40),
    st.integers(0, 1000),
)
def test_judge_model_against_itself_never_fails_margin_zero(
    pairs: list[tuple[str, str | None]], seed: int
) -> None:
    expected = [truth for truth, _ in pairs]
    predicted = [answer for _, answer in pairs]
    scores = score("classification", expected, predicted)
    judgement = judge(
        scores, scores, EvaluationThresholds(max_class_regression=0.0, resamples=200, seed=seed)
    )
    assert judgement.passed, judgement.failures
    assert judgement.interval is not None
    assert judgement.interval.mean_difference == 0.0
    assert set(judgement.class_changes.values()) <= {0.0}


# --- the package ---------------------------------------------------------------------------


def test_evaluation_exports_are_complete() -> None:
    public = {
        name
        for name in dir(evaluation)
        if not name.startswith("_") and not isinstance(getattr(evaluation, name), type(sys))
    }
    assert public == set(evaluation.__all__)
    assert TASKS == ("classification", "summarization", "extractive_qa")


def test_evaluation_import_is_cheap() -> None:
    # A fresh interpreter: the other tests here have imported the heavy libraries already.
    code = (
        "import sys, distillery.evaluation, distillery;"
        "heavy = [m for m in ('numpy', 'scipy', 'sklearn', 'rouge_score', 'nltk') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
