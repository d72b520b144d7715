"""Pure normalization: what an upstream reported → canonical usage, and the rules that fired.

Rule IDs are those of reference/usage-semantics.md §8.2 (invariants I1–I4) and §8.4 (repairs
R1–R8). We repair only what is provably wrong, and say which rule did it and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from usagefix.usage import CanonicalUsage

__all__ = [
    "Declared",
    "ExclusiveReport",
    "Fired",
    "InclusiveReport",
    "Outcome",
    "Reader",
    "UsageShapeError",
    "GeminiReport",
    "normalize_exclusive",
    "normalize_gemini",
    "normalize_inclusive",
]


class UsageShapeError(ValueError):
    """A usage block is not shaped as its dialect says (a count that is not a number, …)."""


@dataclass(frozen=True, slots=True)
class Fired:
    """One rule that changed a value, with the canonical fields it changed: name → (before, after)."""

    rule: str
    reason: str
    changes: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The upstream's own reading (`before`), the repaired one (`after`), and why they differ."""

    before: CanonicalUsage
    after: CanonicalUsage
    fired: tuple[Fired, ...] = ()
    anomalies: tuple[str, ...] = ()


class Reader:
    """Reads counts out of a usage block, clamping negatives to 0 (I4) and noting it."""

    def __init__(self) -> None:
        self.fired: list[Fired] = []
        self.anomalies: list[str] = []

    def count(self, block: Mapping[str, Any] | None, key: str, where: str = "") -> int | None:
        """The count at `key`, or None when absent or null."""
        if block is None:
            return None
        v = block.get(key)
        if v is None:
            return None
        name = f"{where}{key}"
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise UsageShapeError(f"{name} is {v!r}, not a count")
        if isinstance(v, float):
            if not v.is_integer():
                raise UsageShapeError(f"{name} is {v!r}, not a whole count")
            v = int(v)
        if v < 0:
            self.fired.append(Fired("I4", f"{name} was negative; counts are never negative", {name: (v, 0)}))
            self.anomalies.append(f"negative_count:{name}")
            return 0
        return v

    @staticmethod
    def block(parent: Mapping[str, Any] | None, key: str) -> Mapping[str, Any] | None:
        """A nested object (`prompt_tokens_details`, …), or None when absent or null."""
        if parent is None:
            return None
        v = parent.get(key)
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise UsageShapeError(f"{key} is {v!r}, not an object")
        return v


def _carried(reader: Reader | None) -> tuple[list[Fired], list[str]]:
    """What reading already found (I4 clamps), to start a rule function's findings with."""
    return (list(reader.fired), list(reader.anomalies)) if reader else ([], [])


@dataclass(frozen=True, slots=True)
class InclusiveReport:
    """An OpenAI-shaped block as reported: headlines that should contain their sub-counts."""

    prompt: int
    completion: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    total: int | None = None
    """The upstream's own `total_tokens`, kept to detect the R1 tell and I3 violations."""


@dataclass(frozen=True, slots=True)
class Declared:
    """What a profile says about how an upstream counts (None: unknown, prove it or leave it)."""

    cache_reads: str | None = None
    cache_writes: str | None = None
    reasoning: str | None = None


NOTHING_DECLARED = Declared()


