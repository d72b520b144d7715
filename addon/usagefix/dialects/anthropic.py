"""Anthropic Messages.

Usage is exclusive (usage-semantics §3): `input_tokens` counts uncached tokens only; cache reads
and writes stand beside it. In a stream, `message_start.message.usage` opens the snapshot and each
`message_delta.usage` is cumulative: its fields *replace* the snapshot's, never add to it (R4).
Claude Code treats `message_delta` as authoritative, so every `message_delta` we forward carries
the full snapshot (§8.5). A `null` input or cache count is absent, as the SDK reads it: it never
replaces a known one; a `null` `output_tokens` does (the SDK assigns it, None included). A count
nobody reported is never filled in (no invented zeros), and a headline sent as `null` that no event
gives a number leaves the response unmeasured (`unreported:KEY`), never 0. A new
`cache_creation_input_tokens` without its TTL split makes the earlier split stale: it is dropped.
"""

from __future__ import annotations

from typing import Any

from usagefix.dialects.engine import FieldMapDialect
from usagefix.dialects.readers import Readers, RequestSays, ResponseNotes, contents, dicts, ids
from usagefix.dialects.spec import DialectSpec, Field

__all__ = ["DIALECT", "SPEC"]

# The headline counts every snapshot we emit carries, in Anthropic's own order.
HEADLINES = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "**R4** every `message_delta` carries the full cumulative snapshot (`input_tokens`, "
    "`cache_creation_input_tokens`, `cache_read_input_tokens`, `output_tokens`, and the "
    "`cache_creation` TTL split when it adds up), merged from `message_start` by replacement, "
    "never addition; a `null` input or cache count in a delta never replaces a known count (the "
    "SDK treats it as absent), a `null` `output_tokens` does (the SDK assigns it); a count nobody "
    "reported is not filled in; a headline (`input_tokens`, `output_tokens`) sent as `null` that "
    "no event gives a number leaves the response `unmeasured` (`unreported:KEY`), its block "
    "untouched; a new `cache_creation_input_tokens` without its split drops the stale one. A "
    "delta that already carries the snapshot passes unchanged. I4."
)

SPEC = DialectSpec(
    name="anthropic",
    rank=30,
    title="Anthropic Messages (also Claude on Vertex)",
    paths=(
        # Anthropic's SDK always appends `/v1/messages` to its base URL, whatever the gateway's
        # path; `…/threads/v1/messages` is a thread's (OpenAI Assistants), not a message.
        r"(?!(?:.*/)?threads/v1/messages$)(?:.*)/v1/messages",
        # Claude on Vertex speaks Anthropic. Other publishers' rawPredict (Mistral, Llama, AI21,
        # custom endpoints) do not, and `count-tokens:rawPredict` answers with a count only.
        r"(?:.*/)?publishers/anthropic/models/(?!count-tokens:[^:/]*$)[^/]*:(?:rawPredict|streamRawPredict)",
    ),
    shown_paths=("`POST …/v1/messages`, `…/publishers/anthropic/models/…:rawPredict` / `:streamRawPredict`"),
    framing_shown="JSON, SSE",
    usage_at=("usage", "message.usage"),
    end_events=("message_stop",),
    cumulative="replace_by_field",
    fields=(
        # Exclusive (§3.1): input_tokens is the uncached part; cache counts stand beside it.
        Field(key="input_tokens", unit="input_total", kind="headline"),
        # The SDK's accumulator assigns each message_delta's output_tokens, None included (and
        # input and cache counts only when not None): a null there is unknown, not message_start's
        # partial count.
        Field(key="output_tokens", unit="output_total", kind="headline", null_replaces=True),
        Field(key="cache_read_input_tokens", unit="cache_read", kind="beside"),
        Field(key="cache_creation_input_tokens", unit="cache_write", kind="beside"),
        # The TTL split of the cache writes: it adds up to them, or is flagged (never repaired).
        Field(key="cache_creation.ephemeral_5m_input_tokens", unit="cache_write_5m", kind="subset"),
        Field(key="cache_creation.ephemeral_1h_input_tokens", unit="cache_write_1h", kind="subset"),
        Field(key="output_tokens_details.thinking_tokens", unit="reasoning", kind="subset"),
    ),
    # The snapshot's order: what a merged `message_delta` carries, and where.
    emits=(*HEADLINES, "cache_creation", "output_tokens_details", "server_tool_use"),
    repairs=_REPAIRS,
    # message_start opens the snapshot; each message_delta replaces its fields (R4).
    usage_events=("message_start", "message_delta"),
    # Absent counts read as 0, as the SDK reads them (and never written: no invented zeros); a
    # headline sent as null that no event gives a number is unknown (`unreported:KEY`).
    absent_headline="zero",
    skips="nothing",
    final_events=("message_delta",),
    # I4: any negative number in the block becomes 0.
    count_keys=".*",
    price_provider="anthropic",
    # Claude on Vertex names the model only in its path.
    model_in_path=True,
)

DIALECT = FieldMapDialect(SPEC)


# -- what its requests and responses say (sessions, transcript) --


def read_message(msg: dict[str, Any], notes: ResponseNotes) -> None:
    """A whole message (a body, or `message_start`'s): its model, id, `tool_use` blocks, cost."""
    notes.ids(msg.get("model"), msg.get("id"))
    for block in dicts(msg.get("content")):
        if block.get("type") == "tool_use":
            notes.tool(block.get("id"))
    notes.usage(msg.get("usage"))


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """A stream's `message_start` and `content_block_start` (`tool_use`), or a whole body."""
    kind = obj.get("type")
    if kind == "message_start" and isinstance(obj.get("message"), dict):
        read_message(obj["message"], notes)
    elif kind == "content_block_start" and isinstance(obj.get("content_block"), dict):
        if obj["content_block"].get("type") == "tool_use":
            notes.tool(obj["content_block"].get("id"))
    elif kind == "message":
        read_message(obj, notes)


def read_request(body: dict[str, Any]) -> RequestSays:
    """Tool results are `tool_result` blocks of the last (user) message, by `tool_use_id`; the
    system prompt is the body's `system`."""
    messages = dicts(body.get("messages"))
    results: tuple[str, ...] = ()
    if messages and messages[-1].get("role") == "user":
        blocks = [b for b in dicts(messages[-1].get("content")) if b.get("type") == "tool_result"]
        results = ids(blocks, "tool_use_id")
    return RequestSays(results, body.get("system"), contents(messages, "user"))


READERS = Readers(
    request=read_request,
    response=read_event,
    # After message_start (model, id), only a `tool_use` block says more.
    later=(b'"tool_use"',),
)
