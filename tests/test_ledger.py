"""The ledger's pure parts and its SQLite store: rows from records, the schema, round trips."""

from __future__ import annotations

import dataclasses
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagefix import pricing, sessions, transcript
from usagefix.exchange import Costs, ExchangeFacts, ExchangeRow, ResponseFacts, SessionInfo
from usagefix.ledger import Target, open_store, parse_target, read_rows
from usagefix.ledger import pipeline as pipeline_mod
from usagefix.ledger.pipeline import Pipeline
from usagefix.ledger.row import build_row, header, read_record, usage_of
from usagefix.ledger.schema import COLUMNS, MIGRATIONS, SCHEMA_VERSION, insert_sql, row_values
from usagefix.ledger.sqlite import SqliteStore
from usagefix.usage import CanonicalUsage

BEFORE = CanonicalUsage(input_total=1678, cache_read=105530, output_total=370)
AFTER = CanonicalUsage(input_total=107208, cache_read=105530, output_total=370)
RECORD: dict[str, Any] = {
    "schema_version": 1,
    "dialect": "openai_chat",
    "streamed": True,
    "status": "rewritten",
    "final_seen": True,
    "usage_before": BEFORE.model_dump(mode="json"),
    "usage_after": AFTER.model_dump(mode="json"),
    "upstream_usage": {"prompt_tokens": 1678},
    "rules": [{"rule": "R1", "reason": "x", "changes": {}}, {"bad": 1}],
    "anomalies": ["cut_off", 3],
    "error": None,
    "later_schema_key": "ignored",
}


def facts(**kw: Any) -> ExchangeFacts:
    base: dict[str, Any] = dict(
        flow_id="f1",
        ts_start=1.5,
        ts_end=2.25,
        method="POST",
        scheme="https",
        host="api.openai.com",
        port=443,
        path="/v1/chat/completions",
        request_headers=(("Host", "api.openai.com"), ("User-Agent", "OpenAI/Python 1.0")),
        request_body={"model": "gpt-4o", "messages": []},
        status_code=200,
        response_content_type="text/event-stream",
        response_body=b"data: {}\n\n",
    )
    return ExchangeFacts(**(base | kw))


COSTS = Costs(
    before=Decimal("-0.31"),
    after=Decimal("0.0000000375"),
    provider=None,
    match="model",
    model_id="gpt-4o",
    provider_id="openai",
    source="genai-prices 0.2.3",
    context_window=128000,
    context_window_source="genai-prices",
    flags=("cache_ttl_unknown",),
)
SESSION = SessionInfo(key="codex:abc", source="header", client="codex", lane="sub1", parent_lane="main")


def test_a_record_becomes_a_row_with_every_fact() -> None:
    resp = ResponseFacts(model="gpt-4o-2024", response_id="r1")
    row = build_row(facts(), read_record(RECORD), resp, SESSION, COSTS, "gpt-4o", "ignored")
    assert row.dialect == "openai_chat" and row.usagefix_status == "rewritten"
    assert (row.user_agent, row.client, row.upstream_host) == ("OpenAI/Python 1.0", "codex", "api.openai.com")
    local = build_row(
        facts(scheme="http", host="127.0.0.1", port=8317), None, resp, SESSION, COSTS, None, "x"
    )
    assert local.upstream_host == "127.0.0.1:8317"  # two local upstreams stay two
    assert (row.model_requested, row.model_reported, row.response_id) == ("gpt-4o", "gpt-4o-2024", "r1")
    assert row.rules == ("R1",) and row.anomalies == ("cut_off",)
    assert row.usage_before == BEFORE.model_dump() and row.usage_after == AFTER.model_dump()
    assert (row.session_key, row.session_source, row.lane, row.parent_lane) == (
        "codex:abc",
        "header",
        "sub1",
        "main",
    )
    assert (row.cost_before, row.cost_after, row.cost_flags) == (Decimal("-0.31"), COSTS.after, COSTS.flags)
    assert (row.price_provider_id, row.context_window_source) == ("openai", "genai-prices")
    assert row.streamed and row.final_seen and row.error is None


