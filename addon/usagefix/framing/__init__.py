"""Sans-IO framers: bytes in, events with their exact original bytes out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from usagefix.framing.eventstream import EventStreamFramer, Frame
from usagefix.framing.json_array import ArrayElement, JSONArrayFramer
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
    "SSEEvent",
    "SSEFramer",
    "make_framer",
    "parse_fields",
    "replace_data",
]

Framing = Literal["sse", "json_array", "eventstream"]


class Event(Protocol):
    @property
    def raw(self) -> bytes: ...
    @property
    def complete(self) -> bool: ...
    def payload(self) -> tuple[str | None, str | None]: ...
    def with_payload(self, data: str) -> bytes: ...


class Framer(Protocol):
    @property
    def pending(self) -> int: ...
    def pending_bytes(self) -> bytes: ...
    def feed(self, chunk: bytes) -> Sequence[Event]: ...
    def finish(self) -> Sequence[Event]: ...


def make_framer(framing: Framing, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Framer:
    if framing == "json_array":
        return JSONArrayFramer(max_event_bytes)
    if framing == "eventstream":
        return EventStreamFramer(max_event_bytes)
    return SSEFramer(max_event_bytes)
