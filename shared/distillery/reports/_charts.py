"""The decision report's charts: matplotlib figures rendered to inline SVG strings, in memory.

matplotlib is imported here, inside the functions, and only when a report is rendered: the
functions that never render one do not pay for it. Every chart is its own
:class:`matplotlib.figure.Figure` with an Agg canvas attached to it (never pyplot, whose figure
registry and current-figure state are process-wide); the rc settings a chart needs hold only
while it is drawn.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CANDIDATE_COLOUR = "#1f6fb2"
CHAMPION_COLOUR = "#9a9a9a"
PASS_COLOUR = "#2e7d32"
FAIL_COLOUR = "#c62828"


@contextmanager
def _figure(salt: str, width: float, height: float) -> Iterator[Figure]:
    """A fresh figure of ``width`` x ``height`` inches on an Agg canvas, with the report's rc.

    ``salt`` makes the SVG's internal ids (clip paths) the chart's own, and stable from one
    render to the next: several charts share one HTML page, and the same report renders the same.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Any-keyed: matplotlib types the keys as literals of every rc name.
    settings: dict[Any, Any] = {
        "svg.hashsalt": f"distillery-{salt}",
        # Text stays text: the browser draws it (and finds it), and the SVG is smaller.
        "svg.fonttype": "none",
        # A "$" in a class name or a tag is a character, not the start of a formula.
        "text.parse_math": False,
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
    with matplotlib.rc_context(settings):
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
        yield figure


def _svg(figure: Figure) -> str:
    """``figure`` as an SVG element to inline in HTML (no XML declaration, no doctype, no date)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def interval_chart(
    mean: float,
    low: float,
    high: float,
    confidence: float,
    margin: float | None,
    tolerance: float | None,
) -> str:
    """The paired difference's interval against the margin and the tolerance, as SVG.

    The bar is the interval, the dot the mean difference; dashed lines mark the margin (the mean
    must reach it) and minus the tolerance (the low end must reach it).
    """
    with _figure("interval", 6.4, 1.9) as figure:
        axes = figure.add_subplot()
        passed = (margin is None or mean >= margin) and (tolerance is None or low >= -tolerance)
        colour = PASS_COLOUR if passed else FAIL_COLOUR
        axes.hlines(0, low, high, colors=colour, linewidth=6, alpha=0.45)
        axes.plot([mean], [0], "o", color=colour, markersize=9)
        axes.axvline(0, color="#555555", linewidth=0.8)
        if margin is not None:
            axes.axvline(margin, color=PASS_COLOUR, linestyle="--", linewidth=1.2)
            axes.annotate(f"margin {margin:+.3f}", (margin, 0.62), ha="left", color=PASS_COLOUR)
        if tolerance is not None:
            axes.axvline(-tolerance, color=FAIL_COLOUR, linestyle="--", linewidth=1.2)
            axes.annotate(
                f"-tolerance {-tolerance:+.3f}", (-tolerance, -0.8), ha="right", color=FAIL_COLOUR
            )
        # The view holds the interval, zero and both thresholds, with some room around them.
        marks = [low, high, 0.0]
        if margin is not None:
            marks.append(margin)
        if tolerance is not None:
            marks.append(-tolerance)
        span = max(marks) - min(marks) or 0.1
        axes.set_xlim(min(marks) - 0.15 * span, max(marks) + 0.15 * span)
        axes.set_ylim(-1, 1)
        axes.set_yticks([])
        axes.spines["left"].set_visible(False)
        axes.set_xlabel(f"candidate - champion ({confidence:.0%} interval, mean dot)")
        return _svg(figure)


def class_bars(
    classes: Sequence[str],
    candidate: Sequence[float],
    champion: Sequence[float] | None,
) -> str:
    """Accuracy per class, candidate beside champion (candidate alone without one), as SVG."""
    with _figure("classes", min(9.0, 2.2 + 0.7 * len(classes)), 2.8) as figure:
        axes = figure.add_subplot()
        positions = list(range(len(classes)))
        width = 0.4 if champion is not None else 0.6
        offset = width / 2 if champion is not None else 0.0
        axes.bar(
            [p - offset for p in positions],
            candidate,
            width,
            label="candidate",
            color=CANDIDATE_COLOUR,
        )
        if champion is not None:
            axes.bar(
                [p + offset for p in positions],
                champion,
                width,
                label="champion",
                color=CHAMPION_COLOUR,
            )
        axes.set_xticks(positions, list(classes), rotation=30 if len(classes) > 5 else 0)
        axes.set_ylim(0, 1.05)
        axes.set_ylabel("accuracy")
        # Above the axes: inside, the legend would hide a bar.
        figure.legend(loc="outside upper center", ncols=2, fontsize=8, frameon=False)
        return _svg(figure)


def curve_chart(tag: str, points: Sequence[tuple[float, float]]) -> str:
    """One training curve (value by step) titled with its tag, as SVG."""
    with _figure(f"curve-{tag}", 3.6, 2.2) as figure:
        axes: Axes = figure.add_subplot()
        steps = [p[0] for p in points]
        values = [p[1] for p in points]
        # Markers only where the points are few enough to tell apart.
        marker = "." if len(points) < 30 else None
        axes.plot(steps, values, color=CANDIDATE_COLOUR, linewidth=1.4, marker=marker)
        axes.set_title(tag, fontsize=9)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        return _svg(figure)


def curve_points(raw: Any) -> list[tuple[float, float]]:
    """The ``[step, value]`` pairs of one curve of the report, as numbers (bad pairs dropped)."""
    points: list[tuple[float, float]] = []
    for pair in raw if isinstance(raw, Sequence) and not isinstance(raw, str) else ():
        try:
            step, value = pair
            points.append((float(step), float(value)))
        except (TypeError, ValueError):
            logger.warning("a training curve point is not [step, value]: %r", pair)
    return points


def numbers(values: Mapping[str, Any], keys: Sequence[str], field: str) -> list[float]:
    """``values[key][field]`` for each key, as floats (NaN where missing: no bar is drawn)."""
    found = []
    for key in keys:
        entry = values.get(key)
        value = entry.get(field) if isinstance(entry, Mapping) else None
        found.append(float(value) if isinstance(value, int | float) else math.nan)
    return found
