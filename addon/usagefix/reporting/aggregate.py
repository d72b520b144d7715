"""Exchange rows grouped into sessions (or models, hosts, days): summed tokens and money, and the
context of the last main-lane step. Pure.

- Tokens: sums over steps of the corrected canonical usage (`input` = all input, cache reads and
  writes included; `output` includes reasoning). A kind no step measured is None, never 0. A kind
  only some steps measured keeps its sum (a true lower bound) and its `Coverage` says so: how many
  steps reported it, how many had usage that left it out (None: not reported), how many had no
  usage at all (a cut-off stream, R8; `unreported:KEY`). HTTP errors and exchanges without a
  response used no tokens and are not counted; a count Gemini leaves out (proto3 omits zeros) is
  a measured 0. A missing count is never 0.
- Money: sums over every step of every lane, exact. A group is unpriced (None) when any step
  with usage has no price: a partial sum is never shown as the total. Steps without usage
  (errors, cut-off streams without a usage block) have nothing to price and count as unmeasured.
- Context: the full input of the last main-lane step with usage, against that row's context
  window (None when unknown: no percentage is guessed). Peak and cumulative are separate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

from usagefix.dialects.registry import SPECS
from usagefix.exchange import ExchangeRow

__all__ = [
    "TOKEN_KINDS",
    "By",
    "Context",
    "Coverage",
    "Group",
    "Report",
    "build_report",
    "day_of",
    "model_of",
]

By = Literal["session", "model", "host", "day"]
TOKEN_KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")
_CANONICAL = {
    "input": "input_total",
    "cache_read": "cache_read",
    "cache_write": "cache_write",
    "output": "output_total",
    "reasoning": "reasoning",
}
# How a session was found, strongest first: a session is as certain as its best step.
_SOURCE_RANK = ("header", "body", "chain", "tool_call", "fingerprint", "connection")

Tokens = dict[str, int | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    tokens: int | None
    """The last main-lane step's full input (uncached + cache read + cache write)."""
    window: int | None
    model: str | None
    peak: int | None
    """The largest main-lane step input (labelled "peak", never shown as the context)."""

    @property
    def percent(self) -> float | None:
        """Share of the window, for display only; None when the window is unknown."""
        if self.tokens is None or not self.window:
            return None
        return 100.0 * self.tokens / self.window


NO_CONTEXT = Context(None, None, None, None)


@dataclasses.dataclass(frozen=True, slots=True)
class Coverage:
    """Which of a group's steps one token kind's sum is over."""

    measured: int
    """Steps whose usage reported the kind: the sum is theirs."""
    unreported: int
    """Steps with usage that left the kind out (None: the dialect or upstream did not report it)."""
    unmeasured: int
    """Steps with no usage at all (cut off before their usage, a headline not reported)."""

    @property
    def steps(self) -> int:
        """The steps that could have used tokens: a group's HTTP errors and exchanges without a
        response are not among them."""
        return self.measured + self.unreported + self.unmeasured

    @property
    def partial(self) -> bool:
        """The sum is a lower bound: some steps reported the kind and some did not. (None of them:
        the sum is None, unmeasured, not partial.)"""
        return 0 < self.measured < self.steps


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    key: str | None
    """The session key (or model, host, day); None for an exchange no session was found for."""
    rows: tuple[ExchangeRow, ...]
    """In time order."""
    source: str | None
    client: str | None
    lanes: tuple[str, ...]
    models: tuple[str, ...]
    sessions: int
    tokens: Tokens
    tokens_before: Tokens
    cost_before: Decimal | None
    cost_after: Decimal | None
    cost_provider: Decimal | None
    unpriced_steps: int
    unmeasured_steps: int
    context: Context
    coverage: dict[str, Coverage]
    """Per kind of `tokens`: which steps its sum covers (`partial` when only some)."""
    coverage_before: dict[str, Coverage]
    """The same for `tokens_before`."""

    @property
    def steps(self) -> int:
        return len(self.rows)


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    by: By
    groups: tuple[Group, ...]
    totals: Group


def model_of(row: ExchangeRow) -> str | None:
    return row.model_reported or row.model_requested


def day_of(row: ExchangeRow) -> str:
    return dt.datetime.fromtimestamp(row.ts_start, dt.UTC).date().isoformat()


def sum_tokens(usages: Iterable[dict[str, Any] | None]) -> Tokens:
    present = [u for u in usages if u is not None]
    out: Tokens = {}
    for kind, field in _CANONICAL.items():
        known = [v for u in present if isinstance(v := u.get(field), int)]
        out[kind] = sum(known) if known else None
    return out


