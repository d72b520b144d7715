"""The usage ledger: one row per LLM exchange, in SQLite (default) or PostgreSQL.

`parse_target` reads the `usage_ledger` option (a path, a `postgresql://` URL, or `off`);
`open_store` opens it (created and migrated); `read_rows` reads every row back, for reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from usagefix.exchange import ExchangeRow
from usagefix.userpath import user_path

__all__ = ["Store", "Target", "open_store", "parse_target", "read_rows"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Store(Protocol):
    def write(self, rows: Sequence[ExchangeRow]) -> int: ...
    def rows(self) -> Iterator[ExchangeRow]: ...
    def version(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    kind: Literal["off", "sqlite", "postgres"]
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "postgres":  # never a password in a log line
            return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", self.value)
        return self.value or "off"


def parse_target(text: str | Path | None) -> Target:
    """What `usage_ledger` names. Raises `ValueError` for a URL of another scheme."""
    if isinstance(text, Path):
        return Target("sqlite", str(text))
    if text is None or text.strip() in ("", "off"):
        return Target("off")
    if text.lower().startswith(POSTGRES_SCHEMES):
        return Target("postgres", text)
    if _URL.match(text):
        raise ValueError(f"{text.split('://')[0]}:// is not a ledger's scheme")
    return Target("sqlite", text)


def open_store(target: Target, *, readonly: bool = False) -> Store:
    """Open (create and migrate, unless `readonly`) the ledger. Raises when it is unreachable."""
    if target.kind == "postgres":
        from usagefix.ledger.postgres import PostgresStore  # psycopg only when asked for

        return PostgresStore(target.value, readonly=readonly)
    if target.kind == "sqlite":
        from usagefix.ledger.sqlite import SqliteStore

        return SqliteStore(user_path(target.value), readonly=readonly)
    raise ValueError("the ledger is off")


def read_rows(target: str | Path) -> Iterator[ExchangeRow]:
    """Every row of a ledger (a file path or a postgresql:// URL), oldest first."""
    store = open_store(parse_target(target), readonly=True)
    try:
        yield from store.rows()
    finally:
        store.close()
