"""OpenAI Responses API.

Usage is inclusive, like Chat, under other names (usage-semantics §2.1). It lives in
`response.usage` of the terminal events only: `response.completed`, `response.incomplete`,
`response.failed` (`response.created` / `in_progress` carry the same object before usage is
known); a non-streamed response has it at the top. Detail objects the upstream left out stay
out: the SDK reads a response without them (as None), and most correct upstreams omit them.
"""

from __future__ import annotations

import json

from usagefix.dialects.base import Context, Tally
from usagefix.dialects.inclusive import RESPONSES, model_of, rewrite_json_usage, rewrite_usage
from usagefix.jsonedit import replace_at

__all__ = ["OpenAIResponses"]

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
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        return (obj.get("type", name) if isinstance(obj, dict) else name) in TERMINAL


class _ResponsesStream:
    def __init__(self, tally: Tally, ctx: Context) -> None:
        self.tally = tally
        self.ctx = ctx

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
