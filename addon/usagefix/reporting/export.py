"""A report as JSON (one object) and the exchanges as CSV (one row each). Pure.

Money is a decimal string (exact, never a float) or null when unpriced; an unknown count is null
(JSON) or an empty cell (CSV), never 0. A token sum over only some of a group's steps is kept in
`tokens` (a lower bound) and named beside it in `tokens_partial`: per kind, the steps that
measured it and the steps in the group, and why the others are not in it (`unreported_steps`:
usage without that kind; `unmeasured_steps`: no usage at all). A kind every step measured, or
none did (null in `tokens`), is not listed. CSV headers use the OpenTelemetry GenAI attribute names
where one exists (`gen_ai.usage.input_tokens` is inclusive of cached input, as usagefix's
`input`), and `usagefix.*` names for the rest.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from usagefix.exchange import ExchangeRow
from usagefix.reporting.aggregate import Group, Report

__all__ = ["CSV_COLUMNS", "money", "report_json", "rows_csv", "tokens_partial"]


def money(value: Decimal | None) -> str | None:
    """An exact decimal string (`-0.2948`, never `1E-7`), or None."""
    return None if value is None else format(value, "f")


def _cost(group: Group) -> dict[str, str | None]:
    return {
        "before": money(group.cost_before),
        "after": money(group.cost_after),
        "provider": money(group.cost_provider),
    }


def tokens_partial(group: Group) -> dict[str, dict[str, int]]:
    """`{kind: {measured_steps, steps, unreported_steps, unmeasured_steps}}` for each partial sum."""
    return {
        kind: {
            "measured_steps": c.measured,
            "steps": c.steps,
            "unreported_steps": c.unreported,
            "unmeasured_steps": c.unmeasured,
        }
        for kind, c in group.coverage.items()
        if c.partial
    }


def _session(group: Group) -> dict[str, Any]:
    return {
        "session": group.key,
        "source": group.source,
        "client": group.client,
        "steps": group.steps,
        "lanes": list(group.lanes),
        "models": list(group.models),
        "tokens": dict(group.tokens),
        "tokens_partial": tokens_partial(group),
        "cost_usd": _cost(group),
        "context": {
            "tokens": group.context.tokens,
            "window": group.context.window,
            "model": group.context.model,
        },
    }


def _other(group: Group) -> dict[str, Any]:
    return {
        "key": group.key,
        "steps": group.steps,
        "sessions": group.sessions,
        "models": list(group.models),
        "tokens": dict(group.tokens),
        "tokens_partial": tokens_partial(group),
        "cost_usd": _cost(group),
    }


def report_json(report: Report) -> dict[str, Any]:
    """`{"sessions": [...], "totals": {...}}` by session; `{"by", "groups", "totals"}` otherwise."""
    t = report.totals
    totals = {"tokens": dict(t.tokens), "tokens_partial": tokens_partial(t), "cost_usd": _cost(t)}
    if report.by == "session":
        return {"sessions": [_session(g) for g in report.groups], "totals": totals}
    return {"by": report.by, "groups": [_other(g) for g in report.groups], "totals": totals}


_USAGE = (
    ("gen_ai.usage.input_tokens", "input_total"),
    ("gen_ai.usage.cache_read.input_tokens", "cache_read"),
    ("gen_ai.usage.cache_creation.input_tokens", "cache_write"),
    ("gen_ai.usage.output_tokens", "output_total"),
    ("gen_ai.usage.reasoning.output_tokens", "reasoning"),
)

CSV_COLUMNS = (
    "usagefix.exchange.id",
    "gen_ai.conversation.id",
    "usagefix.session.source",
    "usagefix.client",
    "usagefix.lane",
    "usagefix.parent_lane",
    "usagefix.parent_exchange.id",
    "usagefix.time.start",
    "usagefix.time.end",
    "server.address",
    "url.path",
    "usagefix.dialect",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "http.response.status_code",
    "usagefix.streamed",
    "usagefix.status",
    *(name for name, _ in _USAGE),
    *(f"usagefix.before.{name}" for name, _ in _USAGE),
    "usagefix.cost.before_usd",
    "usagefix.cost.after_usd",
    "usagefix.cost.provider_usd",
    "usagefix.price.model",
    "usagefix.price.match",
    "usagefix.context_window",
    "usagefix.rules",
    "usagefix.anomalies",
    "usagefix.cost.flags",
)


def _iso(ts: float | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _usage(usage: dict[str, Any] | None) -> list[str]:
    return [_cell(usage.get(field) if usage else None) for _, field in _USAGE]


def rows_csv(rows: Iterable[ExchangeRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted(rows, key=lambda r: (r.ts_start, r.id)):
        writer.writerow(
            [
                r.id,
                _cell(r.session_key),
                _cell(r.session_source),
                _cell(r.client),
                r.lane,
                _cell(r.parent_lane),
                _cell(r.parent_exchange_id),
                _iso(r.ts_start),
                _iso(r.ts_end),
                r.upstream_host,
                r.path,
                r.dialect,
                _cell(r.model_requested),
                _cell(r.model_reported),
                _cell(r.response_id),
                _cell(r.status_code),
                "true" if r.streamed else "false",
                r.usagefix_status,
                *_usage(r.usage_after),
                *_usage(r.usage_before),
                _cell(money(r.cost_before)),
                _cell(money(r.cost_after)),
                _cell(money(r.cost_provider)),
                _cell(r.price_model_id),
                _cell(r.price_match),
                _cell(r.context_window),
                " ".join(r.rules),
                " ".join(r.anomalies),
                " ".join(r.cost_flags),
            ]
        )
    return out.getvalue()
