"""The decision report of an evaluation, as a page a user reads.

The promoter writes each evaluation's decision report as JSON to
``reports/decisions/<job_id>.json`` and the page :func:`render_decision_html` makes of it to
``reports/decisions/<job_id>.html`` beside it (:func:`decision_report_paths`);
``distillery report JOB`` fetches and opens the page. The page is self-contained: inline CSS and
inline SVG charts (matplotlib, imported only when a page is rendered), no script, nothing fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DECISIONS_FOLDER", "decision_report_paths", "render_decision_html"]

#: The folder, under the reports prefix, of the decision reports.
DECISIONS_FOLDER = "decisions/"

#: What every decision report has, whatever else it lacks: the page cannot say what it is without.
_REQUIRED = ("job_id", "decision")


def decision_report_paths(job_id: str, reports_prefix: str = "reports/") -> tuple[str, str]:
    """The object names of job ``job_id``'s decision report: (the JSON's, the HTML page's).

    ``reports/decisions/<job_id>.json`` and ``.html`` with the default ``reports_prefix``
    (the ``DISTILLERY_REPORTS_PREFIX`` setting's default).

    Raises:
        ValueError: ``job_id`` is empty or could name another folder (a ``/``, or a leading
            ``.``).
    """
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise ValueError(f"not a job id: {job_id!r}")
    stem = f"{reports_prefix}{DECISIONS_FOLDER}{job_id}"
    return f"{stem}.json", f"{stem}.html"


def render_decision_html(report: Mapping[str, Any]) -> str:
    """The decision report ``report`` (its JSON, parsed) as one self-contained HTML page.

    At the top the decision and its reasons; then the golden set and the task, the metrics side
    by side with the paired interval and its chart against the margin and the tolerance, per-class
    bars, the training curves (one chart per tag), the endpoints' latency and errors, the cost,
    the thresholds with their sources and the disagreement examples. A part the report lacks (no
    champion, no curves, no per-class figures) is said in words. Every value is HTML-escaped.

    Raises:
        ValueError: ``report`` is not a mapping, or has no ``job_id`` or ``decision``.
    """
    if not isinstance(report, Mapping):
        raise ValueError(f"a decision report is a JSON object, not {type(report).__name__}")
    missing = [key for key in _REQUIRED if not report.get(key)]
    if missing:
        raise ValueError(f"the decision report has no {', '.join(missing)}")
    from distillery.reports import _html

    return _html.render(report)
