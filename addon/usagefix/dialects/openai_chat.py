"""OpenAI Chat Completions (and every OpenAI-compatible server that speaks it).

Usage is inclusive (usage-semantics §1, §8.5): `prompt_tokens` ⊇ `cached_tokens` +
`cache_write_tokens`, `completion_tokens` ⊇ `reasoning_tokens`, `total = prompt + completion`.
In a stream, the usage chunk is the one whose `usage` is not null, whatever its `choices` (Azure
sends a first chunk with empty `choices` and no usage; Google puts usage on a content chunk; vLLM
with `continuous_usage_stats` puts a cumulative snapshot on every chunk). Groq puts it in
`x_groq.usage` of its last chunk instead, Moonshot (Kimi) in the finishing choice's `usage`.

A usage block is final (R8) only on a chunk that ends the response: `choices` empty (or absent),
or a choice with a `finish_reason`, or when `[DONE]` follows it. Partial snapshots on the chunks
before it (vLLM's continuous usage, translators) are checked and recorded, but a stream cut before
the final one stays unmeasured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Context, Session, Tally
from usagefix.dialects.inclusive import CHAT, model_of, rewrite_json_usage, rewrite_usage
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
from usagefix.jsonedit import replace_at

__all__ = ["DIALECT", "SPEC", "OpenAIChat"]

# `"usage":null` as the upstream writes it, with the comma that joins it to its neighbour.
_NULL_USAGE = re.compile(r'\s*,\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')


class OpenAIChat:
    name = "openai_chat"
    end_markers: tuple[bytes, ...] = (b"[DONE]",)

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        return rewrite_json_usage(text, tally, ctx, CHAT)

    def stream_session(self, tally: Tally, ctx: Context) -> _ChatStream:
        return _ChatStream(tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        return data.strip() == "[DONE]"


class _ChatStream(Session):
    def might_carry_usage(self, raw: bytes) -> bool:
        # Every chunk of a stream that asked for usage has `"usage":null` except the usage chunk.
        # Inside a JSON string a quote is escaped, so `"usage"` only occurs as a key (or as the
        # exact string value "usage", a harmless false positive that gets parsed and dropped).
        i = raw.find(b'"usage"')
        if i < 0:
            return self._partial() and b"[DONE]" in raw  # the end that makes the last one final
        if self.ctx.strip_usage_chunk:
            return True  # the `"usage":null` keys we caused must go too
        rest = raw[i + 7 : i + 16].lstrip(b" \t:")
        return not rest.startswith(b"null") or raw.find(b'"usage"', i + 7) >= 0

    def _partial(self) -> bool:
        """Usage was seen, but not yet on a chunk that ends the response."""
        return self.tally.snapshots > 0 and not self.tally.final_seen

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        if data.strip() == "[DONE]":
            if self._partial():
                # The stream ended as it should: its last snapshot, whatever its chunk's shape,
                # is the final one (LiteLLM #28735, MLX servers: a usage chunk with
                # `choices: [{"index": 0, "delta": {}}]`).
                self.tally.final_seen = True
            return None
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        final = is_final(obj)
        usage = obj.get("usage")
        text = data
        if self.ctx.strip_usage_chunk and "usage" in obj:
            # The client did not ask for usage; we did. Record it, and give the client the
            # stream it asked for: no usage chunk, no `"usage":null` keys.
            if isinstance(usage, dict):
                rewrite_usage(usage, self.tally, self.ctx, CHAT, model=model_of(obj), final=final)
                self.tally.emitted_usage = None  # measured for the record; the client got none
                if obj.get("choices") == []:
                    return ""  # the whole event goes
            text = data if usage is None else replace_at(data, ["usage"], None)
            text = _NULL_USAGE.sub("", text, count=1)
        elif isinstance(usage, dict):
            emitted = rewrite_usage(usage, self.tally, self.ctx, CHAT, model=model_of(obj), final=final)
            return None if emitted is None else replace_at(data, ["usage"], emitted)
        for path, block in _elsewhere(obj):
            emitted = rewrite_usage(block, self.tally, self.ctx, CHAT, model=model_of(obj), final=final)
            if emitted is not None:
                text = replace_at(text, path, emitted)
        return None if text == data else text


def _elsewhere(chunk: Mapping[str, Any]) -> list[tuple[list[str | int], dict[str, Any]]]:
    """Usage where some servers put it when the top level has none: Groq in `x_groq.usage`,
    Moonshot (Kimi) in the finishing choice's `usage`."""
    groq = chunk.get("x_groq")
    if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
        return [(["x_groq", "usage"], groq["usage"])]
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return []
    return [
        (["choices", i, "usage"], c["usage"])
        for i, c in enumerate(choices)
        if isinstance(c, dict) and isinstance(c.get("usage"), dict)
    ]


