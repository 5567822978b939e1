"""The decision report as one self-contained HTML page: inline CSS, inline SVG charts, no script.

The page reads top to bottom as a user asks: what was decided and why; on what (the golden set,
the task); the figures side by side with the paired interval; per class; how training went; how
the endpoints served; what it cost; the thresholds and where each came from; where the two models
disagree. A part the report does not have is said in words. Every value from the report is
HTML-escaped: inputs and answers are users' data.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from distillery.reports import _charts

#: No script, no network: the page draws only what it carries (styles and SVG inline).
_CONTENT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 70rem; padding: 0 1rem; color: #1d1d1d; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta { color: #555; margin-top: 0; }
.decision { display: inline-block; padding: 0.35rem 0.9rem; border-radius: 0.3rem;
            font-weight: 700; font-size: 1.2rem; color: #fff; letter-spacing: 0.05em; }
.decision.promote { background: #2e7d32; }
.decision.reject { background: #c62828; }
.absent { color: #666; font-style: italic; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.up { color: #2e7d32; }
td.down { color: #c62828; }
td.text { white-space: pre-wrap; max-width: 24rem; overflow-wrap: anywhere; }
.chart svg { max-width: 100%; height: auto; }
.curves { display: flex; flex-wrap: wrap; gap: 1rem; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""

_DASH = "\u2014"


def _e(value: Any) -> str:
    """``value`` as escaped HTML text (None as a dash)."""
    return _DASH if value is None else html.escape(str(value), quote=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(value: Any) -> float | None:
    """``value`` as a float when it is a number (not a bool), else None."""
    return float(value) if _is_number(value) else None


def _num(value: Any, digits: int = 4) -> str:
    """A figure for a table: floats to ``digits`` places, whole numbers as they are."""
    if not _is_number(value):
        return _e(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    return f"{value:.{digits}f}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _absent(text: str) -> str:
    return f'<p class="absent">{_e(text)}</p>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table whose cells are already HTML (``<td>`` included), headers plain text."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(cells)}</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of (label, cell HTML with its ``<td>``): a label per row, no header."""
    body = "".join(f'<tr><th scope="row">{_e(label)}</th>{cell}</tr>' for label, cell in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _cell(value: Any, *, number: bool = False, digits: int = 4, css: str = "") -> str:
    classes = " ".join(c for c in ("num" if number else "", css) if c)
    attribute = f' class="{classes}"' if classes else ""
    return f"<td{attribute}>{_num(value, digits) if number else _e(value)}</td>"


def _difference_cell(value: float | None) -> str:
    if value is None:
        return _cell(None)
    css = "up" if value > 0 else "down" if value < 0 else ""
    return _cell(f"{value:+.4f}", number=True, css=css)


def _chart(svg: str) -> str:
    return f'<div class="chart">{svg}</div>'


# --- the sections --------------------------------------------------------------------------------


def _header(report: Mapping[str, Any]) -> str:
    decision = str(report.get("decision") or "")
    css = decision if decision in ("promote", "reject") else ""
    word = {"promote": "PROMOTE", "reject": "REJECT"}.get(decision, decision.upper() or _DASH)
    reasons = [r for r in report.get("reasons") or [] if r]
    if reasons:
        said = "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>"
    elif decision == "promote":
        said = "<p>Every rule passed: nothing held the candidate back.</p>"
    else:
        said = _absent("The report gives no reason for this decision.")
    return (
        f"<h1>Decision report: job {_e(report.get('job_id'))}</h1>"
        f'<p class="meta">family <code>{_e(report.get("family"))}</code> · decided '
        f"{_e(report.get('decided_at'))}</p>"
        f'<p><span class="decision {css}" id="decision">{_e(word)}</span></p>'
        f"<h2>Reasons</h2>{said}"
    )


def _golden_set_and_task(report: Mapping[str, Any]) -> str:
    golden = _mapping(report.get("golden_set"))
    task = _mapping(report.get("task"))
    rows = [
        ("golden set", _cell(golden.get("uri"))),
        ("examples", _cell(golden.get("examples"), number=True)),
        ("source", _cell(golden.get("source"))),
        ("sha256", _cell(golden.get("sha256"))),
        ("task", _cell(task.get("kind"))),
        ("how the task was chosen", _cell(task.get("how"))),
        ("primary metric", _cell(report.get("primary_metric"))),
    ]
    return "<h2>What was measured</h2>" + _facts(rows)


def _metrics(report: Mapping[str, Any]) -> str:
    candidate = _mapping(report.get("candidate"))
    champion = report.get("champion")
    champion = champion if isinstance(champion, Mapping) else None
    primary = report.get("primary_metric")
    ours = _mapping(candidate.get("metrics"))
    theirs = _mapping(champion.get("metrics")) if champion else {}
    names = list(ours) + [n for n in theirs if n not in ours]
    parts = ["<h2>Metrics on the golden set, side by side</h2>"]
    if champion is None:
        parts.append(
            _absent(
                "No champion: this is the family's first model, so it was held to the absolute "
                "thresholds only and there is nothing to compare it with."
            )
        )
    if not names:
        parts.append(_absent("The report has no task metrics."))
        return "".join(parts)
    rows = []
    for name in names:
        mine, other = ours.get(name), theirs.get(name)
        mine_value, other_value = _float(mine), _float(other)
        difference = (
            mine_value - other_value if mine_value is not None and other_value is not None else None
        )
        label = f"{name} (primary)" if name == primary else name
        rows.append(
            [
                _cell(label),
                _cell(mine, number=True),
                _cell(other, number=True),
                _difference_cell(difference),
            ]
        )
    parts.append(_table(["metric", "candidate", "champion", "difference"], rows))
    return "".join(parts)


def _threshold_value(report: Mapping[str, Any], name: str) -> float | None:
    return _float(_mapping(_mapping(report.get("thresholds")).get(name)).get("value"))


def _comparison(report: Mapping[str, Any]) -> str:
    comparison = report.get("comparison")
    parts = ["<h2>Paired difference (candidate - champion)</h2>"]
    if not isinstance(comparison, Mapping):
        parts.append(
            _absent("No paired comparison: there was no champion to answer the golden set.")
        )
        return "".join(parts)
    figures = ("mean_difference", "low", "high", "confidence", "resamples", "seed")
    parts.append(
        _table(
            ["mean difference", "low", "high", "confidence", "resamples", "seed"],
            [[_cell(comparison.get(f), number=True) for f in figures]],
        )
    )
    mean, low, high = (_float(comparison.get(k)) for k in ("mean_difference", "low", "high"))
    margin = _threshold_value(report, "promotion_margin")
    tolerance = _threshold_value(report, "promotion_tolerance")
    rule = []
    if margin is not None:
        rule.append(f"the mean difference must reach the margin ({margin:+.4f})")
    if tolerance is not None:
        rule.append(f"the interval's low end must reach minus the tolerance ({-tolerance:+.4f})")
    if rule:
        parts.append(f"<p>To promote, {_e(' and '.join(rule))}.</p>")
    if mean is not None and low is not None and high is not None:
        confidence = _float(comparison.get("confidence"))
        parts.append(
            _chart(
                _charts.interval_chart(
                    mean,
                    low,
                    high,
                    0.95 if confidence is None else confidence,
                    margin,
                    tolerance,
                )
            )
        )
    else:
        parts.append(_absent("The interval's figures are missing: no chart."))
    return "".join(parts)


def _per_class(report: Mapping[str, Any]) -> str:
    candidate = _mapping(_mapping(report.get("candidate")).get("per_class"))
    champion_report = report.get("champion")
    champion = (
        _mapping(champion_report.get("per_class")) if isinstance(champion_report, Mapping) else None
    )
    changes = _mapping(report.get("class_changes"))
    parts = ["<h2>Per class</h2>"]
    classes = list(candidate) + [c for c in champion or {} if c not in candidate]
    if not classes:
        kind = _mapping(report.get("task")).get("kind")
        if kind == "classification":
            said = "No per-class figures: the report has none for this classification."
        else:
            said = f"No per-class figures: they are for classification; the task is {kind}."
        parts.append(_absent(said))
        return "".join(parts)
    rows = []
    for name in classes:
        mine = _mapping(candidate.get(name))
        other = _mapping((champion or {}).get(name))
        change = changes.get(name)
        rows.append(
            [
                _cell(name),
                _cell(mine.get("accuracy"), number=True),
                _cell(other.get("accuracy") if champion is not None else None, number=True),
                _difference_cell(_float(change)),
                _cell(mine.get("f1"), number=True),
                _cell(other.get("f1") if champion is not None else None, number=True),
                _cell(mine.get("support"), number=True),
            ]
        )
    parts.append(
        _table(
            [
                "class",
                "candidate accuracy",
                "champion accuracy",
                "change",
                "candidate F1",
                "champion F1",
                "support",
            ],
            rows,
        )
    )
    if champion is None:
        parts.append(_absent("No champion: the bars show the candidate alone."))
    parts.append(
        _chart(
            _charts.class_bars(
                classes,
                _charts.numbers(candidate, classes, "accuracy"),
                _charts.numbers(champion, classes, "accuracy") if champion is not None else None,
            )
        )
    )
    return "".join(parts)


def _curves(report: Mapping[str, Any]) -> str:
    curves = _mapping(report.get("training_curves"))
    parts = ["<h2>Training curves</h2>"]
    charts = []
    for tag, raw in curves.items():
        points = _charts.curve_points(raw)
        if points:
            charts.append(_chart(_charts.curve_chart(str(tag), points)))
    if not charts:
        parts.append(_absent("No training curves: the job wrote no metrics to draw."))
    else:
        parts.append(f'<div class="curves">{"".join(charts)}</div>')
    service = _mapping(report.get("service_metrics"))
    if service:
        parts.append("<p>What the job itself reported:</p>")
        parts.append(
            _table(
                ["metric", "value"],
                [[_cell(k), _cell(v, number=True)] for k, v in service.items()],
            )
        )
    else:
        parts.append(_absent("The job reported no metrics of its own."))
    return "".join(parts)


def _serving(report: Mapping[str, Any]) -> str:
    rows = []
    for role in ("candidate", "champion"):
        side = report.get(role)
        if not isinstance(side, Mapping):
            rows.append([_cell(role), *(_cell("none") for _ in range(7))])
            continue
        latency = _mapping(side.get("latency_ms"))
        prefix = side.get("prompt_prefix")
        rows.append(
            [
                _cell(role),
                _cell(side.get("job_id")),
                _cell(side.get("model")),
                _cell(side.get("endpoint")),
                _cell(latency.get("p50"), number=True, digits=1),
                _cell(latency.get("p95"), number=True, digits=1),
                _cell(side.get("errors"), number=True),
                # A step-by-step model is asked the label task: its prefix before every input.
                _cell(repr(prefix) if isinstance(prefix, str) and prefix else "none"),
            ]
        )
    headers = [
        "",
        "job",
        "model",
        "endpoint",
        "p50 latency (ms)",
        "p95 latency (ms)",
        "errors",
        "asked with prefix",
    ]
    return "<h2>Serving on the golden set</h2>" + _table(headers, rows)


def _cost(report: Mapping[str, Any]) -> str:
    cost = _mapping(report.get("cost"))
    parts = ["<h2>Cost of the job</h2>"]
    if not cost:
        parts.append(_absent("The plan recorded no cost figures for this job."))
        return "".join(parts)
    rows = []
    for key, value in cost.items():
        if key == "estimated_usd" and _is_number(value):
            shown = _cell(f"${float(value):,.2f}", number=True)
        else:
            shown = _cell(value, number=_is_number(value), digits=2)
        rows.append((key.replace("_", " "), shown))
    parts.append(_facts(rows))
    return "".join(parts)


def _thresholds(report: Mapping[str, Any]) -> str:
    thresholds = _mapping(report.get("thresholds"))
    parts = ["<h2>Thresholds</h2>"]
    if not thresholds:
        parts.append(_absent("The report lists no thresholds."))
        return "".join(parts)
    rows = []
    for name, entry in thresholds.items():
        given = _mapping(entry)
        rows.append(
            [_cell(name), _cell(given.get("value"), number=True), _cell(given.get("source"))]
        )
    parts.append(_table(["threshold", "value", "source"], rows))
    return "".join(parts)


def _disagreements(report: Mapping[str, Any]) -> str:
    examples = [e for e in report.get("disagreements") or [] if isinstance(e, Mapping)]
    has_champion = isinstance(report.get("champion"), Mapping)
    title = "Where the two models disagree" if has_champion else "Where the candidate was wrong"
    parts = [f"<h2>{title}</h2>"]
    if not examples:
        parts.append(
            _absent(
                "The two models gave the same answer on every example."
                if has_champion
                else "The candidate answered every example as expected."
            )
        )
        return "".join(parts)
    rows = [
        [
            _cell(example.get("index"), number=True),
            f'<td class="text">{_e(example.get("input"))}</td>',
            f'<td class="text">{_e(example.get("expected"))}</td>',
            f'<td class="text">{_e(example.get("candidate"))}</td>',
            f'<td class="text">{_e(example.get("champion") if has_champion else "none")}</td>',
        ]
        for example in examples
    ]
    parts.append(_table(["#", "input", "expected", "candidate", "champion"], rows))
    return "".join(parts)


def render(report: Mapping[str, Any]) -> str:
    """The page of ``report`` (see :func:`distillery.reports.render_decision_html`)."""
    title = f"Distillery decision: {report.get('decision')} {report.get('job_id')}"
    sections = [
        _header(report),
        _golden_set_and_task(report),
        _metrics(report),
        _comparison(report),
        _per_class(report),
        _curves(report),
        _serving(report),
        _cost(report),
        _thresholds(report),
        _disagreements(report),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CONTENT_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
