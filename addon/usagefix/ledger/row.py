"""One ledger row from one exchange: its facts, its usagefix record, its session and its costs. Pure.

The record is read leniently from the saved dict (`flow.metadata["usagefix"]`, a
`UsageRecord.model_dump(mode="json")`): a field of the wrong type is left unknown, keys of a later
schema are ignored, so an old or hand-edited flow still gives a row (with less in it), never none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from usagefix.exchange import Costs, ExchangeFacts, ExchangeRow, ResponseFacts, SessionInfo
from usagefix.usage import CanonicalUsage

__all__ = ["RecordView", "build_row", "header", "read_record", "usage_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class RecordView:
    """What a row takes from a usagefix record."""

    dialect: str | None
    streamed: bool | None
    status: str | None
    final_seen: bool
    usage_before: CanonicalUsage | None
    usage_after: CanonicalUsage | None
    upstream_usage: dict[str, Any] | None
    rules: tuple[str, ...]
    anomalies: tuple[str, ...]
    error: str | None


def usage_of(value: object) -> CanonicalUsage | None:
    """A canonical usage from its dump (`total` is computed, so dropped), or None if it is not one."""
    if isinstance(value, CanonicalUsage):
        return value
    if not isinstance(value, Mapping):
        return None
    try:
        return CanonicalUsage.model_validate({k: v for k, v in value.items() if k != "total"})
    except ValidationError:
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def read_record(saved: object) -> RecordView | None:
    """The record saved with a flow, as a row needs it; None when there is none (not a dict).

    Usage counts only once the response's final usage arrived (R7, R8): a stream cut off after
    some snapshots leaves its usage unknown, not its last snapshot, so nothing prices or sums it
    (the flow's record keeps the snapshot the client got)."""
    if not isinstance(saved, Mapping):
        return None
    rules = saved.get("rules")
    final_seen = saved.get("final_seen") is True
    upstream = saved.get("upstream_usage")
    streamed = saved.get("streamed")
    return RecordView(
        dialect=_str(saved.get("dialect")),
        streamed=streamed if isinstance(streamed, bool) else None,
        status=_str(saved.get("status")),
        final_seen=final_seen,
        usage_before=usage_of(saved.get("usage_before")) if final_seen else None,
        usage_after=usage_of(saved.get("usage_after")) if final_seen else None,
        upstream_usage=dict(upstream) if isinstance(upstream, Mapping) else None,
        rules=tuple(r["rule"] for r in rules if isinstance(r, Mapping) and isinstance(r.get("rule"), str))
        if isinstance(rules, list)
        else (),
        anomalies=_strings(saved.get("anomalies")),
        error=_str(saved.get("error")),
    )


def header(facts: ExchangeFacts, name: str) -> str | None:
    """The first request header of that name (case-insensitive), or None."""
    name = name.lower()
    return next((v for k, v in facts.request_headers if k.lower() == name), None)


def _status(facts: ExchangeFacts, record: RecordView | None) -> str:
    """The record's status; without a record, `error` (no response, or the flow failed) or
    `untouched` (an answer the addon leaves alone: an HTTP error, a body that is not an LLM's)."""
    if record is not None and record.status is not None:
        return record.status
    return "error" if facts.status_code is None or facts.error else "untouched"


def _streamed(facts: ExchangeFacts, record: RecordView | None) -> bool:
    if record is not None and record.streamed is not None:
        return record.streamed
    return "event-stream" in (facts.response_content_type or "")


def build_row(
    facts: ExchangeFacts,
    record: RecordView | None,
    response: ResponseFacts,
    session: SessionInfo,
    costs: Costs,
    model_requested: str | None,
    dialect: str,
) -> ExchangeRow:
    """The ledger row of one exchange. Unknown stays None: no count, cost or name is invented."""
    before = record.usage_before if record else None
    after = record.usage_after if record else None
    return ExchangeRow(
        id=facts.flow_id,
        ts_start=facts.ts_start,
        ts_end=facts.ts_end,
        client=session.client,
        user_agent=header(facts, "user-agent"),
        upstream_host=_host_port(facts),
        path=facts.path,
        dialect=record.dialect if record and record.dialect else dialect,
        model_requested=model_requested,
        model_reported=response.model,
        status_code=facts.status_code,
        streamed=_streamed(facts, record),
        final_seen=record.final_seen if record else False,
        usagefix_status=_status(facts, record),
        rules=record.rules if record else (),
        anomalies=record.anomalies if record else (),
        usage_before=before.model_dump() if before else None,
        usage_after=after.model_dump() if after else None,
        session_key=session.key,
        session_source=session.source,
        lane=session.lane,
        parent_lane=session.parent_lane,
        parent_exchange_id=session.parent_exchange_id,
        response_id=response.response_id,
        previous_response_id=session.previous_response_id,
        cost_before=costs.before,
        cost_after=costs.after,
        cost_provider=costs.provider,
        price_match=costs.match,
        price_model_id=costs.model_id,
        price_source=costs.source,
        context_window=costs.context_window,
        cost_flags=costs.flags,
        error=facts.error or (record.error if record else None),
        context_window_source=costs.context_window_source,
        price_provider_id=costs.provider_id,
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(facts: ExchangeFacts) -> str:
    """The upstream as `host`, or `host:port` off its scheme's default port: two local upstreams
    (a CLI proxy on 8317, Ollama on 11434) are two upstreams."""
    if facts.port == _DEFAULT_PORTS.get(facts.scheme):
        return facts.host
    return f"{facts.host}:{facts.port}"
