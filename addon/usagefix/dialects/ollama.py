"""Ollama's native API: `POST /api/chat` and `/api/generate` (its OpenAI-compatible endpoints speak
the OpenAI dialects).

A stream is NDJSON (`application/x-ndjson`), one object per line; the last line has `done: true`
and the counts (`prompt_eval_count`, `eval_count`) at its top level, beside the timings. With
`stream: false` the same object is the whole JSON body. There is no total and no cache count in
this dialect, so nothing but I4 can be proven wrong: the engine reads, records and clamps. No
`total_tokens` is ever added (a key Ollama never sends).
"""

from __future__ import annotations

from typing import Any

from usagefix.dialects.engine import FieldMapDialect
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
from usagefix.dialects.spec import COMMON_FRAMINGS, DialectSpec, Field

__all__ = ["DIALECT", "SPEC"]

SPEC = DialectSpec(
    name="ollama",
    rank=50,
    title="Ollama native API",
    # Ollama's own routes, behind any prefix (a gateway's route to it).
    paths=(r"(?:.*/)?api/(?:chat|generate)",),
    shown_paths="`POST …/api/chat`, `…/api/generate`",
    framings={**COMMON_FRAMINGS, "application/x-ndjson": "ndjson"},
    framing_shown="JSON, NDJSON (`application/x-ndjson`)",
    # The counts sit at the top level of the `done: true` line (or body), beside the timings.
    usage_at=("",),
    end_events=(),
    end_flag="done",
    # Counts come once, on the line that ends the stream.
    cumulative="final_once",
    fields=(
        # Inclusive as far as anyone can tell (Ollama's OpenAI bridge maps it to prompt_tokens,
        # usage-semantics §5), but nothing here depends on it: there is no cache count to hold.
        # Omitted (not 0) when the whole prompt came from the cache: absent stays unknown.
        Field(key="prompt_eval_count", unit="input_total", kind="headline"),
        Field(key="eval_count", unit="output_total", kind="headline"),
    ),
    emits=("prompt_eval_count", "eval_count"),
    repairs=(
        "**I4** negative counts become 0; nothing else can be proven from the counts. An absent "
        "`prompt_eval_count` (the whole prompt cached) is unknown, not 0: the response is "
        "`unmeasured` (`unreported:prompt_eval_count`). No `total_tokens` is added."
    ),
    # Local models have no price list (genai-prices has no Ollama provider), and a name
    # genai-prices knows (`deepseek-r1:7b`, `gpt-oss:20b`) is a local model, not the hosted one's
    # price: unpriced unless the user's `usage_prices` names it.
    price_provider=None,
    priced_by_name=False,
)

DIALECT = FieldMapDialect(SPEC)


# -- what its requests and responses say (sessions, transcript) --


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """A line of the stream (or the whole body): its `model`, and `message.tool_calls[].id`
    (sent since Ollama 0.12.10; older servers' calls have no id and index nothing). There is no
    response id in this dialect."""
    notes.ids(obj.get("model"), None)
    message = obj.get("message")
    for call in dicts(message.get("tool_calls") if isinstance(message, dict) else None):
        notes.tool(call.get("id"))


def read_request(body: dict[str, Any]) -> RequestSays:
    """`/api/chat`: the trailing `role: tool` messages, by `tool_call_id` (a client that sends only
    `tool_name` links nothing: a name is no id), the first `system` message. `/api/generate`:
    its `system` and `prompt`."""
    if "messages" not in body:
        return RequestSays((), body.get("system"), (body.get("prompt"),))
    messages = dicts(body.get("messages"))
    results = trailing(messages, lambda m: m.get("role") == "tool")
    return RequestSays(ids(results, "tool_call_id"), first(messages, ("system",)), contents(messages, "user"))


READERS = Readers(request=read_request, response=read_event)
