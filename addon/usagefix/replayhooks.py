"""Replays, as the hooks see them (glue: imports mitmproxy).

A client replay sends a recorded flow again: its old record is not true of the new response. A
server replay serves a recorded response again: the copy mitmproxy serves comes without the record
it was saved with, which `RecordIndex` (pure, usagefix.replayed) finds again by request and body.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy import io as mio

from usagefix.record import METADATA_KEY
from usagefix.replayed import Recorded, RecordIndex

__all__ = ["adopt_recorded", "forget_record", "replay_records"]


def forget_record(flow: http.HTTPFlow) -> None:
    """A client replay sends a recorded flow again: what was recorded of its old response (record,
    comment, ⚠ mark) is not true of the new one, which gets a record of its own, or none when no
    response comes. (Its backup, saved with it, keeps the old flow whole.)"""
    if flow.metadata.pop(METADATA_KEY, None) is not None:
        flow.comment = ""
        if flow.marked == ":warning:":
            flow.marked = ""


def replay_records(paths: object) -> RecordIndex:
    """The records of the flows in the server-replay files (none if they cannot be read: mitmproxy
    refuses such a file itself)."""
    if not isinstance(paths, (list, tuple)) or not paths:
        return RecordIndex()
    try:
        flows = mio.read_flows_from_paths([str(p) for p in paths])
    except Exception:
        return RecordIndex()
    return RecordIndex.of(
        Recorded((f.request.method, f.request.path), (f.response.status_code, f.response.raw_content), rec)
        for f in flows
        if isinstance(f, http.HTTPFlow)
        and f.response is not None
        and f.response.raw_content is not None
        and isinstance(rec := f.metadata.get(METADATA_KEY), dict)
    )


def adopt_recorded(flow: http.HTTPFlow, replayed: RecordIndex) -> None:
    """A server-replayed response: the record it was saved with, to normalize it anew from the
    upstream's original (the copy mitmproxy serves comes without it)."""
    resp = flow.response
    if resp is None or resp.raw_content is None or METADATA_KEY in flow.metadata:
        return
    found = replayed.find((flow.request.method, flow.request.path), (resp.status_code, resp.raw_content))
    if found is not None:
        flow.metadata[METADATA_KEY] = dict(found)
