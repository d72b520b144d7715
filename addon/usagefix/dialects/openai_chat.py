"""OpenAI Chat Completions (and every OpenAI-compatible server that speaks it).

Usage is inclusive (usage-semantics §1, §8.5): `prompt_tokens` ⊇ `cached_tokens` +
`cache_write_tokens`, `completion_tokens` ⊇ `reasoning_tokens`, `total = prompt + completion`.
In a stream, the usage chunk is the one whose `usage` is not null, whatever its `choices` (Azure
sends a first chunk with empty `choices` and no usage; Google puts usage on a content chunk).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Tally
from usagefix.jsonedit import replace_at
from usagefix.normalize import Fired, InclusiveReport, Reader, UsageShapeError, normalize_inclusive
from usagefix.usage import CanonicalUsage

__all__ = ["OpenAIChat"]

# Names upstreams use for cache writes instead of the standard `cache_write_tokens`
# (CLIProxyAPI: `cached_creation_tokens`). We rename them: Langfuse subtracts every detail key
# from the input, so keeping both would count the writes twice (§8.5).
CACHE_WRITE_ALIASES = ("cached_creation_tokens", "cache_creation_tokens")


def read_report(usage: Mapping[str, Any]) -> tuple[InclusiveReport, Reader]:
    rd = Reader()
    ptd = rd.block(usage, "prompt_tokens_details")
    ctd = rd.block(usage, "completion_tokens_details")
    prompt = rd.count(usage, "prompt_tokens")
    completion = rd.count(usage, "completion_tokens")
    if prompt is None or completion is None:
        raise UsageShapeError("usage has no prompt_tokens or completion_tokens")
    # Cache reads: the standard field, or LiteLLM's top-level one, which has been seen beside
    # `cached_tokens: 0` (LiteLLM #11364): take the larger.
    cache_read = max(
        rd.count(ptd, "cached_tokens", "prompt_tokens_details.") or 0,
        rd.count(usage, "cache_read_input_tokens") or 0,
    )
    # Cache writes: the first non-zero of the standard name and its aliases, never their sum.
    writes = [
        rd.count(ptd, k, "prompt_tokens_details.") for k in ("cache_write_tokens", *CACHE_WRITE_ALIASES)
    ]
    writes.append(rd.count(usage, "cache_creation_input_tokens"))
    cache_write = next((w for w in writes if w), 0)
    reasoning = rd.count(ctd, "reasoning_tokens", "completion_tokens_details.") or 0
    total = rd.count(usage, "total_tokens")
    return InclusiveReport(prompt, completion, cache_read, cache_write, reasoning, total), rd


def _rename(d: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """`d` with key `old` renamed to `new`, in the same place."""
    return {(new if k == old else k): v for k, v in d.items()}


def emit(usage: Mapping[str, Any], u: CanonicalUsage) -> dict[str, Any] | None:
    """`usage` carrying `u` in the OpenAI standard, or None when it already does.

    Only the fields the standard defines are touched; everything else (provider `cost`, modality
    details, unknown keys) stays as it was, in its place.
    """
    new = dict(usage)
    new["prompt_tokens"] = u.input_total
    new["completion_tokens"] = u.output_total
    new["total_tokens"] = u.total

    had_ptd = isinstance(usage.get("prompt_tokens_details"), Mapping)
    ptd: dict[str, Any] = dict(usage["prompt_tokens_details"]) if had_ptd else {}
    if u.cache_read or "cached_tokens" in ptd:
        ptd["cached_tokens"] = u.cache_read
    aliases = [k for k in CACHE_WRITE_ALIASES if k in ptd]
    if "cache_write_tokens" not in ptd and aliases:
        ptd = _rename(ptd, aliases.pop(0), "cache_write_tokens")
    for k in aliases:
        del ptd[k]
    if u.cache_write or "cache_write_tokens" in ptd:
        ptd["cache_write_tokens"] = u.cache_write
    if ptd or had_ptd:
        new["prompt_tokens_details"] = ptd

    had_ctd = isinstance(usage.get("completion_tokens_details"), Mapping)
    if had_ctd or u.reasoning:
        ctd: dict[str, Any] = dict(usage["completion_tokens_details"]) if had_ctd else {}
        if u.reasoning or "reasoning_tokens" in ctd:
            ctd["reasoning_tokens"] = u.reasoning
        new["completion_tokens_details"] = ctd
    return None if new == usage else new


def _renamed(usage: Mapping[str, Any]) -> tuple[Fired, ...]:
    ptd = usage.get("prompt_tokens_details")
    if isinstance(ptd, Mapping) and any(k in ptd for k in CACHE_WRITE_ALIASES):
        return (Fired("rename", "cache writes belong in prompt_tokens_details.cache_write_tokens"),)
    return ()


def rewrite_usage(usage: dict[str, Any], tally: Tally, *, final: bool = True) -> dict[str, Any] | None:
    """Normalize one usage block into `tally`; return the block to emit, or None if unchanged."""
    report, reader = read_report(usage)
    outcome = normalize_inclusive(report, reader)
    emitted = emit(usage, outcome.after)
    tally.observe(outcome, usage, emitted, final=final, extra=_renamed(usage) if emitted else ())
    return emitted


class OpenAIChat:
    name = "openai_chat"
    end_marker = b"[DONE]"

    def rewrite_json(self, text: str, tally: Tally) -> str | None:
        obj = json.loads(text)
        if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
            return None
        emitted = rewrite_usage(obj["usage"], tally)
        return None if emitted is None else replace_at(text, ["usage"], emitted)

    def stream_session(self, tally: Tally) -> _ChatStream:
        return _ChatStream(tally)


class _ChatStream:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def might_carry_usage(self, raw: bytes) -> bool:
        # Every chunk of a stream that asked for usage has `"usage":null` except the usage chunk.
        # Inside a JSON string a quote is escaped, so `"usage"` only occurs as a key (or as the
        # exact string value "usage", a harmless false positive that gets parsed and dropped).
        i = raw.find(b'"usage"')
        if i < 0:
            return False
        rest = raw[i + 7 : i + 16].lstrip(b" \t:")
        return not rest.startswith(b"null") or raw.find(b'"usage"', i + 7) >= 0

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        if data.strip() == "[DONE]":
            return None
        obj = json.loads(data)
        if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
            return None
        emitted = rewrite_usage(obj["usage"], self.tally)
        return None if emitted is None else replace_at(data, ["usage"], emitted)
