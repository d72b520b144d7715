"""The one pipeline from an exchange to its ledger row, live and from flow files alike. Pure.

facts + saved record → `transcript.read_response` → `SessionTracker.step` (fed in flow order) →
`pricing.price_exchange` → `build_row`. The addon runs it on the ledger's writer thread, so none of
it costs the proxy's hot path; `usagefix ledger import` runs it over the flows of a file.

Each stage that belongs to another module is guarded: should one raise, the row is still written,
with that stage's part unknown and a flag saying which stage failed. A ledger row is never lost to
a bug in pricing or sessions, and unknown is never shown as zero.
"""

from __future__ import annotations

import logging

from usagefix.exchange import Costs, ExchangeFacts, ExchangeRow, ResponseFacts, SessionInfo
from usagefix.ledger.row import RecordView, build_row, read_record
from usagefix.price_overrides import PriceOverrides
from usagefix.pricing import price_exchange
from usagefix.sessions import SessionTracker
from usagefix.transcript import model_requested, read_response

__all__ = ["Pipeline"]

logger = logging.getLogger(__name__)


def _unpriced(why: str) -> Costs:
    return Costs(
        before=None,
        after=None,
        provider=None,
        match=None,
        model_id=None,
        provider_id=None,
        source="none",
        context_window=None,
        context_window_source=None,
        flags=("unpriced", why),
    )


class Pipeline:
    """Rows from exchanges, in the order they finished (the session tracker needs that order)."""

    def __init__(
        self, tracker: SessionTracker | None = None, overrides: PriceOverrides | None = None
    ) -> None:
        self.tracker = tracker if tracker is not None else SessionTracker()
        self.overrides = overrides
        """The user's price table (`usage_prices`), consulted first by the model resolver."""

    def row(self, facts: ExchangeFacts, saved_record: object, dialect: str) -> ExchangeRow:
        """The row of one exchange. `dialect` is the addon's (or detected from the path); a record
        names its own, which wins."""
        record = read_record(saved_record)
        if record is not None and record.dialect:
            dialect = record.dialect
        try:
            response = read_response(dialect, facts.response_content_type, facts.response_body)
        except Exception as e:
            logger.warning("usagefix ledger: %s: reading the response failed: %r", facts.flow_id, e)
            response = ResponseFacts()
        try:
            session = self.tracker.step(facts, dialect, response)
        except Exception as e:
            logger.warning("usagefix ledger: %s: the session tracker failed: %r", facts.flow_id, e)
            session = SessionInfo(key=None, source=None, client=None)
        try:
            requested = model_requested(dialect, facts.path, facts.request_body)
        except Exception as e:
            logger.warning("usagefix ledger: %s: reading the model failed: %r", facts.flow_id, e)
            requested = None
        costs = self._costs(facts, record, response, dialect, requested)
        return build_row(facts, record, response, session, costs, requested, dialect)

    def _costs(
        self,
        facts: ExchangeFacts,
        record: RecordView | None,
        response: ResponseFacts,
        dialect: str,
        requested: str | None,
    ) -> Costs:
        try:
            return price_exchange(
                facts,
                dialect=dialect,
                model=response.model or requested,
                usage_before=record.usage_before if record else None,
                usage_after=record.usage_after if record else None,
                upstream_usage=record.upstream_usage if record else None,
                provider_cost=response.provider_cost,
                overrides=self.overrides,
            )
        except Exception as e:
            logger.warning("usagefix ledger: %s: pricing failed: %r", facts.flow_id, e)
            return _unpriced("pricing_error")
