"""Sans-IO framers: bytes in, events with their exact original bytes out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from usagefix.framing.eventstream import EventStreamFramer, Frame
from usagefix.framing.json_array import ArrayElement, JSONArrayFramer
from usagefix.framing.ndjson import NDJSONFramer, NDJSONLine
from usagefix.framing.sse import DEFAULT_MAX_EVENT_BYTES, SSEEvent, SSEFramer, parse_fields, replace_data

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "ArrayElement",
    "Event",
    "EventStreamFramer",
    "Frame",
    "Framer",
    "Framing",
    "JSONArrayFramer",
    "NDJSONFramer",
    "NDJSONLine",
    "SSEEvent",
    "SSEFramer",
    "make_framer",
    "parse_fields",
    "replace_data",
]

Framing = Literal["sse", "json_array", "eventstream", "ndjson"]


class Event(Protocol):
    """An event as it was on the wire, or a piece of one.

    `complete`: a whole event that can be parsed. Otherwise `reason` says why not (`oversize`,
    `cut_off`, `bad_crc`, `bad_headers`, `bad_prelude`), or is None for bytes that are no event of
    their own (between events, the end of a terminator). `starts_event` is False for every piece
    after the first of one event, and for bytes between events: counting the pieces that start
    one counts the events, whatever the chunking.
    """

    @property
    def raw(self) -> bytes: ...
    @property
    def complete(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def starts_event(self) -> bool: ...
    @property
    def count(self) -> int:
        """Whole events in `raw`: 1, or more for a quiet run (`SSEFramer`'s `quiet`)."""
        ...

    @property
    def quiet(self) -> bool:
        """A run the framer's `quiet` test let through (`SSEFramer`): none of its events need a look."""
        ...

    def payload(self) -> tuple[str | None, str | None]: ...
    def with_payload(self, data: str) -> bytes: ...


class Framer(Protocol):
    """Push-style: `feed` and `finish` return events; every byte fed comes back, in order, once.

    If `feed` raises, `pending_bytes()` holds every byte fed and not yet returned."""

    @property
    def pending(self) -> int: ...
    def pending_bytes(self) -> bytes: ...
    def feed(self, chunk: bytes) -> Sequence[Event]: ...
    def take(self, chunk: bytes) -> bytes | Sequence[Event]:
        """`feed`, or, for the hot path, a quiet run as its bytes alone (`SSEFramer.take`)."""
        ...

    @property
    def run_count(self) -> int:
        """The events in the quiet run `take` last gave as bytes."""
        ...

    def finish(self) -> Sequence[Event]: ...


def make_framer(
    framing: Framing,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    quiet: Callable[[bytes], bool] | None = None,
) -> Framer:
    """A framer; `quiet`, a byte test for runs of events that need no look (SSE only, for now)."""
    if framing == "json_array":
        return JSONArrayFramer(max_event_bytes)
    if framing == "eventstream":
        return EventStreamFramer(max_event_bytes)
    if framing == "ndjson":
        return NDJSONFramer(max_event_bytes)
    return SSEFramer(max_event_bytes, quiet)
