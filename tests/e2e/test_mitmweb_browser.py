"""End to end, as a person sees it: the README's `mitmweb -n -r FILE -s addon/normalize_usage.py`,
opened in a real (headless) Chromium through the token URL mitmweb logs, a rewritten flow clicked."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import MITMDUMP, ROOT, stop

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium's own connections are refused on a closed
# network, many at a time; root needs --no-sandbox.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_mitmweb_in_a_browser_shows_the_comment_column_and_the_usage_diff(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    log = tmp_path / "mitmweb.log"
    args = [str(MITMDUMP.with_name("mitmweb")), "-n", "-r", "flows/synthetic-founding-bug.mitm"]
    args += ["-s", "addon/normalize_usage.py", "--set", f"confdir={tmp_path / 'conf'}"]
    args += ["--web-port", str(free_port()), "--set", "web_open_browser=false"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"Web server listening at (http://\S+\?token=\w+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(m.group(1))  # the URL a user copies from the log
                # The Comment column is on without the user asking, beside mitmweb's defaults.
                expect(page.locator("th.col-comment")).to_have_text("Comment", timeout=15000)
                expect(page.locator("th.col-path")).to_be_visible()
                rewritten = page.locator("tr", has=page.locator("td.col-comment", has_text="→107208"))
                expect(rewritten.first.locator("td.col-comment")).to_have_text("prompt 1678→107208 · R1")
                page.screenshot(path=str(tmp_path / "flow-list.png"))
                rewritten.first.click()
                page.get_by_text("Response", exact=True).first.click()
                # `auto` picks the usage diff for a rewritten response: the fix, without hunting.
                diff = page.locator("pre, .codeeditor, .contentview").filter(has_text="usage field").first
                expect(diff).to_contain_text("impact (tokens a standard consumer computes")
                expect(diff).to_contain_text("uncached input −103852 → 1678")
                expect(diff).to_contain_text("R1: cache reads were left out of prompt_tokens")
                # The money: what a standard consumer computes from the upstream's block (negative,
                # genai-prices' rates for claude-sonnet-4-5), then the price of the corrected block.
                expect(diff).to_contain_text("cost -$0.2743 → $0.0422 (claude-sonnet-4-5, genai-prices")
                expect(diff).to_contain_text("session: not named by this request")
                expect(page.get_by_text("usage diff", exact=True).first).to_be_visible()
                page.screenshot(path=str(tmp_path / "usage-diff.png"))
                # Anthropic R4: the upstream column says what message_start said, not "—".
                page.locator("tr", has=page.locator("td.col-path", has_text="/v1/messages")).first.click()
                page.get_by_text("Response", exact=True).first.click()
                r4 = page.locator("pre, .codeeditor, .contentview").filter(has_text="usage field").first
                expect(r4).to_contain_text("9511 (start)")
                expect(r4).to_contain_text("carried over from message_start")
                page.screenshot(path=str(tmp_path / "usage-diff-r4.png"))
            finally:
                browser.close()
    finally:
        stop(proc)
    assert (tmp_path / "usage-diff.png").stat().st_size > 0
    print(f"screenshots: {tmp_path}")
