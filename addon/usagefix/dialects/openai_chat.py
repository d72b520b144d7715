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

from usagefix.dialects.base import Context, Tally
from usagefix.dialects.engine import FieldMapDialect, FieldMapSession, Read
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
from usagefix.dialects.spec import Copy, DialectSpec, Field
from usagefix.jsonedit import replace_at
from usagefix.normalize import Outcome, Reader

__all__ = ["DIALECT", "SPEC", "OpenAIChat", "check_deepseek", "from_gemini", "judge_translated"]

# A `"usage"` key whose value is not null (the spaces and tabs JSON allows, never a line end).
_USAGE_NOT_NULL = re.compile(rb'"usage"(?![ \t]*:[ \t]*null)')
# `"usage":null` as the upstream writes it, with the comma that joins it to its neighbour.
_NULL_USAGE = re.compile(r'\s*,\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')


# -- hooks, shared with OpenAI Responses (the same usage under other names) ---------------------


def check_deepseek(usage: Mapping[str, Any], read: Read, tally: Tally) -> None:
    """DeepSeek: hit + miss = prompt. We never subtract miss tokens (R6); a mismatch is flagged."""
    hit = Reader().count(usage, "prompt_cache_hit_tokens")  # read (and clamped) by the field map
    miss = read.reader.count(usage, "prompt_cache_miss_tokens")
    prompt = read.count("input_total", "headline")
    if hit is not None and miss is not None and prompt is not None and hit + miss != prompt:
        read.reader.anomalies.append("deepseek_hit_plus_miss_is_not_prompt")


def from_gemini(model: str | None) -> bool:
    """A Gemini model behind an OpenAI dialect: its reasoning repair is R3 (usage-semantics §4)."""
    return model is not None and "gemini" in model.lower()


def judge_translated(outcome: Outcome, read: Read, ctx: Context, model: str | None, tally: Tally) -> None:
    """A Claude model served in an OpenAI dialect: translators disagree on inclusivity (§6.6).
    Its cache reads fit inside the prompt: right for an inclusive upstream, wrong for one that
    left them out. Nothing proves which; a profile can say (`prompt_cache_reads`)."""
    declared = ctx.profile.prompt_cache_reads if ctx.profile is not None else None
    if (
        read.count("cache_read", "subset")
        and declared is None
        and not any(f.rule == "R1" for f in outcome.fired)
        and model is not None
        and "claude" in model.lower()
    ):
        tally.flag("ambiguous_inclusivity")


# -- Chat's own oddities: stream usage we asked for, and `[DONE]` ---------------------------------


class OpenAIChat(FieldMapDialect):
    def is_end(self, name: str | None, data: str) -> bool:
        return data.strip() == "[DONE]"  # data, not JSON: the one end event Chat has

    def stream_session(self, tally: Tally, ctx: Context) -> _ChatStream:
        return _ChatStream(self, tally, ctx)


