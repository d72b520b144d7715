"""Google Gemini and Vertex AI: `generateContent` and `streamGenerateContent`.

`usageMetadata` (usage-semantics §4): `promptTokenCount` includes `cachedContentTokenCount`;
`thoughtsTokenCount` and `toolUsePromptTokenCount` stand beside candidates and prompt;
`totalTokenCount` is the sum of prompt, candidates, thoughts and tool-use prompt. In a stream,
each chunk's snapshot is cumulative so far and the last is authoritative: never summed (R7).
Vertex sends `{"trafficType": …}`-only snapshots on intermediate chunks: they carry no counts.
With server-side tools (code execution, file search) Gemini 3's snapshots dip between tool turns
and the final one covers them all: only a final snapshot below an earlier one is flagged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Context, Session, Tally, unapplied
from usagefix.dialects.readers import Readers, RequestSays, ResponseNotes, contents, dicts, ids
from usagefix.dialects.spec import DialectSpec, Field
from usagefix.jsonedit import replace_at
from usagefix.normalize import GeminiReport, Reader, normalize_gemini
from usagefix.usage import CanonicalUsage

__all__ = ["DIALECT", "SPEC", "Gemini"]

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
            cached=rd.count(um, "cachedContentTokenCount"),
            thoughts=rd.count(um, "thoughtsTokenCount"),
            tool_use=rd.count(um, "toolUsePromptTokenCount"),
            total=rd.count(um, "totalTokenCount"),
        ),
        rd,
    )


def emit(um: Mapping[str, Any], u: CanonicalUsage, r: GeminiReport) -> dict[str, Any] | None:
    """`um` carrying `u` in Gemini's own sums, or None when it already does.

    A key the upstream left out stays out unless a rule changed what it counts (R1 on the
    prompt); `totalTokenCount` is written only where it was.
    """
    new = dict(um)
    values = {
        "promptTokenCount": (u.input_total - (r.tool_use or 0), r.prompt),
        "candidatesTokenCount": (u.output_total - (u.reasoning or 0), r.candidates),
    }
    for k, (v, read) in values.items():
        if um.get(k) is not None or v != read:
            new[k] = v
    if um.get("totalTokenCount") is not None:
        new["totalTokenCount"] = u.total
    for k, v in new.items():  # never emit a negative count (I4)
        if k in COUNTS and isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
            new[k] = 0
    return None if new == um else new


def _finished(obj: Mapping[str, Any]) -> bool:
    """Whether a chunk ends the response: a candidate finished, or there is none (a usage-only
    chunk, or a prompt blocked by `promptFeedback.blockReason`)."""
    cands = obj.get("candidates")
    if not isinstance(cands, list) or not cands:
        return True
    return any(isinstance(c, dict) and c.get("finishReason") for c in cands)


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


class _GeminiStream(Session):
    def __init__(self, tally: Tally, ctx: Context) -> None:
        super().__init__(tally, ctx)
        self._peak = 0
        """The largest total of the snapshots so far."""

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
        if final and outcome.after.total < self._peak:
            # The final snapshot is authoritative and cumulative: one below an earlier snapshot
            # means that one was too large, and it has already gone to the client. (Snapshots
            # between tool turns may dip; the final one covers every turn.)
            self.tally.flag("snapshot_decreased")
        self._peak = max(self._peak, outcome.after.total)
        if self.observe_only:
            self.tally.observe(unapplied(outcome), um, None, final=final)
            return None
        emitted = emit(um, outcome.after, report)
        self.tally.observe(outcome, um, emitted, final=final)
        return None if emitted is None else replace_at(text, ["usageMetadata"], emitted)


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "**I3** `totalTokenCount` below prompt + candidates + thoughts + tool-use prompt is "
    "raised (one above is kept and flagged). **R1** cache left out of `promptTokenCount`. "
    "Snapshots are cumulative: never summed; the last is authoritative; a final one below an "
    "earlier one is flagged (`snapshot_decreased`; dips between server-side tool turns are "
    "not)."
)

SPEC = DialectSpec(
    name="gemini",
    rank=40,
    title="Gemini, Vertex AI",
    # Google's custom methods: `…/models/NAME:generateContent` (Gemini API, Vertex AI).
    paths=(r"(?:.*/)?[^/]*:(?:generateContent|streamGenerateContent)",),
    shown_paths="`…:generateContent`, `…:streamGenerateContent`",
    # AI Studio streams one JSON array (as application/json) unless asked for SSE.
    path_framings=((r"^(?!.*alt=sse).*:streamGenerateContent", "json_array"),),
    framing_shown="JSON, SSE (`alt=sse`, CRLF on Vertex), and the streamed JSON array without `alt=sse`",
    usage_at=("usageMetadata",),
    end_events=("finishReason",),
    cumulative="last_snapshot",
    fields=(
        # promptTokenCount includes cached content; thoughts and tool-use prompt stand beside (§4.1).
        Field(key="promptTokenCount", unit="input_total", kind="headline"),
        Field(key="cachedContentTokenCount", unit="cache_read", kind="subset"),
        Field(key="toolUsePromptTokenCount", unit="input_total", kind="beside"),
        Field(key="candidatesTokenCount", unit="output_total", kind="headline"),
        Field(key="thoughtsTokenCount", unit="reasoning", kind="beside"),
        Field(key="totalTokenCount", unit="total", kind="headline"),
    ),
    emits=COUNTS,
    repairs=_REPAIRS,
    price_provider="google",
    # `…/models/<name>:generateContent`: the body never names it.
    model_in_path=True,
)

DIALECT = Gemini()


# -- what its requests and responses say (sessions, transcript) --


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """`modelVersion`, `responseId`, and each candidate's `functionCall` parts (by their `id`)."""
    notes.ids(obj.get("modelVersion"), obj.get("responseId"))
    for candidate in dicts(obj.get("candidates")):
        content = candidate.get("content")
        for part in dicts(content.get("parts") if isinstance(content, dict) else None):
            call = part.get("functionCall")
            if isinstance(call, dict):
                notes.tool(call.get("id"))  # optional in Gemini: absent ids index nothing


def read_request(body: dict[str, Any]) -> RequestSays:
    """`functionResponse.id` parts of the last content; `systemInstruction` (REST's camelCase or
    the protobuf JSON's snake_case); user contents hold `parts`."""
    messages = dicts(body.get("contents"))
    results: tuple[str, ...] = ()
    if messages:
        parts = dicts(messages[-1].get("parts"))
        calls = [p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)]
        results = ids(calls, "id")
    system = body.get("systemInstruction", body.get("system_instruction"))
    system_parts = system.get("parts") if isinstance(system, dict) else None
    return RequestSays(results, system_parts, contents(messages, "user", "parts"))


READERS = Readers(request=read_request, response=read_event)
