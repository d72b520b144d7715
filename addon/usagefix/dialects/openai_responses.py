"""OpenAI Responses API.

Usage is inclusive, like Chat, under other names (usage-semantics §2.1). It lives in
`response.usage` of the terminal events only: `response.completed`, `response.incomplete`,
`response.failed` (`response.created` / `in_progress` carry the same object before usage is
known); a non-streamed response has it at the top. Detail objects the upstream left out stay
out: the SDK reads a response without them (as None), and most correct upstreams omit them.
"""

from __future__ import annotations

import json
from typing import Any

from usagefix.dialects.base import Context, Session, Tally, event_type
from usagefix.dialects.inclusive import RESPONSES, model_of, rewrite_json_usage, rewrite_usage
from usagefix.dialects.readers import (
    Readers,
    RequestSays,
    ResponseNotes,
    contents,
    dicts,
    first,
    ids,
    string,
    trailing,
)
from usagefix.dialects.spec import DialectSpec, Field
from usagefix.jsonedit import replace_at

__all__ = ["DIALECT", "SPEC", "OpenAIResponses"]

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_TERMINAL_BYTES = tuple(t.encode() for t in TERMINAL)


class OpenAIResponses:
    name = "openai_responses"
    end_markers: tuple[bytes, ...] = _TERMINAL_BYTES

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        return rewrite_json_usage(text, tally, ctx, RESPONSES)

    def stream_session(self, tally: Tally, ctx: Context) -> _ResponsesStream:
        return _ResponsesStream(tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        return event_type(name, data) in TERMINAL


class _ResponsesStream(Session):
    def might_carry_usage(self, raw: bytes) -> bool:
        return any(t in raw for t in _TERMINAL_BYTES)

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("type", name) not in TERMINAL:
            return None
        response = obj.get("response")
        if not isinstance(response, dict) or not isinstance(response.get("usage"), dict):
            return None
        emitted = rewrite_usage(response["usage"], self.tally, self.ctx, RESPONSES, model=model_of(response))
        return None if emitted is None else replace_at(data, ["response", "usage"], emitted)


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "R1, R2, R3, R5, I3, I4 as above. Detail objects the upstream left out stay out (the SDK "
    "reads a response without them)."
)

SPEC = DialectSpec(
    name="openai_responses",
    rank=20,
    title="OpenAI Responses",
    # `/v1/responses`, Azure's `/openai/responses` and `/openai/v1/responses`, LiteLLM's bare
    # `/responses`; not `/api/forms/42/responses` or `/v3/surveys/7/responses`.
    paths=(r"(?:.*/(?:openai|v\d+(?:(?:alpha|beta)\d*)?)?)?/responses",),
    shown_paths="`POST …/v1/responses`, `…/openai/responses` (Azure), `/responses`",
    # Codex CLI talks Responses over a persistent WebSocket to `…/responses`.
    websocket_paths=(r"(?:.*/)?responses",),
    framing_shown=(
        "JSON, SSE (`response.completed` / `incomplete` / `failed`), and WebSocket messages on "
        "`…/responses` (Codex CLI: many turns on one connection, one record per turn)"
    ),
    usage_at=("usage", "response.usage"),
    end_events=TERMINAL,
    cumulative="final_once",
    fields=(
        Field(key="input_tokens", unit="input_total", kind="headline"),
        # Inclusive, like Chat (§2.1).
        Field(key="input_tokens_details.cached_tokens", unit="cache_read", kind="subset"),
        Field(key="input_tokens_details.cache_write_tokens", unit="cache_write", kind="subset"),
        Field(key="output_tokens", unit="output_total", kind="headline"),
        Field(key="output_tokens_details.reasoning_tokens", unit="reasoning", kind="subset"),
        Field(key="total_tokens", unit="total", kind="headline"),
    ),
    emits=("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details", "total_tokens"),
    repairs=_REPAIRS,
    price_provider="openai",
)

DIALECT = OpenAIResponses()


# -- what its requests and responses say (sessions, transcript) --


# Events that carry the whole response object (its model, id, output and, at the end, usage).
_RESPONSE_EVENTS = (
    "response.created",
    "response.in_progress",
    "response.completed",
    "response.incomplete",
    "response.failed",
)
_CALL_ITEMS = ("function_call", "custom_tool_call")
_OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output")


def _item(item: Any, notes: ResponseNotes) -> None:
    if isinstance(item, dict) and item.get("type") in _CALL_ITEMS:
        notes.tool(item.get("call_id"))


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """The response object (its `model`, `id`, `output` calls by `call_id`, OpenRouter's
    `usage.cost`), whole or in the events that carry it; an output item added or done."""
    kind = obj.get("type")
    if kind in _RESPONSE_EVENTS and isinstance(obj.get("response"), dict):
        obj = obj["response"]
    elif kind in ("response.output_item.added", "response.output_item.done"):
        _item(obj.get("item"), notes)
        return
    notes.ids(obj.get("model"), obj.get("id"))
    for item in dicts(obj.get("output")):
        _item(item, notes)
    notes.usage(obj.get("usage"))


def read_request(body: dict[str, Any]) -> RequestSays:
    """The trailing `function_call_output` items, by `call_id`; `instructions`, else the first
    system item; `input` as a string is one user message; `previous_response_id`."""
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else dicts(raw)
    results = trailing(items, lambda i: i.get("type") in _OUTPUT_ITEMS)
    instructions = body.get("instructions")
    system = instructions if isinstance(instructions, str) else first(items, ("system", "developer"))
    return RequestSays(
        ids(results, "call_id"), system, contents(items, "user"), string(body.get("previous_response_id"))
    )


READERS = Readers(request=read_request, response=read_event)
