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
from typing import Any

from usagefix.dialects.engine import FieldMapDialect
from usagefix.dialects.readers import Readers, RequestSays, ResponseNotes, contents, dicts, ids
from usagefix.dialects.spec import DialectSpec, Field

__all__ = ["DIALECT", "SPEC", "Gemini"]


class Gemini(FieldMapDialect):
    """Gemini's own oddities: no end event (a stream ends on the chunk that finishes it, as R8
    says), and usage told by its block's name (a snapshot may carry any of its counts)."""

    def __init__(self, spec: DialectSpec) -> None:
        super().__init__(spec)
        self.needles = (b"usageMetadata",)

    def is_end(self, name: str | None, data: str) -> bool:
        try:
            obj = json.loads(data)
        except ValueError:
            return False
        return isinstance(obj, dict) and self.finished(obj, name)


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "**I3** `totalTokenCount` below prompt + candidates + thoughts + tool-use prompt is "
    "raised (one above is kept and flagged). **R1** cache left out of `promptTokenCount`. "
    "Snapshots are cumulative: never summed; the last is authoritative; a final one below an "
    "earlier one is flagged (`snapshot_decreased`; dips between server-side tool turns are "
    "not). An absent headline is 0 (proto3 omits zeros); one sent as `null` on the finishing "
    "chunk leaves the response `unmeasured` (`unreported:KEY`), the chunk untouched."
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
        Field(key="candidatesTokenCount", unit="output_total", kind="headline"),
        Field(key="cachedContentTokenCount", unit="cache_read", kind="subset"),
        Field(key="thoughtsTokenCount", unit="reasoning", kind="beside"),
        Field(key="toolUsePromptTokenCount", unit="input_total", kind="beside"),
        Field(key="totalTokenCount", unit="total", kind="headline"),
    ),
    emits=(
        "promptTokenCount",
        "candidatesTokenCount",
        "totalTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
    ),
    repairs=_REPAIRS,
    # R8: a snapshot is final on a chunk whose candidate finished, or with none (a usage-only
    # chunk, or a prompt blocked by `promptFeedback.blockReason`).
    finished_by=("candidates", "finishReason"),
    # Gemini's JSON omits zero counts (proto3): an absent headline reads as 0. One sent as null
    # (a translator's; proto3 never sends one) is unknown (`unreported:KEY`).
    absent_headline="zero",
    omits_zero_counts=True,
    # Vertex sends `{"trafficType": …}`-only snapshots on intermediate chunks: they carry no counts.
    skips="no_key",
    price_provider="google",
    # `…/models/<name>:generateContent`: the body never names it.
    model_in_path=True,
)

DIALECT = Gemini(SPEC)


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


READERS = Readers(
    request=read_request,
    response=read_event,
    # After the first chunk (modelVersion, responseId), only a functionCall part says more.
    later=(b'"functionCall"',),
)
