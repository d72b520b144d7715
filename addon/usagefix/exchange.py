"""One LLM exchange as the ledger, prices, sessions and reports see it: plain, pure values.

The addon (live) and `usagefix ledger import` / `usagefix report` (from flow files) both turn a
flow into `ExchangeFacts` and its record, then into one `ExchangeRow`. Everything after
`ExchangeFacts` is pure, so a report over a flow file and over the ledger of the same run agree.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, Literal

__all__ = ["Costs", "ExchangeFacts", "ExchangeRow", "ResponseFacts", "SessionInfo", "SessionSource"]

SessionSource = Literal["header", "body", "chain", "tool_call", "fingerprint", "connection"]


@dataclasses.dataclass(frozen=True, slots=True)
class ExchangeFacts:
    """What the flow says about one exchange, read once from mitmproxy's objects."""

    flow_id: str
    """mitmproxy's flow id (for a WebSocket turn: `<flow id>#<message index>`)."""
    ts_start: float
    """When the request began, epoch seconds."""
    ts_end: float | None
    """When the response ended (or the flow failed), epoch seconds; None when unknown."""
    method: str
    scheme: str
    host: str
    """The name the client asked for (Host header / SNI), not a transparent-mode destination IP."""
    port: int
    path: str
    """The request path with its query (as `flow.request.path`)."""
    request_headers: tuple[tuple[str, str], ...]
    """In wire order; credential values may be redacted, session keys never are."""
    request_body: Any | None
    """The request body parsed as JSON (None when it is not JSON)."""
    status_code: int | None
    """The HTTP status of the response; None when there was no response."""
    response_content_type: str | None
    response_body: bytes | None
    """The body the client received (decoded), or None when it was not saved."""
    error: str | None = None
    """mitmproxy's error for the flow, if any (a cut-off stream, a refused connection)."""
    connection: str | None = None
    """For a WebSocket turn, the WebSocket's flow id: the session of a turn nothing else places
    (a Realtime session is its connection). None for an HTTP exchange."""


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseFacts:
    """What the response body says beside its usage (read by `usagefix.transcript`)."""

    model: str | None = None
    response_id: str | None = None
    tool_call_ids: tuple[str, ...] = ()
    """The tool calls the response emitted (`tool_use.id`, `tool_calls[].id`, `call_id`, ...)."""
    provider_cost: Decimal | None = None
    """The cost the upstream itself reported (OpenRouter `usage.cost`), USD."""


@dataclasses.dataclass(frozen=True, slots=True)
class SessionInfo:
    """Which session, lane and step an exchange belongs to (`usagefix.sessions`)."""

    key: str | None
    """Namespaced by where it came from (`claude:<uuid>`, `codex:<uuid>`, `chain:<id>`, `fp:<hash>`);
    None when nothing names or infers a session."""
    source: SessionSource | None
    client: str | None
    """The client recognised from User-Agent and headers (`claude-code`, `codex`, ...), or None."""
    lane: str = "main"
    """`main`, or a subagent's id."""
    parent_lane: str | None = None
    parent_exchange_id: str | None = None
    """The exchange whose tool calls this request answers (tool-call continuation)."""
    previous_response_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Costs:
    """Money for one exchange, exact (`Decimal` USD), unknown as None ("unpriced"), never 0."""

    before: Decimal | None
    """What a standard consumer of the dialect computes from the upstream's block (may be negative)."""
    after: Decimal | None
    """The price of the corrected usage."""
    provider: Decimal | None
    """What the upstream reported itself (OpenRouter `usage.cost`)."""
    match: str | None
    """Which step of the model resolver chain matched (`url`, `provider`, `model`, `stripped`,
    `override`), None when unpriced."""
    model_id: str | None
    provider_id: str | None
    source: str
    """Where the prices came from, with its version (`genai-prices 0.2.3`)."""
    context_window: int | None
    context_window_source: str | None
    flags: tuple[str, ...] = ()
    """`unpriced`, `cache_ttl_unknown`, ..."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExchangeRow:
    """One ledger row. Money as exact `Decimal` (stored without loss); counts None when unknown."""

    id: str
    ts_start: float
    ts_end: float | None
    client: str | None
    user_agent: str | None
    upstream_host: str
    path: str
    dialect: str
    model_requested: str | None
    model_reported: str | None
    status_code: int | None
    streamed: bool
    final_seen: bool
    usagefix_status: str
    rules: tuple[str, ...]
    anomalies: tuple[str, ...]
    usage_before: dict[str, Any] | None
    """`CanonicalUsage.model_dump()` of the upstream's reading, or None."""
    usage_after: dict[str, Any] | None
    """`CanonicalUsage.model_dump()` of what the client received, or None."""
    session_key: str | None
    session_source: str | None
    lane: str
    parent_lane: str | None
    parent_exchange_id: str | None
    response_id: str | None
    previous_response_id: str | None
    cost_before: Decimal | None
    cost_after: Decimal | None
    cost_provider: Decimal | None
    price_match: str | None
    price_model_id: str | None
    price_source: str | None
    context_window: int | None
    cost_flags: tuple[str, ...] = ()
    error: str | None = None
    """Why the exchange failed or was cut off (mitmproxy's flow error, else the record's), or None."""
    context_window_source: str | None = None
    price_provider_id: str | None = None
