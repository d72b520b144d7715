"""Usage on a WebSocket: each server message that ends a turn (Responses over WebSocket's
`response.completed`, Realtime's `response.done`) is read, normalized and recorded like a body.

Codex CLI keeps one WebSocket to its backend for many turns, so a flow holds one record per turn:
`flow.metadata["usagefix_turns"]`, a list of `{"message_index": i, "record": {...}}` (plain JSON
values), where `i` is the message's position in the flow's WebSocket messages. Pure: the addon
hands each server text message here and puts back the text returned. Never raises.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from usagefix.comment import saved_summary, summary
from usagefix.dialects import Context, Dialect, detect_websocket
from usagefix.normalize import UsageShapeError
from usagefix.recordbuild import build_record
from usagefix.result import RewriteResult, changed_span

__all__ = ["TURNS_KEY", "Turn", "detect_websocket", "read_turn", "turns_summary"]

logger = logging.getLogger(__name__)

TURNS_KEY = "usagefix_turns"


@dataclass(frozen=True, slots=True)
class Turn:
    text: str | None
    """The message's new text, or None to leave it exactly as it was."""
    entry: dict[str, Any]
    """What goes into the flow's list of turns."""
    line: str
    """This turn's one-line summary."""


def read_turn(dialect: Dialect, text: str, index: int, ctx: Context) -> Turn | None:
    """One server message: None when it carries no usage, else its record (and its new text)."""
    out = RewriteResult(dialect.name, streamed=False, profile=ctx.profile.name if ctx.profile else None)
    raw = text.encode("utf-8")
    new: str | None = None
    try:
        session = dialect.stream_session(out.tally, ctx)
        if not session.might_carry_usage(raw):
            return None
        new = session.normalize_event(None, text) or None  # "" (drop the event) is not for a message
        if new is not None:
            out.changes.append(changed_span(index, 0, raw, new.encode("utf-8")))
    except UsageShapeError as e:
        out.tally.flag(f"invalid_usage: {e}")
    except (json.JSONDecodeError, RecursionError) as e:
        out.tally.flag(f"unparseable_event: {type(e).__name__}: {e}")
    except Exception as e:  # fail open: the message goes as it came
        out.error = f"{type(e).__name__}: {e}"
        logger.warning("usagefix: a WebSocket message could not be read, forwarded untouched: %s", out.error)
        new = None
        out.changes.clear()
    if out.tally.snapshots == 0 and not out.tally.anomalies and out.error is None:
        return None  # a terminal-looking message without usage
    record = build_record(out)
    return Turn(new, {"message_index": index, "record": record.model_dump(mode="json")}, summary(record))


def turns_summary(entries: Sequence[Mapping[str, Any]], last: Turn) -> str:
    """One line for the flow's comment: how many turns, how many rewritten, the numbers of the
    last one rewritten (when it is not the last turn: what was fixed stays in view) and the last."""
    rewritten = [e for e in entries if e["record"]["status"] == "rewritten"]
    turns = "WebSocket turn" if len(entries) == 1 else "WebSocket turns"
    line = f"{len(entries)} {turns}, {len(rewritten)} rewritten"
    if rewritten and rewritten[-1] is not entries[-1]:
        said = saved_summary(rewritten[-1]["record"])  # "" for a record edited in the file
        line += f"; last rewritten: {said}" if said else ""
    return f"{line}; last: {last.line}"
