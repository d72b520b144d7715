"""End to end: a bad `usage_prices` file stops a real mitmdump with one line; a good one starts it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_options_e2e import ADDON, FOUNDING, assert_stopped_with, mitmdump_args, run_until_exit
from upstream import Scenario, Upstream

from conftest import MITMDUMP, start_mitmdump, stop

pytestmark = pytest.mark.e2e

# The fourth line names a provider genai-prices does not have (`anthropic` is the real one).
MISSPELLED_PROVIDER = """\
[[price]]
model = "house-sonnet"
price_as = "claude-sonnet-4-5"
provider = "antropic"
"""


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read price overrides {path}: No such file or directory"),
        (
            MISSPELLED_PROVIDER.encode(),
            "{path}: price.0.provider (line 4): Value error, 'antropic' is not a genai-prices provider",
        ),
        (b'[[price]]\nmodel = "x"\ncontext_windw = 5\n', "{path}: price.0.context_windw (line 3): Extra inputs are not permitted"),
    ],
    ids=["missing", "unknown-provider", "bad-key"],
)  # fmt: skip
def test_a_bad_price_file_stops_mitmdump_with_one_line(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "prices.toml"
    if content is not None:
        path.write_bytes(content)
    rc, output = run_until_exit([str(MITMDUMP), *mitmdump_args(tmp_path, f"usage_prices={path}")])
    assert_stopped_with(rc, output, "usagefix: usage_prices: " + problem.format(path=path))


def test_a_good_price_file_starts_mitmdump(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(MISSPELLED_PROVIDER.replace("antropic", "anthropic"))
    up = Upstream()
    up.scenario = Scenario(body=FOUNDING.read_bytes())
    try:
        args = ["--mode", f"reverse:{up.url}", "-s", ADDON, "--set", f"usage_prices={path}"]
        proc, port = start_mitmdump(args, tmp_path)
        try:
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "house-sonnet", "messages": [{"role": "user", "content": "hi"}]},
                timeout=20,
            )
        finally:
            stop(proc)
    finally:
        up.close()
    assert r.json()["usage"]["prompt_tokens"] == 107208  # the addon is on
    assert "Traceback" not in (tmp_path / "mitmdump.log").read_text()
