"""The PostgreSQL ledger against a real server this run starts itself (tests/pgserver.py): the same
schema as SQLite, exact NUMERIC money, idempotent inserts, migrations once under concurrency."""

from __future__ import annotations

import threading
from decimal import Decimal

import psycopg

from test_ledger import sample_row
from usagefix.ledger import open_store, parse_target, read_rows
from usagefix.ledger.postgres import PostgresStore
from usagefix.ledger.schema import COLUMNS
from usagefix.ledger.writer import LedgerWriter


def test_rows_round_trip_exactly_and_reingest_is_idempotent(pg_url: str) -> None:
    store = open_store(parse_target(pg_url))
    rows = [
        sample_row(1, cost_before=Decimal("-0.3165246"), cost_after=Decimal("0.0000000375")),
        sample_row(2, cost_before=None, cost_after=None, usage_before=None, usage_after=None),
        sample_row(3, cost_after=Decimal("12345678901234567890.123456789012345678")),
    ]
    assert store.write(rows) == 3
    assert store.write(rows[1:]) == 0
    assert store.version() == 1
    store.close()
    back = list(read_rows(pg_url))
    assert back == rows
    assert back[0].cost_before is not None and str(back[0].cost_before) == "-0.3165246"


def test_the_columns_are_those_of_the_sqlite_file_with_native_types(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url) as db:
        types = dict(
            db.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'exchange' "
                "ORDER BY ordinal_position"
            ).fetchall()
        )
    assert list(types) == [c.name for c in COLUMNS]
    assert types["cost_after"] == "numeric" and types["usage_after_json"] == "jsonb"
    assert types["streamed"] == "boolean" and types["ts_start"] == "double precision"


def test_proxies_starting_together_migrate_once(pg_url: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            PostgresStore(pg_url).close()
        except BaseException as e:  # pragma: no cover - the failure this test is about
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)


def test_the_writer_writes_to_postgres(pg_url: str) -> None:
    w = LedgerWriter(lambda: open_store(parse_target(pg_url)), sample_row, batch_rows=10)
    for i in range(35):
        w.submit(i)
    assert w.flush()
    w.close()
    assert sorted(r.id for r in read_rows(pg_url)) == sorted(f"f{i}" for i in range(35))
