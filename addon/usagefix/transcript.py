"""What a request and its response say beside usage: the model, ids, tool calls, cost. Pure.

Response bodies are read with the project's own framers (the dialect's framing for the body's
media type: SSE, NDJSON, AWS event stream; or a JSON array), event by event, never by searching
bytes. What each event says is the dialect's own reader's business (`dialects.readers`, found
through the registry): this module names no dialect. Whatever a body holds, these functions
return facts (empty when there are none) and never raise: a bad body costs the facts, never the
exchange.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from usagefix.dialects import SPECS, model_from_path
from usagefix.dialects.readers import NO_READERS, ResponseNotes
from usagefix.dialects.registry import READERS
from usagefix.exchange import ResponseFacts
from usagefix.framing import Event, Framer, Framing, make_framer

__all__ = ["model_requested", "read_response"]

# Response bodies the proxy saved are whole; an event of any size is read (the bound is the
# rewriter's business on the live path, not the reader's).
_NO_BOUND = 1 << 62
_PIECE = 64 * 1024


def model_requested(dialect: str, path: str, body: Any | None) -> str | None:
    """The model the client asked for: the body's `model`, else the path's for a dialect whose
    paths name it (`models/<m>:…`, `/model/<id>/invoke…`), else the query's `model` (a Realtime
    WebSocket's `/v1/realtime?model=…`, where no request body names it)."""
    if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
        return str(body["model"])
    spec = SPECS.get(dialect)
    if spec is not None and spec.model_in_path:
        return model_from_path(path)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("model")
    return query[0] if query and query[0] else None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _framed(framer: Framer, body: bytes) -> Iterator[Event]:
    for i in range(0, len(body), _PIECE):
        yield from framer.feed(body[i : i + _PIECE])
    yield from framer.finish()


def _payloads(
    framings: Mapping[str, Framing],
    content_type: str | None,
    body: bytes,
    skip: Callable[[bytes], bool],
) -> Iterator[tuple[str | None, Any]]:
    """(event name, parsed JSON) for every event of the body that parses, but those `skip`
    says nothing is to be learnt from (by their bytes, before parsing)."""
    framing = framings.get(_media_type(content_type))
    if framing is None and body.lstrip()[:1] == b"[":
        framing = "json_array"  # Gemini's streamGenerateContent without alt=sse
    if framing is None:
        yield None, json.loads(body, parse_float=Decimal)
        return
    # Fed in pieces, as a stream comes, and read as they are framed: a run of whole events
    # `skip` passes over comes out as one (the framer's `quiet`), past the first piece.
    for event in _framed(make_framer(framing, _NO_BOUND, skip), body):
        if not event.complete or skip(event.raw):
            continue
        try:
            name, data = event.payload()
            if data is not None and data.strip():
                yield name, json.loads(data, parse_float=Decimal)
        except ValueError:  # `[DONE]`, a comment, a frame that is not JSON
            continue


def read_response(dialect: str, content_type: str | None, body: bytes | None) -> ResponseFacts:
    """The model the upstream reported, the response id, the tool calls it emitted (in order, each
    once), and its own cost (OpenRouter `usage.cost`, exact). Empty facts for a body that is
    missing, not JSON, cut off before any event, or of a dialect with no response reader."""
    readers = READERS.get(dialect, NO_READERS)
    reader, later = readers.response, readers.later
    notes = ResponseNotes()
    if reader is None or not body:
        return notes.result()

    def known(raw: bytes) -> bool:  # the model and id are known, and the event has nothing more
        if later is None or notes.model is None or notes.response_id is None:
            return False
        return not any(n in raw for n in later)

    try:
        for name, obj in _payloads(SPECS[dialect].framings, content_type, body, known):
            if isinstance(obj, dict):
                reader(name, obj, notes)
    except (ValueError, RecursionError):
        pass  # what was read before the bad part stands
    return notes.result()
