"""The scale-out ledger: one PostgreSQL database (psycopg 3) shared by several proxies.

The same columns as the SQLite file (`usagefix.ledger.schema`), NUMERIC money and JSONB. Migrations
run under an advisory lock, so two proxies starting together migrate once. Proven by the tests in
tests/test_ledger_postgres.py against a real server; outside the pure-core coverage gate, as a
machine without PostgreSQL cannot run them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import psycopg

from usagefix.exchange import ExchangeRow
from usagefix.ledger.schema import (
    MIGRATIONS,
    VERSION_TABLE,
    insert_sql,
    row_from_values,
    row_values,
    select_sql,
)

__all__ = ["PostgresStore"]

CONNECT_TIMEOUT_S = 3
_MIGRATION_LOCK = 0x75736167  # "usag": one advisory lock id for the ledger's migrations


class PostgresStore:
    """A connection to a ledger database, migrated on open. Raises `psycopg.Error` if unreachable."""

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.db = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, application_name="usagefix")
        if not readonly:
            self._migrate()

    def _migrate(self) -> None:
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self.db.execute(VERSION_TABLE["postgres"])
            applied = {v for (v,) in self.db.execute("SELECT version FROM schema_version")}
            for m in MIGRATIONS:
                if m.version in applied:
                    continue
                for statement in m.statements("postgres"):
                    self.db.execute(statement)
                self.db.execute(
                    "INSERT INTO schema_version VALUES (%s, %s, %s)", (m.version, m.description, time.time())
                )

    def version(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        self.db.commit()
        return int(row[0]) if row else 0

    def write(self, rows: Sequence[ExchangeRow]) -> int:
        with self.db.transaction(), self.db.cursor() as cur:
            cur.executemany(insert_sql("postgres"), [row_values(r, "postgres") for r in rows])
            return max(cur.rowcount, 0)

    def rows(self) -> Iterator[ExchangeRow]:
        with self.db.cursor() as cur:
            cur.execute(select_sql())
            for values in cur:
                yield row_from_values(tuple(values))
        self.db.commit()

    def close(self) -> None:
        self.db.close()
