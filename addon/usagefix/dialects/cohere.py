"""Cohere's Chat API v2: `POST /v2/chat`.

`usage` holds two readings of one request: `tokens` (every token the model processed, the prompt
template included) and `billed_units` (what Cohere bills, without the template), plus
`cached_tokens`. A stream is SSE; usage comes once, on `message-end`, in `delta.usage`. We
normalize `tokens` and check `billed_units` against it; `billed_units` is never touched (like a
provider's `cost`: it is what the invoice says, not a count to repair).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Tally
from usagefix.dialects.engine import FieldMapDialect, Read
from usagefix.dialects.readers import (
    Readers,
    RequestSays,
    ResponseNotes,
    contents,
    dicts,
    first,
    ids,
    trailing,
)
from usagefix.dialects.spec import DialectSpec, Field

__all__ = ["DIALECT", "SPEC"]

SPEC = DialectSpec(
    name="cohere",
    rank=60,
    title="Cohere Chat v2",
    paths=(r"(?:.*/)?v2/chat",),
    shown_paths="`POST …/v2/chat`",
    framing_shown="JSON, SSE (`message-end`)",
    usage_at=("usage", "delta.usage"),
    end_events=("message-end",),
    cumulative="final_once",
    fields=(
        Field(key="tokens.input_tokens", unit="input_total", kind="headline"),
        # Assumed inclusive: Cohere documents `cached_tokens` as the prompt tokens served from its
        # cache, and `tokens.input_tokens` as every prompt token the model processed, so the
        # cached ones are among them (as OpenAI counts them). More cached than input cannot happen
        # under that reading: R1 applies.
        Field(key="cached_tokens", unit="cache_read", kind="subset"),
        Field(key="tokens.output_tokens", unit="output_total", kind="headline"),
    ),
    emits=("billed_units", "tokens", "cached_tokens"),
    untouched=("billed_units",),
    repairs=(
        "**R1** `cached_tokens` above `tokens.input_tokens` (assumed inclusive): cache reads added "
        "to `tokens.input_tokens`. **I4** negative counts become 0. `billed_units` is read and "
        "checked (`billed_exceeds_processed` when it bills more than `tokens` counts), never "
        "touched."
    ),
    price_provider="cohere",
)


def check_billed(usage: Mapping[str, Any], tally: Tally) -> None:
    """Billed units leave the prompt template out, so they never exceed what was processed."""
    billed, tokens = usage.get("billed_units"), usage.get("tokens")
    if not isinstance(billed, Mapping) or not isinstance(tokens, Mapping):
        return
    for key in ("input_tokens", "output_tokens"):
        b, t = billed.get(key), tokens.get(key)
        if isinstance(b, int | float) and isinstance(t, int | float) and b > t:
            tally.flag(f"billed_exceeds_processed:{key}")


def _check(usage: Mapping[str, Any], read: Read, tally: Tally) -> None:
    check_billed(usage, tally)


DIALECT = FieldMapDialect(SPEC, check=_check)


# -- what its requests and responses say (sessions, transcript) --


def _calls(value: Any, notes: ResponseNotes) -> None:
    """Tool calls by `id`: a list in a message, one object in `tool-call-start`'s delta."""
    for call in [value] if isinstance(value, dict) else dicts(value):
        notes.tool(call.get("id"))


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """A stream's `message-start` (the response `id`) and `tool-call-start` events, or a whole
    body (`id`, `message.tool_calls`). Cohere's responses never name the model: the request's
    `model` stands for it."""
    kind = obj.get("type")
    if kind in ("message-start", None):
        notes.ids(None, obj.get("id"))
    if kind in ("tool-call-start", None):
        holder = obj.get("delta") if kind else obj
        message = holder.get("message") if isinstance(holder, dict) else None
        if isinstance(message, dict):
            _calls(message.get("tool_calls"), notes)


def read_request(body: dict[str, Any]) -> RequestSays:
    """The trailing `role: tool` messages, by `tool_call_id`; the first `system` message."""
    messages = dicts(body.get("messages"))
    results = trailing(messages, lambda m: m.get("role") == "tool")
    return RequestSays(ids(results, "tool_call_id"), first(messages, ("system",)), contents(messages, "user"))


READERS = Readers(request=read_request, response=read_event)
