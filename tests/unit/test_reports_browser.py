"""The decision report's page in headless Chromium (Debian's ``chromium``), as a user sees it.

The DOM Chromium built from the page (``--dump-dom``) and a screenshot of it: the decision, the
interval's figures, the charts, the per-class labels drawn in them, and the examples' markup shown
as text, never run. In CI (``CI=true``) a missing chromium is a failure: ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from distillery.reports import render_decision_html
from tests.unit.test_reports import first_model_report, parse, sample_report

pytestmark = pytest.mark.timeout(60)

#: Colours of the page (see distillery.reports): the REJECT badge, the candidate's bars.
REJECT_RED = (0xC6, 0x28, 0x28)
CANDIDATE_BLUE = (0x1F, 0x6F, 0xB2)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed: CI must install it (.ci/run: apt-get install)")
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)")


def _browse(tmp_path: Path, page: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``page`` (written to a file) with ``flags``."""
    file = tmp_path / "report.html"
    file.write_text(page, encoding="utf-8")
    return subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            *flags,
            file.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
        cwd=tmp_path,
    )


def test_chromium_shows_the_decision_the_interval_the_charts_and_escaped_examples(
    tmp_path: Path,
) -> None:
    dom = _browse(tmp_path, render_decision_html(sample_report()), "--dump-dom").stdout
    seen = parse(dom)
    text = seen.visible
    assert text.startswith("Decision report: job news-0123abcd family news")
    assert text.index("REJECT") < text.index("Reasons") < text.index("What was measured")
    assert "-0.0500 -0.1234 0.0271 0.9500 2000 7" in text  # mean, low, high, confidence, ...
    assert seen.tags.count("svg") == 4  # the interval, the per-class bars, two training curves
    for label in ("business", "sports", "a&b $x$"):
        assert f" {label} " in f" {text} ", label  # drawn as SVG text of the bars
    # The example's markup is text on the page: no element came of it, no script of it ran.
    assert "<script>document.body.dataset.pwned = 'yes'</script> Stocks rally <b>again</b>" in text
    assert "&lt;script&gt;" in dom
    assert "script" not in seen.tags and "img" not in seen.tags
    assert "pwned" not in dict(seen.attributes) and "data-pwned" not in dom


def test_chromium_shows_a_first_model_s_page_with_what_it_lacks_in_words(
    tmp_path: Path,
) -> None:
    dom = _browse(tmp_path, render_decision_html(first_model_report()), "--dump-dom").stdout
    seen = parse(dom)
    assert "PROMOTE" in seen.visible
    assert "No paired comparison: there was no champion" in seen.visible
    assert seen.tags.count("svg") == 3


def test_chromium_draws_the_badge_and_the_bars(tmp_path: Path) -> None:
    from PIL import Image  # matplotlib's own dependency

    shot = tmp_path / "shot.png"
    _browse(
        tmp_path,
        render_decision_html(sample_report()),
        f"--screenshot={shot}",
        "--window-size=1200,3200",
        "--hide-scrollbars",
    )
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        assert pixels.size == (1200, 3200)
        colours = pixels.getcolors(maxcolors=1 << 24) or []
    counted = dict((colour, count) for count, colour in colours)
    # The REJECT badge (its red, in the page's top part) and the candidate's blue bars and curves.
    assert counted.get(REJECT_RED, 0) > 1000
    assert counted.get(CANDIDATE_BLUE, 0) > 1000


def test_a_missing_chromium_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it"):
        _chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        _chromium()
