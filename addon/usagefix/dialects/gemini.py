"""Google Gemini and Vertex AI: `generateContent` and `streamGenerateContent`.

`usageMetadata` (usage-semantics §4): `promptTokenCount` includes `cachedContentTokenCount`;
`thoughtsTokenCount` and `toolUsePromptTokenCount` stand beside candidates and prompt;
`totalTokenCount` is the sum of prompt, candidates, thoughts and tool-use prompt. In a stream,
each chunk's snapshot is cumulative so far and the last is authoritative: never summed (R7).
Vertex sends `{"trafficType": …}`-only snapshots on intermediate chunks: they carry no counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Context, Tally
from usagefix.jsonedit import replace_at
from usagefix.normalize import GeminiReport, Reader, normalize_gemini
from usagefix.usage import CanonicalUsage

__all__ = ["Gemini"]

COUNTS = (
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "cachedContentTokenCount",
    "thoughtsTokenCount",
    "toolUsePromptTokenCount",
)


def read_report(um: Mapping[str, Any]) -> tuple[GeminiReport, Reader]:
    rd = Reader()
    return (
        GeminiReport(
            prompt=rd.count(um, "promptTokenCount") or 0,
            candidates=rd.count(um, "candidatesTokenCount") or 0,
            cached=rd.count(um, "cachedContentTokenCount") or 0,
            thoughts=rd.count(um, "thoughtsTokenCount") or 0,
            tool_use=rd.count(um, "toolUsePromptTokenCount") or 0,
            total=rd.count(um, "totalTokenCount"),
        ),
        rd,
    )


def emit(um: Mapping[str, Any], u: CanonicalUsage, r: GeminiReport) -> dict[str, Any] | None:
    """`um` carrying `u` in Gemini's own sums, or None when it already does. Absent keys stay absent
    unless they now count something."""
    new = dict(um)
    values = {
        "promptTokenCount": u.input_total - r.tool_use,
        "candidatesTokenCount": u.output_total - u.reasoning,
        "totalTokenCount": u.total,
    }
    for k, v in values.items():
        if k in um or v:
            new[k] = v
    for k, v in new.items():  # never emit a negative count (I4)
        if k in COUNTS and isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
            new[k] = 0
    return None if new == um else new


def _finished(obj: Mapping[str, Any]) -> bool:
    cands = obj.get("candidates")
    return isinstance(cands, list) and any(isinstance(c, dict) and c.get("finishReason") for c in cands)


class Gemini:
    name = "gemini"
    end_markers: tuple[bytes, ...] = (b"finishReason",)

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            return None
        return _GeminiStream(tally, ctx).rewrite_object(obj, text, final=True)

    def stream_session(self, tally: Tally, ctx: Context) -> _GeminiStream:
        return _GeminiStream(tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        try:
            obj = json.loads(data)
        except ValueError:
            return False
        return isinstance(obj, dict) and _finished(obj)


class _GeminiStream:
    def __init__(self, tally: Tally, ctx: Context) -> None:
        self.tally = tally
        self.observe_only = ctx.profile is not None and ctx.profile.observe_only
        self._last_total = 0

    def might_carry_usage(self, raw: bytes) -> bool:
        return b"usageMetadata" in raw

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        return self.rewrite_object(obj, data, final=_finished(obj))

    def rewrite_object(self, obj: Mapping[str, Any], text: str, *, final: bool) -> str | None:
        um = obj.get("usageMetadata")
        if not isinstance(um, dict) or not any(k in um for k in COUNTS):
            return None  # no usage, or a `{"trafficType": …}`-only snapshot
        report, reader = read_report(um)
        outcome = normalize_gemini(report, reader)
        if outcome.after.total < self._last_total:
            # Snapshots are cumulative: one that shrinks means an earlier one was too large,
            # and that one has already gone to the client.
            self.tally.flag("snapshot_decreased")
        self._last_total = outcome.after.total
        emitted = None if self.observe_only else emit(um, outcome.after, report)
        self.tally.observe(outcome, um, emitted, final=final)
        return None if emitted is None else replace_at(text, ["usageMetadata"], emitted)
