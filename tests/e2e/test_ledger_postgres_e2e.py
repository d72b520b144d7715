"""End to end, the PostgreSQL ledger: two mitmdumps write one database at once; a database that is
down when the proxy starts gets its rows once it is up, up to the spool's bound, the rest counted."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from test_ledger_e2e import GOLDEN, MESSAGES, SCRIPT, client, close_clients, import_into
from upstream import Scenario, Upstream, awkward_cuts

from conftest import start_mitmdump, stop
from pgserver import PostgresServer, Unavailable
from usagefix.exchange import ExchangeRow
from usagefix.flowfacts import iter_flows
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


def test_kill_9_mid_stream_loses_no_committed_postgres_row_and_the_import_adds_only_the_rest(
    upstream: Upstream, pg_server: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    """The PostgreSQL twin of the SQLite ledger's kill -9 test: N exchanges committed, more
    streaming, SIGKILL while streams are in flight; the rows committed before the kill are all
    there, whole and once; the flow file reads to its end; importing it adds only what the ledger
    had not committed, and a second import adds nothing."""
    flows = tmp_path / "flows.mitm"
    proc, port = start_mitmdump(proxy_args(upstream, flows, pg_url), tmp_path)
    url = f"http://127.0.0.1:{port}"
    json_body = (GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
    sse = (GOLDEN / "openai_chat/fix-founding-bug-stream.upstream.sse").read_bytes()
    killed, errors = threading.Event(), list[BaseException]()
    mid = [False, False]  # each client thread: has the first chunk of a stream, not yet its end
    finished = [0, 0]

    def traffic(i: int) -> None:
        oai = client(url)
        while not killed.is_set():
            try:
                for _ in oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
                    mid[i] = True
                mid[i] = False
                finished[i] += 1
            except Exception as e:  # the kill cuts the stream: an error only before it
                if not killed.is_set():
                    errors.append(e)
                return

    try:
        oai = client(url)
        upstream.scenario = Scenario(body=json_body)
        for _ in range(10):
            r = oai.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
            assert r.usage is not None and r.usage.prompt_tokens == 107208
        upstream.scenario = Scenario(body=sse, content_type="text/event-stream", chunks=awkward_cuts(sse))
        for _ in range(10):
            assert list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
        assert len(wait_pg_rows(pg_url, 20)) == 20  # N exchanges, committed
        # More traffic: slow streams on two connections. Once more rows are committed, mitmdump is
        # killed the moment it has saved a flow (its row still on its way to the database) while
        # the other connection's stream is mid-way.
        upstream.scenario = Scenario(
            body=sse, content_type="text/event-stream", chunks=awkward_cuts(sse), delay=0.2
        )
        threads = [threading.Thread(target=traffic, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(pg_rows(pg_url)) < 24 and time.monotonic() < deadline:
            time.sleep(0.1)
        size = grown = flows.stat().st_size
        while time.monotonic() < deadline:
            grown = flows.stat().st_size
            if grown > size and any(mid):
                break
            size = grown
            time.sleep(0.005)
        assert grown > size and any(mid), "no flow was saved while a stream was in flight"
        committed = {r.id: r for r in pg_rows(pg_url)}
        requested = len(upstream.requests)
        killed.set()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for t in threads:
            t.join(30)
    finally:
        killed.set()
        if proc.poll() is None:
            stop(proc)
    assert errors == []
    assert len(committed) >= 24
    # Every row committed before the kill is still there, the same, once.
    survived = list(read_rows(pg_url))
    ids = [r.id for r in survived]
    assert len(ids) == len(set(ids))
    by_id = {r.id: r for r in survived}
    assert all(by_id.get(i) == row for i, row in committed.items())
    for r in survived:  # whole: the founding bug fixed, the usage both ways, exact or no money
        assert (r.usagefix_status, r.status_code, r.path) == ("rewritten", 200, "/v1/chat/completions")
        assert r.usage_before is not None and r.usage_before["input_total"] == 1678
        assert r.usage_after is not None and r.usage_after["input_total"] == 107208
        assert r.final_seen and r.streamed == (r.model_requested == "gpt-4o")
        assert r.cost_after is None or r.price_source
    # The flow file reads to its end: every finished exchange, not the one cut by the kill.
    saved = list(iter_flows([flows]))
    assert all(f.metadata["usagefix"]["status"] == "rewritten" for f in saved)
    assert sum(finished) + 20 - 2 <= len(saved) <= requested - 1
    in_file = {f.id for f in saved}
    assert set(ids) <= in_file
    # Importing the flow file adds exactly the rows the ledger had not committed, no duplicate.
    missing = len(in_file - set(ids))
    assert f"{len(saved)} exchanges read, {missing} new rows" in import_into(pg_url, flows)
    after = list(read_rows(pg_url))
    assert len(after) == len({r.id for r in after}) == len(in_file)
    assert {r.id for r in after} == in_file
    assert all({r.id: r for r in after}[i] == row for i, row in by_id.items())  # left as they were
    assert f"{len(saved)} exchanges read, 0 new rows" in import_into(pg_url, flows)
    assert len(list(read_rows(pg_url))) == len(in_file)
    # And the rows the proxy committed are the very rows the flow file gives a fresh ledger.
    rebuilt = pg_server.create_database()
    import_into(rebuilt, flows)
    assert {r.id: r for r in read_rows(rebuilt)} == {r.id: r for r in after}