def test_without_a_record_nothing_is_invented() -> None:
    unpriced = dataclasses.replace(COSTS, before=None, after=None, flags=("unpriced",))
    none = SessionInfo(key=None, source=None, client=None)
    row = build_row(facts(status_code=400), None, ResponseFacts(), none, unpriced, None, "anthropic")
    assert row.dialect == "anthropic" and row.usagefix_status == "untouched"
    assert row.usage_before is None and row.usage_after is None and row.cost_after is None
    assert row.streamed and not row.final_seen and row.rules == ()
    failed = facts(status_code=None, response_content_type=None, error="connection refused")
    row = build_row(failed, None, ResponseFacts(), none, unpriced, None, "anthropic")
    assert row.usagefix_status == "error" and row.error == "connection refused" and not row.streamed
    row = build_row(facts(error="client disconnected"), None, ResponseFacts(), none, unpriced, None, "x")
    assert row.usagefix_status == "error"


def test_records_are_read_leniently() -> None:
    assert read_record(None) is None and read_record("x") is None
    rec = read_record({"rules": "no", "usage_before": {"input_total": -1, "output_total": 1}, "streamed": 1})
    assert rec is not None
    assert rec.rules == () and rec.usage_before is None and rec.streamed is None and rec.dialect is None
    assert not rec.final_seen and rec.anomalies == ()
    assert usage_of(AFTER) is AFTER and usage_of([1]) is None
    assert usage_of({"input_total": -1, "output_total": 1}) is None  # I4: not a usage
    # A stream cut off after some snapshots: its usage is unknown, not its last snapshot (R7).
    snap = {"input_total": 107208, "cache_read": 105530, "output_total": 10}
    partial = read_record(
        {"status": "unmeasured", "final_seen": False, "usage_after": snap, "usage_before": snap}
    )
    assert partial is not None and partial.usage_after is None and partial.usage_before is None
    cut = read_record({"status": "unmeasured", "error": "cut"})
    assert cut is not None
    row = build_row(facts(response_content_type=None), cut, ResponseFacts(), SESSION, COSTS, None, "d")
    assert row.error == "cut" and not row.streamed and row.dialect == "d"
    assert header(facts(), "user-agent") == "OpenAI/Python 1.0" and header(facts(), "x-none") is None


def test_the_pipeline_calls_the_stages_in_order_and_survives_their_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    class Tracker(sessions.SessionTracker):
        def step(self, f: ExchangeFacts, dialect: str, response: ResponseFacts) -> SessionInfo:
            calls.append(f"step {f.flow_id} {dialect} {response.model}")
            return SESSION

    def price(f: ExchangeFacts, **kw: Any) -> Costs:
        calls.append(f"price {kw['model']} {kw['usage_after'].input_total}")
        return COSTS

    monkeypatch.setattr(pipeline_mod, "read_response", lambda d, c, b: ResponseFacts(model="m-reported"))
    monkeypatch.setattr(pipeline_mod, "price_exchange", price)
    p = Pipeline(Tracker())
    row = p.row(facts(), RECORD, "anthropic")
    assert calls == ["step f1 openai_chat m-reported", "price m-reported 107208"]
    assert row.cost_after == COSTS.after and row.session_key == "codex:abc"

    def boom(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("bug")

    for name in ("read_response", "model_requested", "price_exchange"):
        monkeypatch.setattr(pipeline_mod, name, boom)
    monkeypatch.setattr(Tracker, "step", boom)
    row = p.row(facts(), None, "anthropic")
    assert row.session_key is None and row.model_requested is None and row.model_reported is None
    assert row.cost_after is None and row.cost_flags == ("unpriced", "pricing_error")


def test_the_default_pipeline_runs_the_owners_modules() -> None:
    row = Pipeline().row(facts(), RECORD, "openai_chat")
    assert row.id == "f1" and row.usage_after == AFTER.model_dump()
    assert (pricing.price_exchange, transcript.read_response) == (
        pipeline_mod.price_exchange,
        pipeline_mod.read_response,
    )


# -- targets and the schema -------------------------------------------------------------------


def test_targets() -> None:
    assert parse_target(None) == parse_target("off") == parse_target(" ") == Target("off")
    assert parse_target("postgres://u@h/db").kind == parse_target("POSTGRESQL://h/db").kind == "postgres"
    assert parse_target("flows/x.sqlite") == Target("sqlite", "flows/x.sqlite")
    assert parse_target(Path("a")) == Target("sqlite", "a")
    with pytest.raises(ValueError, match="mysql:// is not a ledger"):
        parse_target("mysql://h/db")
    assert str(Target("postgres", "postgresql://me:secret@h/db")) == "postgresql://me:***@h/db"
    assert str(Target("off")) == "off" and str(Target("sqlite", "a.db")) == "a.db"
    with pytest.raises(ValueError, match="off"):
        open_store(Target("off"))


def test_the_schema_is_the_same_columns_in_both_engines() -> None:
    sqlite_ddl = MIGRATIONS[0].statements("sqlite")[0]
    pg_ddl = MIGRATIONS[0].statements("postgres")[0]
    assert sqlite_ddl.endswith("STRICT") and "JSONB" in pg_ddl and "NUMERIC" in pg_ddl
    for c in COLUMNS:
        assert f"\n    {c.name} " in sqlite_ddl and f"\n    {c.name} " in pg_ddl
    assert insert_sql("sqlite").count("?") == insert_sql("postgres").count("%s") == len(COLUMNS)
    assert SCHEMA_VERSION == 1


def sample_row(i: int = 0, **kw: Any) -> ExchangeRow:
    resp = ResponseFacts(model="gpt-4o", response_id=f"r{i}")
    base = build_row(
        facts(flow_id=f"f{i}", ts_start=float(i)), read_record(RECORD), resp, SESSION, COSTS, "m", "d"
    )
    return dataclasses.replace(base, **kw)


money = st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=None))


