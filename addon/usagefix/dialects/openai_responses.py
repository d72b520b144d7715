"""OpenAI Responses API.

Usage is inclusive, like Chat, under other names (usage-semantics §2.1). It lives in
`response.usage` of the terminal events only: `response.completed`, `response.incomplete`,
`response.failed` (`response.created` / `in_progress` carry the same object before usage is
known); a non-streamed response has it at the top. Detail objects the upstream left out stay
out: the SDK reads a response without them (as None), and most correct upstreams omit them.
"""

from __future__ import annotations

from typing import Any

from usagefix.dialects.engine import FieldMapDialect
from usagefix.dialects.openai_chat import check_deepseek, from_gemini, judge_translated
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
from usagefix.dialects.spec import Copy, DialectSpec, Field

__all__ = ["DIALECT", "SPEC"]

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


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
        Field(key="output_tokens", unit="output_total", kind="headline"),
        # Inclusive, like Chat (§2.1), and read with Chat's aliases (translators write them here too).
        Field(
            key="input_tokens_details.cached_tokens",
            unit="cache_read",
            kind="subset",
            aliases=("cache_read_input_tokens", "prompt_cache_hit_tokens"),
            pick="largest",
            added_by=("R1", "R2"),
            copies=(Copy(alias="prompt_cache_hit_tokens", rule="R6", by="DeepSeek"),),
            alias_note="LiteLLM #11364",
        ),
        Field(
            key="input_tokens_details.cache_write_tokens",
            unit="cache_write",
            kind="subset",
            aliases=(
                "input_tokens_details.cached_creation_tokens",
                "input_tokens_details.cache_creation_tokens",
                "cache_creation_input_tokens",
            ),
            pick="first_nonzero",
            added_by=("R2",),
            alias_note="LiteLLM #11364",
        ),
        Field(key="output_tokens_details.reasoning_tokens", unit="reasoning", kind="subset"),
        Field(key="total_tokens", unit="total", kind="headline"),
    ),
    emits=("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details", "total_tokens"),
    repairs=_REPAIRS,
    # Only the terminal events carry usage (`response.created` / `in_progress` carry the object
    # before it is known).
    usage_events=TERMINAL,
    absent_headline="invalid",
    count_keys=r".*_tokens",
    price_provider="openai",
)

DIALECT = FieldMapDialect(SPEC, check_deepseek, from_gemini=from_gemini, judge=judge_translated)


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


READERS = Readers(
    request=read_request,
    response=read_event,
    # After `response.created` (model, id), only a call item or OpenRouter's cost says more.
    later=(b'"function_call"', b'"custom_tool_call"', b'"cost"'),
)
