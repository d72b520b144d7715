"""`usagefix diff`'s pure side: the facts shown per flow, the filters, the summary table.

The flow files are read in `cmd_diff` (the only part that imports mitmproxy); everything here
works on plain values, so it is tested without a flow.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from usagefix.costview import cost_json, session_json
from usagefix.exchange import ExchangeRow
from usagefix.record import RuleRecord, UsageRecord
from usagefix.report import as_received
from usagefix.reporting.terminal import dollars
from usagefix.usage import CanonicalUsage

__all__ = ["Filters", "FlowRow", "Money", "SummaryRow", "ordered_record", "parse_since", "summarize"]


@dataclass(frozen=True)
class FlowRow:
    """One flow with a record, as `usagefix diff` shows it."""

    file: str
    flow_id: str
    method: str
    url: str
    host: str
    """The upstream's host (and port, when not the scheme's)."""
    model: str | None
    """The model the request asked for (its body, or a Gemini/Bedrock path); None: not said."""
    started: float | None
    """When the request started (Unix time)."""
    http_status: int | None
    latency_ms: float | None
    """From the request's start to the response's end; None without a response."""
    comment: str
    record: Mapping[str, Any]
    ledger: ExchangeRow | None = None
    """The row the ledger's pipeline builds for this flow (its cost and session), run over the
    flows in file order; None when not computed."""

    @property
    def status(self) -> str:
        return str(self.record.get("status", "?"))

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "flow_id": self.flow_id,
            "method": self.method,
            "url": self.url,
            "host": self.host,
            "model": self.model,
            "time": _iso(self.started),
            "http_status": self.http_status,
            "latency_ms": self.latency_ms,
            "comment": self.comment,
            "cost_usd": cost_json(self.ledger) if self.ledger else {"before": None, "after": None},
            "session": session_json(self.ledger) if self.ledger else {"key": None, "source": None},
            "record": ordered_record(self.record),
        }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _ordered(value: Any, keys: Sequence[str]) -> Any:
    """A dict with `keys` first, in that order, then any others (a later schema's) as they came."""
    if not isinstance(value, Mapping):
        return value
    return {**{k: value[k] for k in keys if k in value}, **{k: v for k, v in value.items() if k not in keys}}


_RECORD_KEYS = list(UsageRecord.model_fields)
_USAGE_KEYS = [*CanonicalUsage.model_fields, *CanonicalUsage.model_computed_fields]
_RULE_KEYS = list(RuleRecord.model_fields)


def ordered_record(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its keys in the schema's order (a flow file does not keep dict order),
    and its canonical usage and rules likewise."""
    out: dict[str, Any] = _ordered(rec, _RECORD_KEYS)
    for k in ("usage_before", "usage_after"):
        if k in out:
            out[k] = _ordered(out[k], _USAGE_KEYS)
    if isinstance(out.get("rules"), list):
        out["rules"] = [_ordered(r, _RULE_KEYS) for r in out["rules"]]
    return out


@dataclass(frozen=True)
class Filters:
    """Which flows to show: each given filter must match (several values of one: any of them)."""

    models: tuple[str, ...] = ()
    """Globs on the model, case-insensitive (`claude-*`)."""
    hosts: tuple[str, ...] = ()
    """Globs on the upstream's host or host:port."""
    rules: tuple[str, ...] = ()
    """Rule IDs that fired (`R1`), case-insensitive."""
    statuses: tuple[str, ...] = ()
    since: float | None = None
    everything: bool = False
    """Also flows whose usage was correct (`unchanged`); without it, and without `statuses`, they
    are counted but not shown."""

    def selects(self, row: FlowRow) -> bool:
        """Whether the row passes the filters (the summary counts these)."""
        if self.models and not any(
            fnmatch.fnmatchcase((row.model or "").lower(), m.lower()) for m in self.models
        ):
            return False
        if self.hosts and not any(
            fnmatch.fnmatchcase(row.host.lower(), h.lower())
            or fnmatch.fnmatchcase(row.host.lower().rsplit(":", 1)[0], h.lower())
            for h in self.hosts
        ):
            return False
        fired = {
            str(r.get("rule", "")).upper() for r in row.record.get("rules") or [] if isinstance(r, Mapping)
        }
        if self.rules and not fired & {r.upper() for r in self.rules}:
            return False
        if self.statuses and row.status not in self.statuses:
            return False
        return self.since is None or (row.started is not None and row.started >= self.since)

    def shows(self, row: FlowRow) -> bool:
        """Whether the row is printed in full: selected, and not an unchanged flow hidden by default."""
        return self.selects(row) and (self.everything or bool(self.statuses) or row.status != "unchanged")


_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """`--since`: `30m`, `2h`, `1d`, `1w` ago, or an ISO date or time (`2026-12-01`,
    `2026-12-01T09:30`, UTC unless it says otherwise). Raises ValueError with what is accepted."""
    m = _RELATIVE.match(text.strip())
    if m:
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give 30m, 2h, 1d, 1w, or an ISO date or time (2026-12-01T09:30)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


@dataclass
class Tokens:
    """A sum of totals, with how many of its responses had none (unknown, never counted as 0)."""

    known: int = 0
    unknown: int = 0

    def add(self, usage: object) -> None:
        total = usage.get("total") if isinstance(usage, Mapping) else None
        if isinstance(total, int) and not isinstance(total, bool):
            self.known += total
        else:
            self.unknown += 1

    def __str__(self) -> str:
        if self.unknown and not self.known:
            return "—"
        return f"{self.known:,}" + (f" (+{self.unknown} unknown)" if self.unknown else "")


@dataclass
class Money:
    """A sum of costs (exact), with how many of its responses were unpriced (never counted as $0)."""

    known: Decimal = Decimal(0)
    priced: int = 0
    unpriced: int = 0

    def add(self, cost: Decimal | None) -> None:
        if cost is None:
            self.unpriced += 1
        else:
            self.known += cost
            self.priced += 1

    def __str__(self) -> str:
        if not self.priced:
            return "unpriced" if self.unpriced else "—"
        return dollars(self.known) + (f" (+{self.unpriced} unpriced)" if self.unpriced else "")


@dataclass
class SummaryRow:
    model: str
    upstream: str
    responses: int = 0
    rewritten: int = 0
    unmeasured: int = 0
    received: Tokens = field(default_factory=Tokens)
    """Total tokens of the upstream's blocks, as they stood."""
    corrected: Tokens = field(default_factory=Tokens)
    """Total tokens of the blocks the client received."""
    cost_before: Money = field(default_factory=Money)
    """What a standard consumer computes from the upstream's blocks."""
    cost_after: Money = field(default_factory=Money)
    """The price of the blocks the client received."""

    def add(self, row: FlowRow) -> None:
        self.responses += 1
        self.rewritten += row.status == "rewritten"
        measured = row.record.get("final_seen") is True
        self.unmeasured += not measured
        if measured:  # an unmeasured response has no total to add, and is counted as such
            self.received.add(as_received(row.record))
            self.corrected.add(row.record.get("usage_after"))
            if row.ledger is not None:
                self.cost_before.add(row.ledger.cost_before)
                self.cost_after.add(row.ledger.cost_after)


def summarize(rows: Iterable[FlowRow]) -> list[SummaryRow]:
    """Per model × upstream, in order of first appearance, then a total row (model "total")."""
    groups: dict[tuple[str, str], SummaryRow] = {}
    total = SummaryRow("total", "")
    for row in rows:
        key = (row.model or "?", row.host)
        groups.setdefault(key, SummaryRow(*key)).add(row)
        total.add(row)
    return [*groups.values(), total]