class _ChatStream(FieldMapSession):
    def might_carry_usage(self, raw: bytes) -> bool:
        # Every chunk of a stream that asked for usage has `"usage":null` except the usage chunk.
        # Inside a JSON string a quote is escaped, so `"usage"` only occurs as a key (or as the
        # exact string value "usage", a harmless false positive that gets parsed and dropped).
        # A usage block somewhere (top level, Groq's `x_groq`, a choice) is a `"usage"` not
        # followed by null; the pattern holds no line end, so it tests a run as each event.
        if _USAGE_NOT_NULL.search(raw) is not None:
            return True
        if self.ctx.strip_usage_chunk and raw.find(b'"usage"') >= 0:
            return True  # the `"usage":null` keys we caused must go too
        # The end that makes the last snapshot final (`_partial()`, inlined: this runs on every event).
        tally = self.tally
        return tally.snapshots > 0 and not tally.final_seen and raw.find(b"[DONE]") >= 0

    def quiet(self, run: bytes) -> bool:
        # `might_carry_usage` and the end markers in one call (the framer's test of every run):
        # its test of `[DONE]` for a partial snapshot is the end marker's (`[DONE]` is Chat's
        # one end marker), which holds always.
        if _USAGE_NOT_NULL.search(run) is not None:
            return False
        for m in self.dialect.end_markers:
            if run.find(m) >= 0:
                return False
        return not (self.ctx.strip_usage_chunk and run.find(b'"usage"') >= 0)

    def _partial(self) -> bool:
        """Usage was seen, but not yet on a chunk that ends the response."""
        return self.tally.snapshots > 0 and not self.tally.final_seen

    def normalize_event(self, name: str | None, data: str) -> str | None:
        if data.strip() == "[DONE]":
            if self._partial():
                # The stream ended as it should: its last snapshot, whatever its chunk's shape,
                # is the final one (LiteLLM #28735, MLX servers: a usage chunk with
                # `choices: [{"index": 0, "delta": {}}]`).
                self.tally.final_seen = True
            return None
        if not self.ctx.strip_usage_chunk:
            return super().normalize_event(name, data)
        obj = json.loads(data)
        if not isinstance(obj, dict) or "usage" not in obj:
            return super().normalize_event(name, data)
        # The client did not ask for usage; we did. Record it, and give the client the stream it
        # asked for: no usage chunk, no `"usage":null` keys.
        dialect, usage = self.dialect, obj["usage"]
        final = dialect.finished(obj, name)
        if isinstance(usage, dict):
            dialect.normalize_object(obj, data, self.tally, self.ctx, final=final, at=("usage",))
            self.tally.emitted_usage = None  # measured for the record; the client got none
            if obj.get("choices") == []:
                return ""  # the whole event goes
        text = data if usage is None else replace_at(data, ["usage"], None)
        text = _NULL_USAGE.sub("", text, count=1)
        text = dialect.normalize_object(obj, text, self.tally, self.ctx, final=final, at=SPEC.usage_at[1:])
        return None if text == data else text


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
        Field(key="completion_tokens", unit="output_total", kind="headline"),
        # Inclusive (§1.1): cached and cache-write tokens are inside prompt_tokens.
        Field(
            key="prompt_tokens_details.cached_tokens",
            unit="cache_read",
            kind="subset",
            # LiteLLM's top-level one, seen beside `cached_tokens: 0` (LiteLLM #11364); DeepSeek's
            # `prompt_cache_hit_tokens` (R6). The largest reported counts; none reported (absent
            # or null) is unknown, not 0.
            aliases=("cache_read_input_tokens", "prompt_cache_hit_tokens"),
            pick="largest",
            # R1/R2, having moved cache reads into the prompt, say where they are (else a client
            # bills them at the full rate); R6 copies DeepSeek's hit tokens to the standard key.
            added_by=("R1", "R2"),
            copies=(Copy(alias="prompt_cache_hit_tokens", rule="R6", by="DeepSeek"),),
            alias_note="LiteLLM #11364",
        ),
        Field(
            key="prompt_tokens_details.cache_write_tokens",
            unit="cache_write",
            kind="subset",
            # CLIProxyAPI's `cached_creation_tokens` and others' names are renamed to the standard
            # one: Langfuse subtracts every detail key from the input, so keeping both would count
            # the writes twice (§8.5). The first non-zero counts, never their sum.
            aliases=(
                "prompt_tokens_details.cached_creation_tokens",
                "prompt_tokens_details.cache_creation_tokens",
                "cache_creation_input_tokens",
            ),
            pick="first_nonzero",
            added_by=("R2",),
            alias_note="LiteLLM #11364",
        ),
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
    # R8: final only on a chunk with no choices left, or one that has finished.
    finished_by=("choices", "finish_reason"),
    # A block with one headline and not the other is not Chat's usage.
    absent_headline="invalid",
    # I4: a negative token count anywhere in the block becomes 0 (never a provider's `cost`,
    # which may be a credit).
    count_keys=r".*_tokens",
    # A gateway on localhost speaking this dialect serves OpenAI's models at OpenAI's prices;
    # another vendor's model (`claude-*`) is still found by its name.
    price_provider="openai",
)

DIALECT = OpenAIChat(SPEC, check_deepseek, from_gemini=from_gemini, judge=judge_translated)


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


READERS = Readers(
    request=read_request,
    response=read_event,
    # After the first chunk (model, id), only a tool call or OpenRouter's cost says more.
    later=(b'"tool_calls"', b'"cost"'),
)
