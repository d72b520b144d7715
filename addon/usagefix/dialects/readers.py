"""What a request and its response say beside usage, read by each dialect's own module. Pure.

A dialect module may declare, after its `DIALECT`, `READERS = Readers(request=…, response=…)`
(the registry collects them, `registry.READERS`):

- `request(body)` reads a request body into `RequestSays`: the tool results it ends with (by the
  ids of the calls they answer), its system prompt and user turns (as the body holds them), and
  the response it continues;
- `response(event_name, obj, notes)` reads one parsed event of a response (or a whole body) into
  `ResponseNotes`: the model the upstream reported, the response id, the tool calls it emitted,
  the upstream's own cost.

`usagefix.conversation` and `usagefix.transcript` dispatch through the registry and never name a
dialect. Readers see parsed JSON of any shape: they look and never assume, so a key that is
missing or of another type is no fact, never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from usagefix.exchange import ResponseFacts

__all__ = [
    "NO_READERS",
    "EventReader",
    "Readers",
    "RequestReader",
    "RequestSays",
    "ResponseNotes",
    "contents",
    "dicts",
    "first",
    "ids",
    "string",
    "trailing",
]


@dataclass(frozen=True, slots=True)
class RequestSays:
    """What a request body says about the conversation it continues, as the body holds it."""

    tool_result_ids: tuple[str, ...] = ()
    """The tool calls the tool results at the end of the request answer, in order."""
    system: Any = None
    """The system prompt: a string, or a list of parts with `text`."""
    user_turns: tuple[Any, ...] = ()
    """The content of each user message, in order (a string, or a list of parts with `text`)."""
    previous_response_id: str | None = None
    """The response this request continues on the server's side (a Responses chain)."""


class ResponseNotes:
    """What a response's events said so far: the first model and id, every tool call once, the
    last cost."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.response_id: str | None = None
        self.tool_ids: dict[str, None] = {}
        self.cost: Decimal | None = None

    def ids(self, model: Any, response_id: Any) -> None:
        if self.model is None and isinstance(model, str) and model:
            self.model = model
        if self.response_id is None and isinstance(response_id, str) and response_id:
            self.response_id = response_id

    def tool(self, tool_id: Any) -> None:
        if isinstance(tool_id, str) and tool_id:
            self.tool_ids[tool_id] = None

    def usage(self, usage: Any) -> None:
        """OpenRouter's `usage.cost` (USD); the last one seen is the final, cumulative one."""
        cost = usage.get("cost") if isinstance(usage, dict) else None
        if isinstance(cost, Decimal | int) and not isinstance(cost, bool):
            self.cost = Decimal(cost)
        elif isinstance(cost, str):
            try:
                self.cost = Decimal(cost)
            except InvalidOperation:
                pass

    def result(self) -> ResponseFacts:
        cost = self.cost if self.cost is not None and self.cost.is_finite() else None
        return ResponseFacts(self.model, self.response_id, tuple(self.tool_ids), cost)


RequestReader = Callable[[dict[str, Any]], RequestSays]
EventReader = Callable[[str | None, dict[str, Any], ResponseNotes], None]


@dataclass(frozen=True, slots=True)
class Readers:
    """A dialect's two readers; either may be absent (its side then says nothing)."""

    request: RequestReader | None = None
    response: EventReader | None = None
    later: tuple[bytes, ...] | None = None
    """Once the model and the response id are known (the first of each is kept), an event of a
    stream that holds none of these bytes says nothing more to `response`, and is not parsed: a
    byte test, for the thousands of text deltas of a long stream. None: every event is read."""


NO_READERS = Readers()
"""A dialect that declares no readers: its exchanges are recorded and priced by their model
name alone, with no session links."""


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (anything else in it skipped); [] for what is no array."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def string(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def ids(items: Iterable[dict[str, Any]], key: str) -> tuple[str, ...]:
    """Each item's non-empty string at `key`, in order."""
    return tuple(v for item in items if (v := string(item.get(key))) is not None)


def trailing(items: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The run of items at the end of `items` that `keep` accepts, in order."""
    start = len(items)
    while start > 0 and keep(items[start - 1]):
        start -= 1
    return items[start:]


def contents(messages: Iterable[dict[str, Any]], role: str, key: str = "content") -> tuple[Any, ...]:
    """The `key` of every message of `role`, in order."""
    return tuple(m.get(key) for m in messages if m.get("role") == role)


def first(messages: Iterable[dict[str, Any]], roles: tuple[str, ...], key: str = "content") -> Any:
    """The `key` of the first message whose role is one of `roles`, else None."""
    return next((m.get(key) for m in messages if m.get("role") in roles), None)