def coverage(rows: Sequence[ExchangeRow], usage: str = "usage_after") -> dict[str, Coverage]:
    """Per kind, the steps whose usage reported it, left it out, or that had no usage (as
    `sum_tokens` counts them: a count that is not an int is not in the sum).

    Steps that can have used no tokens are not counted: an HTTP error, no response at all. A
    count left out by a dialect whose JSON omits zeros (Gemini's proto3) is a measured 0."""
    counted = [r for r in rows if r.status_code is not None and 200 <= r.status_code < 300]
    present = [(r, u) for r in counted if (u := getattr(r, usage)) is not None]
    out: dict[str, Coverage] = {}
    for kind, field in _CANONICAL.items():
        measured = sum(1 for r, u in present if isinstance(u.get(field), int) or _zero_if_absent(r, u, field))
        out[kind] = Coverage(measured, len(present) - measured, len(counted) - len(present))
    return out


def _zero_if_absent(row: ExchangeRow, usage: dict[str, Any], field: str) -> bool:
    """The step's dialect omits zero counts, and its block carried none for `field`."""
    spec = SPECS.get(row.dialect)
    return spec is not None and spec.omits_zero_counts and usage.get(field) is None


def _money(
    rows: Sequence[ExchangeRow], cost: Callable[[ExchangeRow], Decimal | None], usage: str
) -> Decimal | None:
    """The exact sum, or None when a step with usage is unpriced (or no step has usage)."""
    priced = [r for r in rows if getattr(r, usage) is not None]
    values = [cost(r) for r in priced]
    if not priced or any(v is None for v in values):
        return None
    return sum((v for v in values if v is not None), Decimal(0))


def _context(rows: Sequence[ExchangeRow]) -> Context:
    main = [r for r in rows if r.lane == "main" and r.usage_after is not None]
    if not main:
        return NO_CONTEXT
    last = main[-1]
    inputs = [r.usage_after["input_total"] for r in main if r.usage_after is not None]
    return Context(
        last.usage_after["input_total"] if last.usage_after else None,
        last.context_window,
        model_of(last),
        max(inputs),
    )


def _group(key: str | None, rows: Sequence[ExchangeRow], with_context: bool) -> Group:
    ordered = tuple(sorted(rows, key=lambda r: (r.ts_start, r.id)))
    sources = {r.session_source for r in ordered}
    lanes = sorted({r.lane for r in ordered}, key=lambda lane: (lane != "main", lane))
    return Group(
        key=key,
        rows=ordered,
        source=next((s for s in _SOURCE_RANK if s in sources), None),
        client=next((r.client for r in ordered if r.client), None),
        lanes=tuple(lanes),
        models=tuple(sorted({m for r in ordered if (m := model_of(r))})),
        sessions=len({r.session_key or f"#{r.id}" for r in ordered}),
        tokens=sum_tokens(r.usage_after for r in ordered),
        tokens_before=sum_tokens(r.usage_before for r in ordered),
        cost_before=_money(ordered, lambda r: r.cost_before, "usage_before"),
        cost_after=_money(ordered, lambda r: r.cost_after, "usage_after"),
        cost_provider=sum(vs, Decimal(0))
        if (vs := [r.cost_provider for r in ordered if r.cost_provider is not None])
        else None,
        unpriced_steps=sum(1 for r in ordered if r.usage_after is not None and r.cost_after is None),
        unmeasured_steps=sum(1 for r in ordered if r.usage_after is None),
        context=_context(ordered) if with_context else NO_CONTEXT,
        coverage=coverage(ordered),
        coverage_before=coverage(ordered, "usage_before"),
    )


def _matches(row: ExchangeRow, since: float | None, model: str | None, host: str | None) -> bool:
    if since is not None and row.ts_start < since:
        return False
    if (
        model is not None
        and model.lower() not in " ".join(filter(None, (row.model_reported, row.model_requested))).lower()
    ):
        return False
    return host is None or host.lower() in row.upstream_host.lower()


_KEYS: dict[str, Callable[[ExchangeRow], str | None]] = {
    "session": lambda r: r.session_key,
    "model": model_of,
    "host": lambda r: r.upstream_host,
    "day": day_of,
}


def build_report(
    rows: Iterable[ExchangeRow],
    *,
    by: By = "session",
    since: float | None = None,
    model: str | None = None,
    host: str | None = None,
) -> Report:
    """Rows filtered (`since` epoch seconds; `model`, `host` case-insensitive substrings) and
    grouped. An exchange without a session is a group of its own (key None)."""
    kept = [r for r in rows if _matches(r, since, model, host)]
    key_of = _KEYS[by]
    buckets: dict[tuple[str | None, str], list[ExchangeRow]] = {}
    for row in kept:
        key = key_of(row)
        buckets.setdefault((key, "" if key is not None else row.id), []).append(row)
    groups = [_group(key, members, by == "session") for (key, _), members in buckets.items()]
    groups.sort(key=lambda g: (g.rows[0].ts_start, g.key or ""))
    return Report(by, tuple(groups), _group(None, kept, with_context=False))
