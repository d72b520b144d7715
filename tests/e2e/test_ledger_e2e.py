"""End to end, the SQLite ledger: a real mitmdump writes one row per exchange (complete, cut off,
an HTTP error), `kill -9` leaves a readable file, and importing the flow file gives the same rows."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from upstream import Scenario, Upstream, awkward_cuts

from conftest import ROOT, start_mitmdump, stop
from usagefix.exchange import ExchangeRow
from usagefix.flowfacts import iter_flows
from usagefix.ledger import read_rows

pytestmark = pytest.mark.e2e

GOLDEN = ROOT / "flows" / "golden"
SCRIPT = str(ROOT / "addon" / "normalize_usage.py")
USAGEFIX = Path(sys.executable).with_name("usagefix")
MESSAGES = [{"role": "user", "content": "hi"}]


def rows(ledger: Path) -> list[ExchangeRow]:
    return list(read_rows(ledger)) if ledger.exists() else []


def wait_rows(ledger: Path, count: int, timeout: float = 10.0) -> list[ExchangeRow]:
    deadline = time.monotonic() + timeout
    while True:
        got = rows(ledger)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


CLIENTS: list[openai.OpenAI] = []


def client(url: str) -> openai.OpenAI:
    c = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0, timeout=20)
    CLIENTS.append(c)
    return c


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def import_into(ledger: Path | str, *paths: Path) -> str:
    p = subprocess.run(
        [str(USAGEFIX), "ledger", "import", *map(str, paths), "--ledger", str(ledger)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return p.stderr


def test_every_exchange_becomes_one_row_and_the_flow_file_rebuilds_the_same_rows(
    upstream: Upstream, tmp_path: Path
) -> None:
    ledger, flows = tmp_path / "ledger.sqlite", tmp_path / "flows.mitm"
    proc, port = start_mitmdump(
        [
            "--mode",
            f"reverse:{upstream.url}",
            "-s",
            SCRIPT,
            "-w",
            str(flows),
            "--set",
            f"usage_ledger={ledger}",
        ],
        tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        upstream.scenario = Scenario(
            body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
        )
        client(url).chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
        body = (GOLDEN / "openai_chat/fix-founding-bug-stream.upstream.sse").read_bytes()
        upstream.scenario = Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body))
        stream = client(url).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        assert [c for c in stream]
        # Cut off mid-stream by the upstream.
        upstream.scenario = Scenario(
            body=body, content_type="text/event-stream", chunks=awkward_cuts(body), cut_after=12
        )
        with httpx.Client(timeout=20) as c, pytest.raises(httpx.RemoteProtocolError):
            with c.stream("POST", url + "/v1/chat/completions", json={"model": "m", "stream": True}) as r:
                for _ in r.iter_raw():
                    pass
        upstream.scenario = Scenario(body=b'{"error":{"message":"no"}}', status=400)
        with pytest.raises(openai.BadRequestError):
            client(url).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        with httpx.Client(timeout=20) as c:  # not an LLM exchange: no row
            c.get(url + "/health")
        live = wait_rows(ledger, 4)
    finally:
        stop(proc)
    assert len(live) == 4, (live, (tmp_path / "mitmdump.log").read_text())
    by_status = {r.usagefix_status: r for r in live}
    assert set(by_status) == {"rewritten", "unmeasured", "http_error"} and len({r.id for r in live}) == 4
    json_row, stream_row = sorted(
        (r for r in live if r.usagefix_status == "rewritten"), key=lambda r: r.ts_start
    )
    assert not json_row.streamed and stream_row.streamed and json_row.model_requested == "claude-sonnet-4-5"
    assert json_row.usage_before is not None and json_row.usage_before["input_total"] == 1678
    assert json_row.usage_after is not None and json_row.usage_after["input_total"] == 107208
    assert json_row.user_agent is not None and json_row.user_agent.startswith("OpenAI/Python")
    assert json_row.upstream_host == f"127.0.0.1:{upstream.server_address[1]}"  # off the default port
    assert json_row.path == "/v1/chat/completions"
    cut = by_status["unmeasured"]
    assert cut.streamed and not cut.final_seen and "cut_off" in cut.anomalies and cut.usage_after is None
    assert cut.error is not None
    assert by_status["http_error"].status_code == 400 and by_status["http_error"].usage_before is None
    assert all(r.cost_after is None or r.price_source for r in live)  # unpriced is None, never 0
    # The flow file is the source of truth: importing it gives the very same rows, twice over.
    rebuilt = tmp_path / "rebuilt.sqlite"
    assert "4 exchanges read, 4 new rows" in import_into(rebuilt, flows)
    assert "4 exchanges read, 0 new rows" in import_into(rebuilt, tmp_path)  # a directory of *.mitm
    assert sorted(rows(rebuilt), key=lambda r: r.id) == sorted(live, key=lambda r: r.id)
    # Importing into the live ledger adds nothing.
    assert "0 new rows" in import_into(ledger, flows)


def test_kill_9_loses_at_most_the_rows_in_flight_and_leaves_a_readable_ledger(
    upstream: Upstream, tmp_path: Path
) -> None:
    ledger, flows = tmp_path / "ledger.sqlite", tmp_path / "flows.mitm"
    proc, port = start_mitmdump(
        [
            "--mode",
            f"reverse:{upstream.url}",
            "-s",
            SCRIPT,
            "-w",
            str(flows),
            "--set",
            f"usage_ledger={ledger}",
        ],
        tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    upstream.scenario = Scenario(body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes())
    oai = client(url)
    try:
        for _ in range(30):
            oai.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        assert len(wait_rows(ledger, 30)) == 30
        for _ in range(20):  # then killed while these are in flight
            oai.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            stop(proc)
    db = sqlite3.connect(ledger)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    survived = rows(ledger)
    assert 30 <= len(survived) <= 50
    assert all(r.usagefix_status == "rewritten" and r.usage_after is not None for r in survived)
    # What the kill lost, the flow file still holds.
    import_into(ledger, flows)
    after = rows(ledger)
    in_file = [f.id for f in iter_flows([flows])]
    assert {r.id for r in survived} <= {r.id for r in after} == set(in_file)


def test_scripts_run_writes_the_ledger_and_a_ledger_of_the_callers_replaces_it(
    upstream: Upstream, tmp_path: Path
) -> None:
    ledger = tmp_path / "mine.sqlite"
    log = tmp_path / "run.log"
    args = [
        str(ROOT / "scripts" / "run"),
        "--upstream",
        upstream.url,
        "--set",
        f"confdir={tmp_path / 'conf'}",
    ]
    args += ["-p", "0", "-w", str(tmp_path / "flows.mitm"), "--set", f"usage_ledger={ledger}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120  # a first run may set up .venv
        while not (m := re.search(r"listening at 127\.0\.0\.1:(\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        upstream.scenario = Scenario(
            body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
        )
        client(f"http://127.0.0.1:{m.group(1)}").chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        got = wait_rows(ledger, 1)
    finally:
        stop(proc)
    assert "set 2 times" not in log.read_text()
    assert [r.usagefix_status for r in got] == ["rewritten"]
    assert (
        '--set "usage_ledger=$ROOT/flows/captures/usagefix.sqlite"' in (ROOT / "scripts" / "run").read_text()
    )


def test_a_failed_connection_to_the_upstream_is_a_row_too(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ledger = tmp_path / "ledger.sqlite"
    proc, port = start_mitmdump(
        # lazy: the request is read before the upstream is dialled, so there is a flow to fail
        ["--mode", f"reverse:http://127.0.0.1:{dead}", "--set", "connection_strategy=lazy"]
        + ["-s", SCRIPT, "--set", f"usage_ledger={ledger}"],
        tmp_path,
    )
    try:
        with httpx.Client(timeout=20) as c:
            r = c.post(f"http://127.0.0.1:{port}/v1/messages", json={"model": "claude-sonnet-4-5"})
        assert r.status_code == 502
        (row,) = wait_rows(ledger, 1)
    finally:
        stop(proc)
    assert (row.usagefix_status, row.dialect, row.model_requested) == (
        "error",
        "anthropic",
        "claude-sonnet-4-5",
    )
    assert row.status_code is None and row.error and row.usage_after is None and row.cost_after is None
