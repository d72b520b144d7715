"""Between a usage block as read (`fieldmap.Read`) and canonical usage, by the field map's kinds.

Which sums a dialect's block follows is data: a cache count `beside` the input headline makes
it exclusive (Anthropic, Bedrock: usage-semantics §3, §5); other counts beside their headlines
with the cache inside make Gemini's sums (§4.1); else it is inclusive (OpenAI's, §1). Normalizing
is `normalize.py`'s; this module only builds its report and reads the result back per slot.
"""

from __future__ import annotations

from typing import Literal

from usagefix.dialects.base import Context
from usagefix.dialects.fieldmap import Read
from usagefix.dialects.spec import Field
from usagefix.normalize import (
    Declared,
    ExclusiveReport,
    GeminiReport,
    InclusiveReport,
    Outcome,
    normalize_exclusive,
    normalize_gemini,
    normalize_inclusive,
)
from usagefix.usage import CanonicalUsage

__all__ = ["Sums", "outcome_of", "slot_counts", "sums_of"]

Sums = Literal["inclusive", "exclusive", "beside"]


def sums_of(fields: tuple[Field, ...]) -> Sums:
    """How a field map's counts add up, from their kinds."""
    caches = [f for f in fields if f.unit in ("cache_read", "cache_write")]
    if any(f.kind == "beside" for f in caches):
        return "exclusive"  # cache counts stand beside the input headline, not inside it
    if any(f.kind == "beside" for f in fields):
        return "beside"  # other counts stand beside their headlines, the cache inside
    return "inclusive"


def outcome_of(read: Read, sums: Sums, ctx: Context, *, from_gemini: bool = False) -> Outcome:
    """The block as read, normalized (with what reading found: I4 clamps)."""
    input_head = read.count("input_total", "headline") or 0
    output_head = read.count("output_total", "headline") or 0
    if sums == "exclusive":
        report = ExclusiveReport(
            uncached=input_head,
            output=output_head,
            cache_read=read.count("cache_read", "beside"),
            cache_write=read.count("cache_write", "beside"),
            cache_write_5m=read.count("cache_write_5m", "subset"),
            cache_write_1h=read.count("cache_write_1h", "subset"),
            reasoning=read.count("reasoning", "subset"),
        )
        return normalize_exclusive(report, read.reader)
    if sums == "beside":
        gemini_report = GeminiReport(
            prompt=input_head,
            candidates=output_head,
            cached=read.count("cache_read", "subset"),
            thoughts=read.count("reasoning", "beside"),
            tool_use=read.count("input_total", "beside"),
            total=read.count("total", "headline"),
        )
        return normalize_gemini(gemini_report, read.reader)
    p = ctx.profile
    declared = (
        Declared()
        if p is None
        else Declared(p.prompt_cache_reads, p.prompt_cache_writes, p.completion_reasoning)
    )
    inclusive = InclusiveReport(
        input_head,
        output_head,
        read.count("cache_read", "subset"),
        read.count("cache_write", "subset"),
        read.count("reasoning", "subset"),
        read.count("total", "headline"),
    )
    return normalize_inclusive(inclusive, read.reader, declared, from_gemini=from_gemini)


def slot_counts(u: CanonicalUsage, read: Read) -> dict[str, int | None]:
    """Each slot's count in the normalized usage `u`: a headline without the counts reported
    beside it (Anthropic's cache, Gemini's tool-use prompt and thoughts stand next to it)."""
    units = ("input_total", "cache_read", "cache_write")
    beside_in = sum(read.count(unit, "beside") or 0 for unit in units)
    beside_out = (u.reasoning or 0) if "reasoning/beside" in read.counts else 0
    return {
        "input_total/headline": u.input_total - beside_in,
        "input_total/beside": read.count("input_total", "beside"),
        "output_total/headline": u.output_total - beside_out,
        "cache_read/subset": u.cache_read,
        "cache_read/beside": u.cache_read,
        "cache_write/subset": u.cache_write,
        "cache_write/beside": u.cache_write,
        "reasoning/subset": u.reasoning,
        "reasoning/beside": u.reasoning,
        "total/headline": u.total,
    }
