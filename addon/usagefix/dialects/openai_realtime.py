"""OpenAI Realtime API: a WebSocket (`…/v1/realtime`), never a POST.

Each response ends with a `response.done` server event that carries `response.usage`, "always
emitted, no matter the final state" (usage-semantics §2.2): `input_tokens`, `output_tokens`,
`total_tokens`, and per-modality details, `input_token_details.cached_tokens` among them.
"""

from __future__ import annotations

from typing import Any

from usagefix.dialects.engine import FieldMapDialect
from usagefix.dialects.readers import Readers, ResponseNotes, dicts
from usagefix.dialects.spec import DialectSpec, Field

__all__ = ["DIALECT", "SPEC"]

SPEC = DialectSpec(
    name="openai_realtime",
    rank=25,
    title="OpenAI Realtime (WebSocket)",
    paths=(),  # no HTTP endpoint: the server's messages on a WebSocket
    shown_paths="WebSocket `…/v1/realtime`",
    websocket_paths=(r"(?:.*/)?realtime",),
    framing_shown="WebSocket messages (`response.done`)",
    usage_at=("response.usage",),
    end_events=("response.done",),
    cumulative="final_once",
    fields=(
        Field(key="input_tokens", unit="input_total", kind="headline"),
        # "Cached tokens here are counted as a subset of input tokens" (the SDK's docstring).
        Field(key="input_token_details.cached_tokens", unit="cache_read", kind="subset"),
        Field(key="output_tokens", unit="output_total", kind="headline"),
        Field(key="total_tokens", unit="total", kind="headline"),
    ),
    emits=("input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details"),
    repairs=(
        "**R1** `cached_tokens` above `input_tokens`: cache reads added to `input_tokens`. **I3** "
        "a `total_tokens` below input + output is raised. **I4**. One record per `response.done`."
    ),
    price_provider="openai",
)

DIALECT = FieldMapDialect(SPEC)


# -- what its requests and responses say (sessions, transcript) --


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """`response.done`: the response's `id` and its `function_call` output items, by `call_id`.
    The model is named only in the upgrade's query (`?model=…`), which `transcript` reads."""
    response = obj.get("response") if obj.get("type") == "response.done" else None
    if not isinstance(response, dict):
        return
    notes.ids(None, response.get("id"))
    for item in dicts(response.get("output")):
        if item.get("type") == "function_call":
            notes.tool(item.get("call_id"))


# No request reader: a turn's request is the client's last message before it (`response.create`),
# while the tool results it answers went earlier, in `conversation.item.create` messages.
READERS = Readers(response=read_event)
