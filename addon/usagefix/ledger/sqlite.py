"""The embedded ledger: one SQLite file (stdlib `sqlite3`), WAL, shared by any number of processes.

WAL lets readers (`usagefix report`) read while a proxy writes; `busy_timeout` makes several
writers (two mitmdumps on one file) wait their turn instead of failing; each batch is one short
`BEGIN IMMEDIATE` transaction, so a `kill -9` loses at most the batch being written and leaves the
file consistent.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from usagefix.exchange import ExchangeRow
from usagefix.ledger.schema import (
    MIGRATIONS,
    VERSION_TABLE,
    insert_sql,
    row_from_values,
    row_values,
    select_sql,
)

__all__ = ["SqliteStore"]

BUSY_TIMEOUT_MS = 10_000


class SqliteStore:
    """A ledger file, created and migrated on open."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such ledger file")
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            # A directory is never made up: a mistyped path is refused, not a ledger elsewhere.
            if not path.parent.is_dir():
                raise FileNotFoundError(f"{path.parent}: no such directory")
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute(
                    "PRAGMA synchronous = NORMAL"
                )  # durable at each checkpoint; WAL keeps it sound
                self._migrate()
        except BaseException:
            self.db.close()
            raise

    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(VERSION_TABLE["sqlite"])
            applied = {v for (v,) in self.db.execute("SELECT version FROM schema_version")}
            for m in MIGRATIONS:
                if m.version in applied:
                    continue
                for statement in m.statements("sqlite"):
                    self.db.execute(statement)
                self.db.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)", (m.version, m.description, time.time())
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def version(self) -> int:
        (v,) = self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(v)

    def write(self, rows: Sequence[ExchangeRow]) -> int:
        """Insert the rows in one transaction; those whose id is there already are left alone.
        Returns how many were new."""
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(insert_sql("sqlite"), [row_values(r, "sqlite") for r in rows])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.db.total_changes - before

    def rows(self) -> Iterator[ExchangeRow]:
        for values in self.db.execute(select_sql()):
            yield row_from_values(tuple(values))

    def close(self) -> None:
        self.db.close()
