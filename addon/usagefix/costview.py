"""One exchange's money and session in words and JSON, for the "usage diff" view and `usagefix diff`.
Pure: it reads the ledger row the pipeline built for the flow.

Money is exact (`Decimal`) and an unknown price is "unpriced" (JSON null), never $0.
"""

from __future__ import annotations

from typing import Any

from usagefix.exchange import ExchangeRow
from usagefix.reporting.export import money
from usagefix.reporting.terminal import INFERRED, dollars

__all__ = ["NAMED", "cost_json", "money_line", "session_json", "session_line"]

NAMED = ("header", "body")
"""Session sources one request shows by itself; chains, tool calls and fingerprints need the run."""

_FLAGS = {
    "cache_ttl_unknown": "cache writes priced at the 5m rate (their TTL split was not reported)",
    "pricing_error": "pricing failed",
}


def money_line(row: ExchangeRow) -> str:
    """`cost -$0.2743 → $0.0422 (claude-sonnet-4-5, genai-prices 0.2.3)`: what a standard consumer
    computes from the upstream's block, then the price of what the client received."""
    text = f"cost {dollars(row.cost_before)} → {dollars(row.cost_after)}"
    if row.usage_before is None and row.usage_after is None:
        text = "cost unmeasured (no usage to price)"  # a priced model, but no count was read
    elif row.cost_before is None and row.cost_after is None:
        model = row.model_reported or row.model_requested
        text = "cost unpriced (" + (f"no price for {model}" if model else "no model named") + ")"
    else:
        text += f" ({row.price_model_id or row.model_reported or row.model_requested}, {row.price_source})"
    if row.cost_provider is not None:
        text += f"; the upstream reported {dollars(row.cost_provider)}"
    said = [_FLAGS[f] for f in row.cost_flags if f in _FLAGS]
    return text + "".join(f"; {s}" for s in said)


def session_line(row: ExchangeRow, *, named_only: bool = False) -> str:
    """`session: codex:abc (header)`, with its lane when not the main one. With `named_only` (a view
    of one flow, which cannot see the run), only a key the request itself names is claimed."""
    key, source = _session(row, named_only)
    if key is None:
        return "session: not named by this request" if named_only else "session: none"
    said = f"{source}, inferred" if source in INFERRED else source
    lane = f", lane {row.lane}" if row.lane != "main" else ""
    return f"session: {key} ({said}{lane})"


def _session(row: ExchangeRow, named_only: bool) -> tuple[str | None, str | None]:
    if row.session_key is None or (named_only and row.session_source not in NAMED):
        return None, None
    return row.session_key, row.session_source


def cost_json(row: ExchangeRow) -> dict[str, str | None]:
    """`{"before": "-0.274347", "after": "0.042243"}`: exact decimal strings, null when unpriced."""
    return {"before": money(row.cost_before), "after": money(row.cost_after)}


def session_json(row: ExchangeRow, *, named_only: bool = False) -> dict[str, Any]:
    key, source = _session(row, named_only)
    return {"key": key, "source": source}
