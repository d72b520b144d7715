"""mitmweb's side: the "usage diff" contentview (a response's record, rendered beside its body)
and the Comment column turned on.

Registered by the addon script. `auto` picks it for rewritten responses only; any response with a
record can show it when chosen by name.

The view also prices the flow (cost before / after, by the ledger's pipeline with the user's
`usage_prices`) and names its session where the request itself does (header or body keys: one flow
seen alone cannot tell a chain or a fingerprint's run). Computed once per flow and record, then
cached, so clicking through flows stays as fast as before.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from mitmproxy import contentviews, ctx, http

from usagefix.costview import money_line, session_line
from usagefix.flowfacts import facts_of, llm_dialect, snapshot
from usagefix.ledger.pipeline import Pipeline
from usagefix.optioncheck import header_names
from usagefix.price_overrides import PriceOverrides, overrides_from_option
from usagefix.record import METADATA_KEY
from usagefix.report import render_record
from usagefix.sessions import SessionTracker
from usagefix.webcolumns import COMMENT, with_comment

__all__ = ["CommentColumn", "UsageDiffContentview", "money_and_notes"]

logger = logging.getLogger(__name__)

Said = tuple[str | None, tuple[str, ...]]
_said: weakref.WeakKeyDictionary[http.HTTPFlow, tuple[object, tuple[Any, ...], Said]] = (
    weakref.WeakKeyDictionary()
)
_tables: dict[str, PriceOverrides | None] = {}


def _option(name: str) -> Any:
    options = getattr(ctx, "options", None)
    return getattr(options, name) if options is not None and name in options else None


def _overrides(prices: str | None) -> PriceOverrides | None:
    if not prices:
        return None
    if prices not in _tables:  # loaded once per file named (the option's check has read it)
        _tables[prices] = overrides_from_option(prices)
    return _tables[prices]


def money_and_notes(flow: http.HTTPFlow, rec: dict[str, Any]) -> Said:
    """The flow's money line and session note (cached per flow, record and options); no money
    when pricing fails, which never breaks the view."""
    settings = (_option("usage_prices"), header_names(_option("usage_session_header")))
    cached = _said.get(flow)
    if cached is not None and cached[0] is rec and cached[1] == settings:
        return cached[2]
    said: Said = (None, ())
    try:
        dialect = llm_dialect(flow)
        if dialect is not None:
            pipeline = Pipeline(SessionTracker(extra_headers=settings[1]), _overrides(settings[0]))
            snap = snapshot(flow)
            row = pipeline.row(facts_of(snap), snap.record, dialect)
            said = (money_line(row), (session_line(row, named_only=True),))
    except Exception as e:  # a view never fails for its money: the tokens are still shown
        logger.warning("usagefix: %s: not priced: %r", flow.id, e)
    _said[flow] = (rec, settings, said)
    return said


def _record(metadata: contentviews.Metadata) -> dict[str, Any] | None:
    flow = metadata.flow
    if flow is None or metadata.http_message is None:
        return None
    if metadata.http_message is not getattr(flow, "response", None):
        return None
    rec = flow.metadata.get(METADATA_KEY)
    return rec if isinstance(rec, dict) else None


class UsageDiffContentview(contentviews.Contentview):
    @property
    def name(self) -> str:
        return "usage diff"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        rec = _record(metadata)
        if rec is None or not isinstance(metadata.flow, http.HTTPFlow):
            raise ValueError("no usagefix record on this response")
        money, notes = money_and_notes(metadata.flow, rec)
        return render_record(rec, money=money, notes=notes)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        rec = _record(metadata)
        # Above the JSON and SSE views (at most 1), for rewritten responses only.
        return 2.0 if rec is not None and rec.get("status") == "rewritten" else -1


class CommentColumn:
    """In mitmweb, turn the flow list's Comment column on once it starts (the user's columns kept).

    Once, in `running`: a user who then hides the column in Options → Columns keeps it hidden.
    Elsewhere (mitmdump, the console) there is no `web_columns` option and this does nothing.
    """

    def running(self) -> None:
        if "web_columns" not in ctx.options:
            return
        try:
            from mitmproxy.tools.web.web_columns import AVAILABLE_WEB_COLUMNS as available
        except ImportError:  # a mitmweb that does not say which columns it has: it has these
            available = [*ctx.options.default("web_columns"), COMMENT]
        columns = with_comment(list(ctx.options.web_columns), available)
        if columns is not None:
            ctx.options.update(web_columns=columns)  # type: ignore[no-untyped-call]
