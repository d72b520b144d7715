"""OpenAI Responses API.

Usage is inclusive, like Chat, under other names (usage-semantics §2.1). It lives in
`response.usage` of the terminal events only: `response.completed`, `response.incomplete`,
`response.failed` (`response.created` / `in_progress` carry the same object before usage is
known); a non-streamed response has it at the top. Detail objects the upstream left out stay
out: the SDK reads a response without them (as None), and most correct upstreams omit them.
"""

from __future__ import annotations

import json

from usagefix.dialects.base import Context, Session, Tally, event_type
from usagefix.dialects.inclusive import RESPONSES, model_of, rewrite_json_usage, rewrite_usage
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
)

DIALECT = OpenAIResponses()
