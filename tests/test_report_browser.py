"""The HTML report in a real browser (Debian's headless Chromium through playwright): the charts
draw, the totals are there, and nothing is fetched from the network."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_reporting import ALL
from usagefix.reporting import build_report, render_html

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, on a machine with no network: no sandbox, and no background connections to refuse.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no Debian chromium (.ci/run installs it)"
)


def test_the_report_opens_in_chromium_with_its_charts_and_totals(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(build_report(ALL)), encoding="utf-8")
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            bars = page.locator("#cost-chart rect.bar-after[data-usd]")
            assert bars.count() == 2  # the unpriced session draws no bar
            box = page.locator("#cost-chart").bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 200
            assert page.locator("svg.context-chart").count() == 3
            assert page.locator("svg.context-chart polyline.ctx").first.get_attribute("points")
            totals = page.locator("#totals").inner_text()
            assert "Steps\n7" in totals.replace("\t", "\n") and "unpriced" in totals
            assert page.locator("#sessions tfoot").inner_text().startswith("Total")
            # Sorting by steps puts the longest session last, then first.
            head = page.locator("#sessions thead th", has_text="Steps")
            head.click()
            assert page.locator("#sessions tbody tr").last.inner_text().startswith("claude:S1")
            head.click()
            assert page.locator("#sessions tbody tr").first.inner_text().startswith("claude:S1")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [page_file.as_uri()]  # the file itself, nothing else
    assert (tmp_path / "report.png").stat().st_size > 10_000