@given(before=money, after=money, ts=st.floats(allow_nan=False, allow_infinity=False))
def test_rows_round_trip_exactly_through_sqlite(
    tmp_path_factory: pytest.TempPathFactory, before: Decimal | None, after: Decimal | None, ts: float
) -> None:
    store = SqliteStore(tmp_path_factory.mktemp("l") / "l.sqlite")
    row = sample_row(cost_before=before, cost_after=after, ts_end=ts, usage_before=None)
    store.write([row])
    (back,) = store.rows()
    store.close()
    assert back == row
    if before is not None:
        assert str(back.cost_before) == str(before)  # the very digits, not just the value


def test_sqlite_store_is_idempotent_wal_strict_and_migrated_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="deep: no such directory"):
        SqliteStore(tmp_path / "deep" / "ledger.sqlite")  # a mistyped directory is not made up
    path = tmp_path / "ledger.sqlite"
    store = SqliteStore(path)
    assert store.write([sample_row(1), sample_row(2)]) == 2
    assert store.write([sample_row(2), sample_row(3)]) == 1
    assert store.version() == 1
    store.close()
    again = SqliteStore(path)  # reopened: the migration does not run twice
    assert [r.id for r in again.rows()] == ["f1", "f2", "f3"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
    assert db.execute(
        "SELECT before_input_total, after_input_total, cost_before FROM exchange LIMIT 1"
    ).fetchone() == (
        1678,
        107208,
        "-0.31",
    )
    values = list(row_values(sample_row(9), "sqlite"))
    values[1] = "not a time"
    with pytest.raises(sqlite3.IntegrityError):  # STRICT: a REAL column takes no text
        db.execute(insert_sql("sqlite"), values)
    db.close()
    again.close()
    assert [r.id for r in read_rows(path)] == ["f1", "f2", "f3"]


def test_a_failed_write_leaves_nothing_half_done(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.sqlite")
    bad = sample_row(2, usage_before={"x": object()})
    with pytest.raises(TypeError):
        store.write([sample_row(1), bad])
    assert list(store.rows()) == []
    store.close()


def test_a_failed_migration_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from usagefix.ledger import schema

    monkeypatch.setattr(schema.Migration, "statements", lambda self, engine: ["CREATE TABLE exchange (x"])
    with pytest.raises(sqlite3.OperationalError):
        SqliteStore(tmp_path / "l.sqlite")
    db = sqlite3.connect(tmp_path / "l.sqlite")
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'schema_version'").fetchall() == []
    db.close()


def test_reading_a_missing_ledger_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.sqlite: no such ledger file"):
        list(read_rows(tmp_path / "nope.sqlite"))


def test_an_unreachable_postgres_raises_at_open() -> None:
    import psycopg

    with pytest.raises(psycopg.OperationalError):
        open_store(parse_target("postgresql://nobody@127.0.0.1:1/none"))
