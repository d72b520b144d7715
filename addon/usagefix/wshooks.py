"""WebSocket turns, as the `websocket_message` hook sees them (glue: imports mitmproxy). Reading,
normalizing and recording a turn is usagefix.wsturns, pure."""

from __future__ import annotations

from mitmproxy import http

from usagefix.dialects import Context
from usagefix.profiles import ProfileSet
from usagefix.wsturns import TURNS_KEY, detect_websocket, read_turn, turns_summary

__all__ = ["record_turn"]


def record_turn(flow: http.HTTPFlow, profiles: ProfileSet) -> bool:
    """Read the flow's newest WebSocket message: a server message on an LLM WebSocket that carries
    a turn's usage is normalized in place and its record appended to `flow.metadata[TURNS_KEY]`.
    Whether a turn was recorded."""
    ws = flow.websocket
    if not flow.live or ws is None or not ws.messages:
        return False
    message = ws.messages[-1]  # mitmproxy: the newest, and it may be modified here
    dialect = detect_websocket(flow.request.path)
    if message.from_client or not message.is_text or dialect is None:
        return False
    req = flow.request
    profile = profiles.match(req.host, req.port, req.path, None)
    turn = read_turn(dialect, message.text, len(ws.messages) - 1, Context(profile=profile))
    if turn is None:
        return False
    if turn.text is not None:
        message.text = turn.text
    turns = flow.metadata.setdefault(TURNS_KEY, [])
    turns.append(turn.entry)
    flow.comment = turns_summary(turns, turn)
    if turn.entry["record"]["anomalies"]:
        flow.marked = ":warning:"
    return True
