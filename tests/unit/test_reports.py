"""The decision report's page: what it says, what it draws, what it escapes, what it never loads."""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from distillery.reports import decision_report_paths, render_decision_html
from tests.helpers import EVENTS

REPO = Path(__file__).resolve().parents[2]


def sample_report(**changes: Any) -> dict[str, Any]:
    """The sample decision report of ``tests/events/decision_report.json``, keys replaced."""
    report: dict[str, Any] = json.loads((EVENTS / "decision_report.json").read_text())
    report.update(copy.deepcopy(changes))
    return report


def first_model_report() -> dict[str, Any]:
    """A family's first model: no champion, no comparison, the candidate's wrong answers."""
    report = sample_report(decision="promote", reasons=[], comparison=None, class_changes={})
    report["champion"] = None
    for example in report["disagreements"]:
        example["champion"] = None
    return report


@functools.cache
def sample_page() -> str:
    """The page of the sample report (rendered once: a render draws four charts)."""
    return render_decision_html(sample_report())


class _Page(HTMLParser):
    """The elements and the visible text of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if tag in ("style", "title"):
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def test_decision_report_paths_are_the_json_and_the_page_side_by_side() -> None:
    assert decision_report_paths("news-0123abcd") == (
        "reports/decisions/news-0123abcd.json",
        "reports/decisions/news-0123abcd.html",
    )
    assert decision_report_paths("j", "out/")[1] == "out/decisions/j.html"


@pytest.mark.parametrize("job_id", ["", "a/b", "../x", ".hidden"])
def test_decision_report_paths_refuse_what_is_not_a_job_id(job_id: str) -> None:
    with pytest.raises(ValueError, match="not a job id"):
        decision_report_paths(job_id)


def test_render_puts_the_decision_and_its_reasons_first() -> None:
    page = parse(sample_page())
    text = page.visible
    assert text.startswith("Decision report: job news-0123abcd")
    assert text.index("REJECT") < text.index("Reasons") < text.index("What was measured")
    # Every reason, whole, and escaped ("a&b" is text).
    assert "max_class_regression 0.1000 (default)" in text
    assert "class a&b accuracy dropped by 0.2000" in text


def test_render_shows_the_golden_set_the_task_and_how_it_was_chosen() -> None:
    text = parse(sample_page()).visible
    for fragment in (
        "gs://bkt-test/golden/news/5f1c.jsonl",
        "examples 25",
        "the eval set of job news-0001, frozen on 2026-11-30T10:00:00Z",
        "task classification",
        "inferred: every expected answer of the golden set is one of 3 labels",
        "primary metric accuracy",
    ):
        assert fragment in text, fragment


def test_render_puts_the_metrics_side_by_side_with_their_difference() -> None:
    text = parse(sample_page()).visible
    assert "metric candidate champion difference" in text
    assert "accuracy (primary) 0.8400 0.8900 -0.0500" in text
    assert "macro_f1 0.8133 0.8800 -0.0667" in text


def test_render_gives_the_interval_figures_and_charts_them_against_the_thresholds() -> None:
    page = sample_page()
    text = parse(page).visible
    assert "mean difference low high confidence resamples seed" in text
    assert "-0.0500 -0.1234 0.0271 0.9500 2000 7" in text
    assert "the mean difference must reach the margin (+0.0000)" in text
    assert "the interval's low end must reach minus the tolerance (-0.0200)" in text
    # The interval chart's labels are SVG text: the margin and the tolerance are drawn.
    assert "margin +0.000" in page and "-tolerance -0.020" in page


def test_render_draws_one_chart_per_part_and_per_training_curve() -> None:
    page = parse(sample_page())
    # The interval, the per-class bars, and the two curves.
    assert page.tags.count("svg") == 4
    report = sample_report()
    report["training_curves"]["/learning_rate"] = [[1, 0.1], [2, 0.05]]
    assert parse(render_decision_html(report)).tags.count("svg") == 5


def test_render_shows_per_class_figures_with_their_labels_in_the_bars() -> None:
    page = sample_page()
    text = parse(page).visible
    assert "business 0.9000 1.0000 -0.1000 0.8571 0.9524 10" in text
    assert "sports 0.8000 0.7000 +0.1000" in text
    # The bars' tick labels are text of the SVG; "$x$" is not a formula, "&" is escaped.
    svg_text = re.findall(r"<text[^>]*>([^<]*)</text>", page)
    assert {"business", "sports", "a&amp;b $x$", "candidate", "champion"} <= set(svg_text)


def test_render_escapes_the_examples_and_carries_no_script() -> None:
    page = sample_page()
    parsed = parse(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "b" not in parsed.tags
    assert "&lt;script&gt;document.body.dataset.pwned = &#x27;yes&#x27;&lt;/script&gt;" in page
    assert "<script>document.body.dataset.pwned = 'yes'</script> Stocks rally <b>again</b>" in (
        parsed.visible
    )
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]


def test_render_loads_nothing_from_anywhere() -> None:
    page = sample_page()
    parsed = parse(page)
    assert not {"link", "script", "iframe", "object", "embed", "img"} & set(parsed.tags)
    references = [
        value
        for name, value in parsed.attributes
        if name in ("src", "href", "xlink:href") and value is not None
    ]
    assert references and all(value.startswith("#") for value in references)
    assert "url(http" not in page and "@import" not in page
    assert "default-src 'none'" in page


def test_render_says_in_words_what_a_first_model_lacks() -> None:
    page = parse(render_decision_html(first_model_report()))
    text = page.visible
    assert "PROMOTE" in text and "Every rule passed" in text
    assert "No champion: this is the family's first model" in text
    assert "No paired comparison: there was no champion" in text
    assert "No champion: the bars show the candidate alone." in text
    assert "Where the candidate was wrong" in text
    assert "champion none" in text  # the serving table's champion row
    # The per-class bars and the two curves; no interval.
    assert page.tags.count("svg") == 3


def test_render_says_in_words_that_there_are_no_curves_nor_classes() -> None:
    report = sample_report(
        task={"kind": "summarization", "how": "config key task"},
        training_curves={},
        service_metrics={},
        cost={},
        thresholds={},
        disagreements=[],
        class_changes={},
    )
    report["candidate"]["per_class"] = {}
    report["champion"]["per_class"] = {}
    page = parse(render_decision_html(report))
    text = page.visible
    assert "No per-class figures: they are for classification; the task is summarization." in text
    assert "No training curves: the job wrote no metrics to draw." in text
    assert "The job reported no metrics of its own." in text
    assert "The plan recorded no cost figures for this job." in text
    assert "The report lists no thresholds." in text
    assert "The two models gave the same answer on every example." in text
    assert page.tags.count("svg") == 1  # the interval only


def test_render_shows_serving_cost_and_thresholds_with_their_sources() -> None:
    text = parse(sample_page()).visible
    assert "candidate news-0123abcd projects/p/locations/us-central1/models/411@1" in text
    assert "projects/p/locations/us-central1/endpoints/412 12.5 31.2 0" in text
    assert "champion news-0001" in text and "11.0 24.8 1" in text
    assert "accelerator GPU" in text and "accelerator hours 1.20" in text
    assert "estimated usd $40.00" in text and "train steps 300" in text
    assert "promotion_tolerance 0.0200 config key promotion_tolerance" in text
    assert "promotion_margin 0.0000 DISTILLERY_PROMOTION_MARGIN" in text


def test_render_says_which_prompt_prefix_each_model_was_asked_with() -> None:
    report = sample_report()
    report["candidate"]["prompt_prefix"] = "predict: "
    text = parse(render_decision_html(report)).visible
    assert "asked with prefix" in text
    assert "12.5 31.2 0 'predict: '" in text
    # The champion's side predates the field (and a model asked bare says so too).
    assert "11.0 24.8 1 none" in text


def test_render_is_the_same_page_every_time_and_leaves_matplotlib_as_it_was() -> None:
    import matplotlib

    def settings() -> dict[str, Any]:
        # Read raw: reading "backend" through rcParams would resolve it (importing pyplot).
        return dict(dict.items(matplotlib.rcParams))

    before = settings()
    first = render_decision_html(sample_report())
    assert render_decision_html(sample_report()) == first == sample_page()
    assert settings() == before


def test_render_imports_matplotlib_only_when_rendering_and_never_pyplot() -> None:
    script = (
        "import sys, json\n"
        "import distillery.reports as reports\n"
        "before = 'matplotlib' in sys.modules\n"
        f"report = json.load(open({str(EVENTS / 'decision_report.json')!r}))\n"
        "reports.render_decision_html(report)\n"
        "after = 'matplotlib' in sys.modules\n"
        "print(json.dumps([before, after, 'matplotlib.pyplot' in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(result.stdout) == [False, True, False]


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ([], "a decision report is a JSON object, not list"),
        ({"job_id": "j"}, "the decision report has no decision"),
        ({"decision": "promote"}, "the decision report has no job_id"),
    ],
)
def test_render_refuses_what_is_not_a_decision_report(report: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_decision_html(report)


def test_render_copes_with_null_parts_and_odd_points() -> None:
    report = sample_report(golden_set=None, task=None, cost=None, thresholds=None)
    report["training_curves"] = {"/loss": [[1, 2.0], "bad", [2, None], [3, 1.5]]}
    report["candidate"]["latency_ms"] = {}
    page = parse(render_decision_html(report))
    assert page.tags.count("svg") == 3  # interval, classes, the one curve of good points
    assert "p50 latency (ms)" in page.visible


def test_matplotlib_is_a_pinned_deployed_dependency() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "matplotlib==3.11.2" in pyproject["project"]["dependencies"]
