"""The ledger's schema, the same columns in SQLite and PostgreSQL, and rows to and from them. Pure.

One table, `exchange`: one row per LLM exchange, keyed by mitmproxy's flow id, so re-ingesting a
flow file is idempotent (`INSERT … ON CONFLICT (id) DO NOTHING`). A `schema_version` table records
the numbered migrations applied; each runs once, in order, in one transaction.

Money is stored exactly, as decimals: TEXT holding the `Decimal`'s own string in SQLite, NUMERIC
(arbitrary precision) in PostgreSQL. Not integer nano-USD: genai-prices quotes rates per million
tokens with more digits than that allows (a $0.0375/Mtok cache read is 37.5 nano-USD a token), so
nano-USD would round real costs. A NULL is "unpriced", never 0.

Usage before and after is stored twice: canonical columns (`before_input_total`, …) to query, and
the whole `CanonicalUsage` dump as JSON, which is what rows are read back from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from usagefix.exchange import ExchangeRow

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Column",
    "Engine",
    "Migration",
    "insert_sql",
    "row_from_values",
    "row_values",
    "select_sql",
]

Engine = Literal["sqlite", "postgres"]
Kind = Literal["text", "int", "real", "bool", "money", "json"]

_TYPES: dict[Kind, dict[Engine, str]] = {
    "text": {"sqlite": "TEXT", "postgres": "TEXT"},
    "int": {"sqlite": "INTEGER", "postgres": "BIGINT"},
    "real": {"sqlite": "REAL", "postgres": "DOUBLE PRECISION"},
    "bool": {"sqlite": "INTEGER", "postgres": "BOOLEAN"},
    "money": {"sqlite": "TEXT", "postgres": "NUMERIC"},
    "json": {"sqlite": "TEXT", "postgres": "JSONB"},
}

USAGE_FIELDS = (
    "input_total",
    "cache_read",
    "cache_write",
    "cache_write_5m",
    "cache_write_1h",
    "output_total",
    "reasoning",
)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    required: bool = False

    def ddl(self, engine: Engine) -> str:
        sql = f"{self.name} {_TYPES[self.kind][engine]}"
        if self.name == "id":
            return sql + " PRIMARY KEY"
        if self.required:
            sql += " NOT NULL"
        if self.kind == "bool" and engine == "sqlite":
            sql += f" CHECK ({self.name} IN (0, 1))"
        return sql


def _c(name: str, kind: Kind = "text", required: bool = False) -> Column:
    return Column(name, kind, required)


COLUMNS: tuple[Column, ...] = (
    _c("id", required=True),
    _c("ts_start", "real", True),
    _c("ts_end", "real"),
    _c("client"),
    _c("user_agent"),
    _c("upstream_host", required=True),
    _c("path", required=True),
    _c("dialect", required=True),
    _c("model_requested"),
    _c("model_reported"),
    _c("status_code", "int"),
    _c("streamed", "bool", True),
    _c("final_seen", "bool", True),
    _c("usagefix_status", required=True),
    _c("error"),
    _c("rules_json", "json", True),
    _c("anomalies_json", "json", True),
    *(_c(f"before_{f}", "int") for f in USAGE_FIELDS),
    *(_c(f"after_{f}", "int") for f in USAGE_FIELDS),
    _c("usage_before_json", "json"),
    _c("usage_after_json", "json"),
    _c("session_key"),
    _c("session_source"),
    _c("lane", required=True),
    _c("parent_lane"),
    _c("parent_exchange_id"),
    _c("response_id"),
    _c("previous_response_id"),
    _c("cost_before", "money"),
    _c("cost_after", "money"),
    _c("cost_provider", "money"),
    _c("cost_flags_json", "json", True),
    _c("price_match"),
    _c("price_model_id"),
    _c("price_provider_id"),
    _c("price_source"),
    _c("context_window", "int"),
    _c("context_window_source"),
)
NAMES = tuple(c.name for c in COLUMNS)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str

    def statements(self, engine: Engine) -> list[str]:
        # One migration so far; the next is a new entry in MIGRATIONS with its own statements.
        strict = " STRICT" if engine == "sqlite" else ""
        body = ",\n    ".join(c.ddl(engine) for c in COLUMNS)
        return [
            f"CREATE TABLE IF NOT EXISTS exchange (\n    {body}\n){strict}",
            "CREATE INDEX IF NOT EXISTS exchange_ts_start ON exchange (ts_start)",
            "CREATE INDEX IF NOT EXISTS exchange_session ON exchange (session_key, lane, ts_end)",
        ]


MIGRATIONS: tuple[Migration, ...] = (Migration(1, "the exchange table: one row per LLM exchange"),)
SCHEMA_VERSION = MIGRATIONS[-1].version

VERSION_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL) STRICT",
    "postgres": "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)",
}


def insert_sql(engine: Engine) -> str:
    """One row's insert, a no-op for an id already there (re-ingest is idempotent)."""
    mark = "?" if engine == "sqlite" else "%s"
    values = ", ".join(
        f"{mark}::jsonb" if c.kind == "json" and engine == "postgres" else mark for c in COLUMNS
    )
    return f"INSERT INTO exchange ({', '.join(NAMES)}) VALUES ({values}) ON CONFLICT (id) DO NOTHING"


