"""What a request and its response say beside usage: the model, ids, tool calls, cost. Pure.

Response bodies are read with the project's own framers (SSE, JSON array, AWS event stream), event
by event, never by searching bytes. Whatever a body holds, these functions return facts (empty
when there are none) and never raise: a bad body costs the facts, never the exchange.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from usagefix.dialects import model_from_path
from usagefix.exchange import ResponseFacts
from usagefix.framing import EventStreamFramer, Framer, JSONArrayFramer, SSEFramer

__all__ = ["model_requested", "read_response"]

# Response bodies the proxy saved are whole; an event of any size is read (the bound is the
# rewriter's business on the live path, not the reader's).
_NO_BOUND = 1 << 62


def model_requested(dialect: str, path: str, body: Any | None) -> str | None:
    """The model the client asked for: the body's `model`, else the path's (Gemini `models/<m>:…`,
    Bedrock `/model/<id>/invoke…`), else the query's `model` (a Realtime WebSocket's
    `/v1/realtime?model=…`, where no request body names it)."""
    if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
        return str(body["model"])
    if dialect in ("gemini", "bedrock", "anthropic"):
        return model_from_path(path)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("model")
    return query[0] if query and query[0] else None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _payloads(content_type: str | None, body: bytes) -> Iterator[tuple[str | None, Any]]:
    """(event name, parsed JSON) for every event of the body that parses."""
    media = _media_type(content_type)
    framer: Framer | None = None
    if media == "text/event-stream":
        framer = SSEFramer(_NO_BOUND)
    elif media == "application/vnd.amazon.eventstream":
        framer = EventStreamFramer(_NO_BOUND)
    elif body.lstrip()[:1] == b"[":
        framer = JSONArrayFramer(_NO_BOUND)  # Gemini's streamGenerateContent without alt=sse
    if framer is None:
        yield None, json.loads(body, parse_float=Decimal)
        return
    events = [*framer.feed(body), *framer.finish()]
    for event in events:
        if not event.complete:
            continue
        try:
            name, data = event.payload()
            if data is not None and data.strip():
                yield name, json.loads(data, parse_float=Decimal)
        except ValueError:  # `[DONE]`, a comment, a frame that is not JSON
            continue


class _Facts:
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


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _anthropic_message(msg: dict[str, Any], acc: _Facts) -> None:
    acc.ids(msg.get("model"), msg.get("id"))
    for block in _dicts(msg.get("content")):
        if block.get("type") == "tool_use":
            acc.tool(block.get("id"))
    acc.usage(msg.get("usage"))


def _anthropic(name: str | None, obj: dict[str, Any], acc: _Facts) -> None:
    kind = obj.get("type")
    if kind == "message_start" and isinstance(obj.get("message"), dict):
        _anthropic_message(obj["message"], acc)
    elif kind == "content_block_start" and isinstance(obj.get("content_block"), dict):
        if obj["content_block"].get("type") == "tool_use":
            acc.tool(obj["content_block"].get("id"))
    elif kind == "message":
        _anthropic_message(obj, acc)


def _openai_chat(name: str | None, obj: dict[str, Any], acc: _Facts) -> None:
    acc.ids(obj.get("model"), obj.get("id"))
    for choice in _dicts(obj.get("choices")):
        for part in ("message", "delta"):
            if isinstance(choice.get(part), dict):
                for call in _dicts(choice[part].get("tool_calls")):
                    acc.tool(call.get("id"))
    acc.usage(obj.get("usage"))


_RESPONSE_EVENTS = ("response.created", "response.in_progress", "response.completed")
_CALL_ITEMS = ("function_call", "custom_tool_call")


def _responses_item(item: Any, acc: _Facts) -> None:
    if isinstance(item, dict) and item.get("type") in _CALL_ITEMS:
        acc.tool(item.get("call_id"))


def _openai_responses(name: str | None, obj: dict[str, Any], acc: _Facts) -> None:
    kind = obj.get("type")
    if isinstance(obj.get("response"), dict) and (
        kind in _RESPONSE_EVENTS or kind in ("response.incomplete", "response.failed")
    ):
        obj = obj["response"]
    elif kind in ("response.output_item.added", "response.output_item.done"):
        _responses_item(obj.get("item"), acc)
        return
    acc.ids(obj.get("model"), obj.get("id"))
    for item in _dicts(obj.get("output")):
        _responses_item(item, acc)
    acc.usage(obj.get("usage"))


def _gemini(name: str | None, obj: dict[str, Any], acc: _Facts) -> None:
    acc.ids(obj.get("modelVersion"), obj.get("responseId"))
    for candidate in _dicts(obj.get("candidates")):
        content = candidate.get("content")
        for part in _dicts(content.get("parts") if isinstance(content, dict) else None):
            call = part.get("functionCall")
            if isinstance(call, dict):
                acc.tool(call.get("id"))  # optional in Gemini: absent ids index nothing


def _converse_block(block: Any, acc: _Facts) -> None:
    if isinstance(block, dict) and isinstance(block.get("toolUse"), dict):
        acc.tool(block["toolUse"].get("toolUseId"))


def _bedrock(name: str | None, obj: dict[str, Any], acc: _Facts) -> None:
    if name == "chunk" and isinstance(obj.get("bytes"), str):  # InvokeModel stream: base64 JSON
        try:
            inner = json.loads(base64.b64decode(obj["bytes"], validate=True), parse_float=Decimal)
        except (binascii.Error, ValueError):
            return
        if isinstance(inner, dict):
            _anthropic(None, inner, acc)
    elif name == "contentBlockStart":  # ConverseStream
        _converse_block(obj.get("start"), acc)
    elif isinstance(obj.get("output"), dict) and isinstance(obj["output"].get("message"), dict):
        for block in _dicts(obj["output"]["message"].get("content")):  # Converse
            _converse_block(block, acc)
    elif name is None:
        _anthropic_message(obj, acc)  # a Claude model through InvokeModel: Anthropic's own body


_READERS = {
    "anthropic": _anthropic,
    "openai_chat": _openai_chat,
    "openai_responses": _openai_responses,
    "gemini": _gemini,
    "bedrock": _bedrock,
}


def read_response(dialect: str, content_type: str | None, body: bytes | None) -> ResponseFacts:
    """The model the upstream reported, the response id, the tool calls it emitted (in order, each
    once), and its own cost (OpenRouter `usage.cost`, exact). Empty facts for a body that is
    missing, not JSON, cut off before any event, or of a dialect this module does not know."""
    reader = _READERS.get(dialect)
    acc = _Facts()
    if reader is None or not body:
        return acc.result()
    try:
        for name, obj in _payloads(content_type, body):
            if isinstance(obj, dict):
                reader(name, obj, acc)
    except (ValueError, RecursionError):
        pass  # what was read before the bad part stands
    return acc.result()
