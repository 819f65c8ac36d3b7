"""report.html in a real headless Chromium: it renders, runs without errors, and sorts.

Uses the system's `chromium` (apt), never a downloaded browser; skipped where
there is none. `--dump-dom` prints the DOM after the page's scripts ran, so a
small probe script appended to a copy of the report can click a header and
record any JavaScript error for the test to read.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_scorecard_report import make_card, parse

from shoptalk.eval.report import write_report

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt install chromium)"
)

# Errors are recorded on <body>; then a click on a header sorts by that column.
PROBE = """<script>
window.addEventListener('error', e => document.body.dataset.jsError = e.message);
%s
</script>"""


def chromium(*args: str) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    done = subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180, check=True
    )
    return done.stdout


def with_probe(report: Path, action: str) -> Path:
    html = report.read_text(encoding="utf-8")
    # The error listener goes first, so it hears errors of the report's own script.
    head, tail = html.split("<body>", 1)
    body, end = tail.rsplit("</body>", 1)
    probed = report.with_name("probed.html")
    probed.write_text(
        f"{head}<body>{PROBE % ''}{body}{PROBE % action}</body>{end}", encoding="utf-8"
    )
    return probed


def changes(dom: str) -> list[float]:
    return [float(row[-1][0]["data-v"]) for row in parse(dom).rows]


@pytest.fixture
def report(tmp_path) -> Path:
    path = tmp_path / "report.html"
    write_report(make_card(), path)
    return path


def test_the_report_renders_without_errors_with_charts_and_a_screenshot(report, tmp_path):
    dom = chromium("--dump-dom", with_probe(report, "").as_uri())
    assert "data-js-error" not in dom
    page = parse(dom)
    assert page.tags.count("svg") == 2, "one chart per suite"
    assert len(page.rows) == 4
    assert changes(dom) == sorted(changes(dom)), "regressions first, as written"
    assert "<mark>75 天</mark>" in dom

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1000", report.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_clicking_the_change_header_sorts_the_biggest_wins_first(report):
    # The change column is sorted ascending as written; one click sorts it descending.
    click = "document.querySelectorAll('#questions th')[8].click();"
    dom = chromium("--dump-dom", with_probe(report, click).as_uri())
    assert "data-js-error" not in dom
    assert changes(dom) == sorted(changes(dom), reverse=True)
    assert changes(dom)[0] == 1.0


def test_the_suite_filter_hides_other_suites(report):
    pick = (
        "const s=document.getElementById('suite-filter');s.value='unanswerable';"
        "s.dispatchEvent(new Event('change'));"
        "document.body.dataset.shown=[...document.querySelectorAll('#questions tbody tr')]"
        ".filter(r=>!r.hidden).length;"
    )
    dom = chromium("--dump-dom", with_probe(report, pick).as_uri())
    assert "data-js-error" not in dom and 'data-shown="1"' in dom
