"""End to end, the PostgreSQL ledger: two mitmdumps write one database at once; a database that is
down when the proxy starts gets its rows once it is up, up to the spool's bound, the rest counted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_ledger_e2e import GOLDEN, MESSAGES, SCRIPT, client, close_clients, import_into
from upstream import Scenario, Upstream, awkward_cuts

from conftest import start_mitmdump, stop
from pgserver import PostgresServer, Unavailable
from usagefix.exchange import ExchangeRow
from usagefix.ledger import read_rows

pytestmark = pytest.mark.e2e
__all__ = ["close_clients"]  # the fixture that closes the clients made here


def pg_rows(url: str) -> list[ExchangeRow]:
    try:
        return list(read_rows(url))
    except Exception:  # not reachable or not created yet
        return []


def wait_pg_rows(url: str, count: int, timeout: float = 15.0) -> list[ExchangeRow]:
    deadline = time.monotonic() + timeout
    while True:
        got = pg_rows(url)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def proxy_args(upstream: Upstream, flows: Path, ledger: str, *more: str) -> list[str]:
    return [
        "--mode",
        f"reverse:{upstream.url}",
        "-s",
        SCRIPT,
        "-w",
        str(flows),
        "--set",
        f"usage_ledger={ledger}",
        *more,
    ]


def test_two_proxies_write_one_postgres_ledger_at_once(
    upstream: Upstream, pg_url: str, tmp_path: Path
) -> None:
    body = (GOLDEN / "openai_chat/fix-founding-bug-stream.upstream.sse").read_bytes()
    upstream.scenario = Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body))
    procs, urls = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        proc, port = start_mitmdump(
            proxy_args(upstream, tmp_path / name / "flows.mitm", pg_url), tmp_path / name
        )
        procs.append(proc)
        urls.append(f"http://127.0.0.1:{port}")
    errors: list[BaseException] = []

    def traffic(url: str) -> None:
        try:
            oai = client(url)
            for _ in range(15):
                assert list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=traffic, args=(u,)) for u in urls for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = wait_pg_rows(pg_url, 60)
    finally:
        for p in procs:
            stop(p)
    assert errors == []
    assert len(got) == 60 and len({r.id for r in got}) == 60
    assert all(r.usagefix_status == "rewritten" and r.streamed for r in got)
    assert "0 new rows" in import_into(pg_url, tmp_path / "a", tmp_path / "b")


def test_a_database_down_at_start_gets_its_rows_when_it_is_back_up_to_the_spool_bound(
    upstream: Upstream, tmp_path: Path
) -> None:
    try:
        server = PostgresServer()  # a server of its own: this test stops and starts it
    except Unavailable as e:
        pytest.skip(f"no PostgreSQL server can start here: {e}")
    try:
        flows = tmp_path / "flows.mitm"
        proc, port = start_mitmdump(
            proxy_args(upstream, flows, server.url, "--set", "usage_ledger_spool_rows=5"), tmp_path
        )
        url = f"http://127.0.0.1:{port}"
        try:
            upstream.scenario = Scenario(
                body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
            )
            oai = client(url)
            for _ in range(8):  # the proxy keeps proxying with the database down
                r = oai.chat.completions.create(model="m", messages=MESSAGES)
                assert r.usage is not None and r.usage.prompt_tokens == 107208
            time.sleep(1.0)
            server.start()
            got = wait_pg_rows(server.url, 5)
            time.sleep(1.0)
            got = pg_rows(server.url)
        finally:
            stop(proc)
        log = (tmp_path / "mitmdump.log").read_text()
        assert len(got) == 5, log
        assert "unreachable" in log and "rows wait in the spool (up to 5)" in log
        assert "the spool is full (5 rows waiting for the database): 1 row(s) dropped, 1 in all" in log
        assert "usagefix ledger: 5 rows written, 3 dropped, 0 failed" in log  # counted, said at the end
        assert "reachable again; writing 5 spooled rows" in log
        # What was dropped, the flow file still holds.
        assert "8 exchanges read, 3 new rows" in import_into(server.url, flows)
    finally:
        server.destroy()
