"""Native sums read into canonical terms: Anthropic's exclusive block (usage-semantics §3, also
Bedrock's, §5) and Gemini's `usageMetadata` (§4.1). Rule IDs are those of §8."""

from __future__ import annotations

from dataclasses import dataclass

from usagefix.reading import Fired, Outcome, Reader, carried, positive
from usagefix.usage import CanonicalUsage

__all__ = ["ExclusiveReport", "GeminiReport", "normalize_exclusive", "normalize_gemini"]


@dataclass(frozen=True, slots=True)
class ExclusiveReport:
    """An Anthropic-shaped block: uncached input with cache reads and writes beside it."""

    uncached: int
    output: int
    cache_read: int | None = None
    cache_write: int | None = None
    cache_write_5m: int | None = None
    cache_write_1h: int | None = None
    reasoning: int | None = None


def normalize_exclusive(r: ExclusiveReport, reader: Reader | None = None) -> Outcome:
    """Read an exclusive report into canonical terms. Nothing here is provably wrong by itself,
    so nothing is repaired beyond I4 (done by the reader); inconsistencies are flagged."""
    fired, anomalies = carried(reader)
    usage = CanonicalUsage(
        input_total=r.uncached + (r.cache_read or 0) + (r.cache_write or 0),
        cache_read=r.cache_read,
        cache_write=r.cache_write,
        cache_write_5m=r.cache_write_5m,
        cache_write_1h=r.cache_write_1h,
        output_total=r.output,
        reasoning=r.reasoning,
    )
    split = (r.cache_write_5m, r.cache_write_1h)
    if split != (None, None) and (r.cache_write_5m or 0) + (r.cache_write_1h or 0) != (r.cache_write or 0):
        anomalies.append("cache_creation_split_mismatch")
    if (r.reasoning or 0) > r.output:
        anomalies.append("reasoning_exceeds_output")
    return Outcome(usage, usage, tuple(fired), tuple(dict.fromkeys(anomalies)))


@dataclass(frozen=True, slots=True)
class GeminiReport:
    """A Gemini `usageMetadata`: prompt ⊇ cached; thoughts and tool-use prompt stand beside (§4.1).

    Gemini's JSON omits zero counts (proto3), so an absent headline reads as 0; an absent
    sub-count stays None (not reported).
    """

    prompt: int
    candidates: int
    cached: int | None = None
    thoughts: int | None = None
    tool_use: int | None = None
    total: int | None = None


def normalize_gemini(r: GeminiReport, reader: Reader | None = None) -> Outcome:
    """Read Gemini's counts into canonical terms; repair R1 (cache outside prompt) and I3.

    A `totalTokenCount` above the sum of its parts is kept (`unattributed`) and flagged, never
    lowered; one below it is raised (I3).
    """
    fired, anomalies = carried(reader)
    cached, thoughts, tool_use = r.cached or 0, r.thoughts or 0, r.tool_use or 0
    input_total, output_total = r.prompt + tool_use, r.candidates + thoughts
    before = CanonicalUsage(
        input_total=input_total,
        cache_read=r.cached,
        output_total=output_total,
        reasoning=r.thoughts,
        unattributed=positive(None if r.total is None else r.total - input_total - output_total),
    )
    if cached > r.prompt:
        # promptTokenCount includes cached content under the spec; less prompt than cache means
        # a translator left the cache out.
        fired.append(
            Fired(
                "R1",
                "cache reads were left out of promptTokenCount",
                {"input_total": (input_total, input_total + cached)},
            )
        )
        input_total += cached
        anomalies.append("exclusive_prompt_repaired")
    gap = None if r.total is None else r.total - input_total - output_total
    unattributed = positive(gap)
    if unattributed:
        anomalies.append("total_exceeds_parts")
    after = before.model_copy(update={"input_total": input_total, "unattributed": unattributed})
    if r.total is not None and r.total != after.total:
        fired.append(
            Fired(
                "I3",
                "totalTokenCount is prompt + candidates + thoughts + tool-use prompt",
                {"total": (r.total, after.total)},
            )
        )
    return Outcome(before, after, tuple(fired), tuple(dict.fromkeys(anomalies)))