def select_sql() -> str:
    return f"SELECT {', '.join(NAMES)} FROM exchange ORDER BY ts_start, id"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _money(value: Decimal | None, engine: Engine) -> str | Decimal | None:
    if value is None or engine == "postgres":
        return value
    return str(value)


def _usage_columns(usage: Mapping[str, Any] | None) -> list[Any]:
    return [None if usage is None else usage.get(f) for f in USAGE_FIELDS]


def row_values(row: ExchangeRow, engine: Engine) -> tuple[Any, ...]:
    """The row's values in `COLUMNS` order, typed for the engine."""
    flag: Any = int if engine == "sqlite" else bool
    v: dict[str, Any] = {
        "id": row.id,
        "ts_start": row.ts_start,
        "ts_end": row.ts_end,
        "client": row.client,
        "user_agent": row.user_agent,
        "upstream_host": row.upstream_host,
        "path": row.path,
        "dialect": row.dialect,
        "model_requested": row.model_requested,
        "model_reported": row.model_reported,
        "status_code": row.status_code,
        "streamed": flag(row.streamed),
        "final_seen": flag(row.final_seen),
        "usagefix_status": row.usagefix_status,
        "error": row.error,
        "rules_json": _json(list(row.rules)),
        "anomalies_json": _json(list(row.anomalies)),
        "usage_before_json": None if row.usage_before is None else _json(row.usage_before),
        "usage_after_json": None if row.usage_after is None else _json(row.usage_after),
        "session_key": row.session_key,
        "session_source": row.session_source,
        "lane": row.lane,
        "parent_lane": row.parent_lane,
        "parent_exchange_id": row.parent_exchange_id,
        "response_id": row.response_id,
        "previous_response_id": row.previous_response_id,
        "cost_before": _money(row.cost_before, engine),
        "cost_after": _money(row.cost_after, engine),
        "cost_provider": _money(row.cost_provider, engine),
        "cost_flags_json": _json(list(row.cost_flags)),
        "price_match": row.price_match,
        "price_model_id": row.price_model_id,
        "price_provider_id": row.price_provider_id,
        "price_source": row.price_source,
        "context_window": row.context_window,
        "context_window_source": row.context_window_source,
    }
    for prefix, usage in (("before", row.usage_before), ("after", row.usage_after)):
        v.update(zip((f"{prefix}_{f}" for f in USAGE_FIELDS), _usage_columns(usage), strict=True))
    return tuple(v[n] for n in NAMES)


def _parsed(value: Any) -> Any:
    """A JSON column's value: text in SQLite, already parsed by psycopg from JSONB."""
    return json.loads(value) if isinstance(value, str) else value


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value) if isinstance(value, str) else value


def row_from_values(values: tuple[Any, ...]) -> ExchangeRow:
    """A row read back (`select_sql` order), exactly as it was written."""
    v = dict(zip(NAMES, values, strict=True))
    return ExchangeRow(
        id=v["id"],
        ts_start=v["ts_start"],
        ts_end=v["ts_end"],
        client=v["client"],
        user_agent=v["user_agent"],
        upstream_host=v["upstream_host"],
        path=v["path"],
        dialect=v["dialect"],
        model_requested=v["model_requested"],
        model_reported=v["model_reported"],
        status_code=v["status_code"],
        streamed=bool(v["streamed"]),
        final_seen=bool(v["final_seen"]),
        usagefix_status=v["usagefix_status"],
        rules=tuple(_parsed(v["rules_json"])),
        anomalies=tuple(_parsed(v["anomalies_json"])),
        usage_before=_parsed(v["usage_before_json"]),
        usage_after=_parsed(v["usage_after_json"]),
        session_key=v["session_key"],
        session_source=v["session_source"],
        lane=v["lane"],
        parent_lane=v["parent_lane"],
        parent_exchange_id=v["parent_exchange_id"],
        response_id=v["response_id"],
        previous_response_id=v["previous_response_id"],
        cost_before=_decimal(v["cost_before"]),
        cost_after=_decimal(v["cost_after"]),
        cost_provider=_decimal(v["cost_provider"]),
        price_match=v["price_match"],
        price_model_id=v["price_model_id"],
        price_source=v["price_source"],
        context_window=v["context_window"],
        cost_flags=tuple(_parsed(v["cost_flags_json"])),
        error=v["error"],
        context_window_source=v["context_window_source"],
        price_provider_id=v["price_provider_id"],
    )
