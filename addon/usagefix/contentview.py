"""mitmweb's side: the "usage diff" contentview (a response's record, rendered beside its body)
and the Comment column turned on.

Registered by the addon script. `auto` picks it for rewritten responses only; any response with a
record can show it when chosen by name.
"""

from __future__ import annotations

from mitmproxy import contentviews, ctx

from usagefix.record import METADATA_KEY
from usagefix.report import render_record
from usagefix.webcolumns import COMMENT, with_comment

__all__ = ["CommentColumn", "UsageDiffContentview"]


def _record(metadata: contentviews.Metadata) -> dict[str, object] | None:
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
        if rec is None:
            raise ValueError("no usagefix record on this response")
        return render_record(rec)

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