def is_final(chunk: Mapping[str, Any]) -> bool:
    """Whether a chunk ends the response (R8): no choices left, or one that has finished."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return True
    return any(isinstance(c, dict) and c.get("finish_reason") for c in choices)


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "**R1** `cached_tokens > prompt_tokens` (or `total_tokens` counting reads beside the "
    "prompt, unless reasoning explains the same gap: then `ambiguous_total_gap`): cache reads "
    "added to `prompt_tokens`. **R2** reads fit, reads + writes do not: cache writes added. "
    "**R3** `total_tokens` counts reasoning (and tool-use prompt tokens) that completion and "
    "prompt leave out (Gemini translated to OpenAI), or, for a Gemini model, thinking that "
    "only the total shows (Gemini's OpenAI-compatible endpoint). **R5** reasoning beside "
    "`completion_tokens` (xAI's own API), when the total says so, or the numbers prove it and "
    "the total does not say otherwise (`reasoning_tokens > completion_tokens` next to `total "
    "= prompt + completion` is flagged `reasoning_exceeds_completion`, not repaired). **R6** "
    "DeepSeek's `prompt_cache_hit_tokens` copied to `prompt_tokens_details.cached_tokens` "
    "(miss tokens are never subtracted). **I3** a `total_tokens` below prompt + completion is "
    "raised; one above is never lowered: tokens nothing explains stay in it and are flagged "
    "`total_exceeds_parts`. **I4** negative counts become 0. Non-standard cache-write keys "
    "(`cached_creation_tokens`, `cache_creation_tokens`) are renamed to `cache_write_tokens`, "
    "never duplicated. A rewritten block keeps the upstream's keys plus what the rule names "
    "(no `total_tokens` where there was none; `null` stays `null`), and only the changed "
    "numbers are re-spelled. The usage chunk is found by `usage != null`, whatever its "
    "`choices`, or in Groq's `x_groq.usage`, or in the finishing choice (Moonshot); it is "
    "final (R8) only on a chunk with empty `choices` or a `finish_reason`: usage on every "
    "chunk (vLLM continuous usage, translators) is checked chunk by chunk, never summed, and "
    "a stream cut before the final chunk stays unmeasured. Provider `cost` is never touched; "
    "OpenRouter's `: OPENROUTER PROCESSING` comments pass byte for byte."
)

SPEC = DialectSpec(
    name="openai_chat",
    rank=10,
    title=(
        "OpenAI Chat Completions, and the OpenAI-compatible family (CLI proxies, LiteLLM, OpenRouter, "
        "DeepSeek, xAI, vLLM, Mistral, Ollama, Azure, Groq, Moonshot)"
    ),
    paths=(r"(?:.*/)?chat/completions",),
    shown_paths="`POST …/chat/completions`",
    framing_shown="JSON, SSE",
    # Groq's `x_groq.usage` and Moonshot's per-choice `usage` are read when the top level has none.
    usage_at=("usage", "x_groq.usage", "choices.*.usage"),
    end_events=("[DONE]",),
    cumulative="final_once",
    fields=(
        Field(key="prompt_tokens", unit="input_total", kind="headline"),
        # Inclusive (§1.1): cached and cache-write tokens are inside prompt_tokens.
        Field(
            key="prompt_tokens_details.cached_tokens",
            unit="cache_read",
            kind="subset",
            aliases=("cache_read_input_tokens", "prompt_cache_hit_tokens"),
        ),
        Field(
            key="prompt_tokens_details.cache_write_tokens",
            unit="cache_write",
            kind="subset",
            aliases=(
                "prompt_tokens_details.cached_creation_tokens",
                "prompt_tokens_details.cache_creation_tokens",
            ),
        ),
        Field(key="completion_tokens", unit="output_total", kind="headline"),
        Field(key="completion_tokens_details.reasoning_tokens", unit="reasoning", kind="subset"),
        Field(key="total_tokens", unit="total", kind="headline"),
    ),
    emits=(
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    ),
    repairs=_REPAIRS,
    # A gateway on localhost speaking this dialect serves OpenAI's models at OpenAI's prices;
    # another vendor's model (`claude-*`) is still found by its name.
    price_provider="openai",
)

DIALECT = OpenAIChat()


# -- what its requests and responses say (sessions, transcript) --


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """A chunk or a body: `model`, `id`, each choice's `tool_calls[].id` (in `message` or
    `delta`), and OpenRouter's `usage.cost`."""
    notes.ids(obj.get("model"), obj.get("id"))
    for choice in dicts(obj.get("choices")):
        for part in ("message", "delta"):
            if isinstance(choice.get(part), dict):
                for call in dicts(choice[part].get("tool_calls")):
                    notes.tool(call.get("id"))
    notes.usage(obj.get("usage"))


def read_request(body: dict[str, Any]) -> RequestSays:
    """The trailing `role: tool` messages, by `tool_call_id`; the first `system` (or o-series
    `developer`) message."""
    messages = dicts(body.get("messages"))
    results = trailing(messages, lambda m: m.get("role") == "tool")
    return RequestSays(
        ids(results, "tool_call_id"), first(messages, ("system", "developer")), contents(messages, "user")
    )


READERS = Readers(request=read_request, response=read_event)