def normalize_inclusive(
    r: InclusiveReport,
    reader: Reader | None = None,
    declared: Declared = NOTHING_DECLARED,
    *,
    from_gemini: bool = False,
) -> Outcome:
    """Repair an inclusive (OpenAI-shaped) report: R1, R2, R3, R5, then I1–I3 hold.

    A repair applies when the numbers prove it, or when a profile declares it (`declared`).
    `from_gemini` (a Gemini model behind an OpenAI dialect) names a reasoning repair R3, not R5.
    """
    fired, anomalies = _carried(reader)
    before = CanonicalUsage(
        input_total=r.prompt,
        cache_read=r.cache_read,
        cache_write=r.cache_write,
        output_total=r.completion,
        reasoning=r.reasoning,
    )
    input_total, output_total = r.prompt, r.completion

    def fire(rule: str, reason: str, name: str, old: int, new: int) -> None:
        fired.append(Fired(rule, reason, {name: (old, new)}))

    # R1: cached tokens are a subset of prompt_tokens under the spec, so more cache reads than
    # prompt can only mean the upstream left them out (the CLIProxyAPI Dec-2025..Mar-2026 translator).
    r1 = None
    if r.cache_read > r.prompt:
        r1 = "cache reads were left out of prompt_tokens"
    elif r.cache_read and declared.cache_reads == "excluded":
        r1 = "cache reads were left out of prompt_tokens (declared by the upstream's profile)"
    elif (
        r.cache_read
        and declared.cache_reads != "included"
        and r.total is not None
        and r.total == r.prompt + r.completion + r.cache_read
    ):
        r1 = "cache reads were left out of prompt_tokens (total_tokens counts them beside it)"
    if r1:
        input_total = r.prompt + r.cache_read
        fire("R1", r1, "input_total", r.prompt, input_total)
        anomalies.append("exclusive_prompt_repaired")

    # R2: reads fit, reads + writes do not: cache writes were left out (old LiteLLM transform).
    r2 = None
    if r.cache_read + r.cache_write > input_total:
        r2 = "cache writes were left out of prompt_tokens"
    elif r.cache_write and declared.cache_writes == "excluded":
        r2 = "cache writes were left out of prompt_tokens (declared by the upstream's profile)"
    if r2:
        fire("R2", r2, "input_total", input_total, input_total + r.cache_write)
        input_total += r.cache_write

    # R3 / R5: the upstream's total counts reasoning (and, for Gemini, tool-use prompt tokens)
    # that completion and prompt leave out: Gemini translated to OpenAI (candidates exclude
    # thoughts: R3), or xAI's own API (R5).
    gap = (r.total - input_total - output_total) if r.total is not None else 0
    if r.reasoning and declared.reasoning != "included" and gap >= r.reasoning:
        output_total += r.reasoning
        rule = "R3" if from_gemini or gap > r.reasoning else "R5"
        fire(rule, "reasoning tokens were left out of completion_tokens (total_tokens counts them)",
             "output_total", r.completion, output_total)  # fmt: skip
        if gap > r.reasoning:
            fire("R3", "tool-use prompt tokens were left out of prompt_tokens (total_tokens counts them)",
                 "input_total", input_total, input_total + gap - r.reasoning)  # fmt: skip
            input_total += gap - r.reasoning
    elif r.reasoning > output_total or (r.reasoning and declared.reasoning == "excluded"):
        # R5: reasoning is a subset of completion_tokens; more reasoning than completion means
        # the upstream reported it beside completion (xAI direct).
        output_total = r.completion + r.reasoning
        why = "" if r.reasoning > r.completion else " (declared by the upstream's profile)"
        fire(
            "R5",
            "reasoning tokens were left out of completion_tokens" + why,
            "output_total",
            r.completion,
            output_total,
        )

    after = before.model_copy(update={"input_total": input_total, "output_total": output_total})
    if r.total is not None and r.total != after.total:
        fired.append(Fired("I3", "total_tokens is prompt + completion", {"total": (r.total, after.total)}))
    return Outcome(before, after, tuple(fired), tuple(dict.fromkeys(anomalies)))


@dataclass(frozen=True, slots=True)
class ExclusiveReport:
    """An Anthropic-shaped block: uncached input with cache reads and writes beside it."""

    uncached: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    cache_write_5m: int | None = None
    cache_write_1h: int | None = None
    reasoning: int = 0


def normalize_exclusive(r: ExclusiveReport, reader: Reader | None = None) -> Outcome:
    """Read an exclusive report into canonical terms. Nothing here is provably wrong by itself,
    so nothing is repaired beyond I4 (done by the reader); inconsistencies are flagged."""
    fired, anomalies = _carried(reader)
    usage = CanonicalUsage(
        input_total=r.uncached + r.cache_read + r.cache_write,
        cache_read=r.cache_read,
        cache_write=r.cache_write,
        cache_write_5m=r.cache_write_5m,
        cache_write_1h=r.cache_write_1h,
        output_total=r.output,
        reasoning=r.reasoning,
    )
    if (r.cache_write_5m is not None or r.cache_write_1h is not None) and (r.cache_write_5m or 0) + (
        r.cache_write_1h or 0
    ) != r.cache_write:
        anomalies.append("cache_creation_split_mismatch")
    if r.reasoning > r.output:
        anomalies.append("reasoning_exceeds_output")
    return Outcome(usage, usage, tuple(fired), tuple(dict.fromkeys(anomalies)))


@dataclass(frozen=True, slots=True)
class GeminiReport:
    """A Gemini `usageMetadata`: prompt ⊇ cached; thoughts and tool-use prompt stand beside (§4.1)."""

    prompt: int
    candidates: int
    cached: int = 0
    thoughts: int = 0
    tool_use: int = 0
    total: int | None = None


def normalize_gemini(r: GeminiReport, reader: Reader | None = None) -> Outcome:
    """Read Gemini's counts into canonical terms; repair R1 (cache outside prompt) and I3."""
    fired, anomalies = _carried(reader)
    before = CanonicalUsage(
        input_total=r.prompt + r.tool_use,
        cache_read=r.cached,
        output_total=r.candidates + r.thoughts,
        reasoning=r.thoughts,
    )
    after = before
    if r.cached > r.prompt:
        # promptTokenCount includes cached content under the spec; less prompt than cache means
        # a translator left the cache out.
        after = before.model_copy(update={"input_total": before.input_total + r.cached})
        fired.append(
            Fired(
                "R1",
                "cache reads were left out of promptTokenCount",
                {"input_total": (before.input_total, after.input_total)},
            )
        )
        anomalies.append("exclusive_prompt_repaired")
    if r.total is not None and r.total != after.total:
        fired.append(
            Fired(
                "I3",
                "totalTokenCount is prompt + candidates + thoughts + tool-use prompt",
                {"total": (r.total, after.total)},
            )
        )
    return Outcome(before, after, tuple(fired), tuple(dict.fromkeys(anomalies)))
