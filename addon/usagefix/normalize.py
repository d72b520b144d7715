"""Pure normalization: what an upstream reported → canonical usage, and the rules that fired.

Rule IDs are those of reference/usage-semantics.md §8.2 (invariants I1–I4) and §8.4 (repairs
R1–R8). We repair only what is provably wrong, and say which rule did it and why. This module
holds the inclusive (OpenAI-shaped) rules; `native_sums.py` reads Anthropic's and Gemini's own
sums; `reading.py` has what every normalization reads with and returns (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

from usagefix.native_sums import ExclusiveReport, GeminiReport, normalize_exclusive, normalize_gemini
from usagefix.reading import Fired, Outcome, Reader, UsageShapeError, carried, positive
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


@dataclass(frozen=True, slots=True)
class InclusiveReport:
    """An OpenAI-shaped block as reported: headlines that should contain their sub-counts.

    A sub-count is None when the upstream did not report it (absent or `null`): unknown, not 0.
    """

    prompt: int
    completion: int
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    total: int | None = None
    """The upstream's own `total_tokens`: its arithmetic says how it counts (R1 tell, R3, R5, I3)."""


@dataclass(frozen=True, slots=True)
class Declared:
    """What a profile says about how an upstream counts (None: unknown, prove it or leave it).

    A declaration applies only where the numbers do not contradict it: an upstream's own
    `total_tokens` arithmetic outranks a profile written for another of its endpoints.
    """

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

    A repair applies when the numbers prove it, or when a profile declares it (`declared`) and
    the numbers do not contradict the declaration. `from_gemini` (a Gemini model behind an OpenAI
    dialect) names a reasoning repair R3, not R5, and lets R3 attribute a gap only the total shows.
    A total is never lowered: tokens it counts that nothing explains stay in it (`unattributed`)
    and are flagged.
    """
    fired, anomalies = carried(reader)
    cr, cw, rs = r.cache_read or 0, r.cache_write or 0, r.reasoning or 0
    before = CanonicalUsage(
        input_total=r.prompt,
        cache_read=r.cache_read,
        cache_write=r.cache_write,
        output_total=r.completion,
        reasoning=r.reasoning,
        unattributed=positive(None if r.total is None else r.total - r.prompt - r.completion),
    )
    input_total, output_total = r.prompt, r.completion

    def gap() -> int | None:
        """What the upstream's total counts beyond the headlines as they stand now."""
        return None if r.total is None else r.total - input_total - output_total

    def fire(rule: str, reason: str, name: str, old: int, new: int) -> None:
        fired.append(Fired(rule, reason, {name: (old, new)}))

    # R1: cached tokens are a subset of prompt_tokens under the spec, so more cache reads than
    # prompt can only mean the upstream left them out (the CLIProxyAPI Dec-2025..Mar-2026 translator).
    r1 = None
    ambiguous = False
    if cr > r.prompt:
        r1 = "cache reads were left out of prompt_tokens"
    elif cr and declared.cache_reads == "excluded":
        r1 = "cache reads were left out of prompt_tokens (declared by the upstream's profile)"
    elif cr and declared.cache_reads != "included" and gap() == cr:
        # The tell: total_tokens counts the cache reads beside the prompt. Unless reasoning beside
        # completion (R5), or reasoning plus Gemini's tool-use prompt (R3), or a Gemini model's
        # unreported thinking (R3), explains the same gap: then the coincidence proves nothing,
        # and only a profile can say.
        coincide = (rs and (rs == cr or (from_gemini and rs < cr))) or (from_gemini and not rs)
        if not coincide or declared.reasoning == "included":
            r1 = "cache reads were left out of prompt_tokens (total_tokens counts them beside it)"
        elif declared.reasoning is None:
            ambiguous = True
    if r1:
        input_total = r.prompt + cr
        fire("R1", r1, "input_total", r.prompt, input_total)
        anomalies.append("exclusive_prompt_repaired")

    # R2: reads fit, reads + writes do not: cache writes were left out (old LiteLLM transform).
    r2 = None
    if cr + cw > input_total:
        r2 = "cache writes were left out of prompt_tokens"
    elif cw and declared.cache_writes == "excluded":
        r2 = "cache writes were left out of prompt_tokens (declared by the upstream's profile)"
    if r2:
        fire("R2", r2, "input_total", input_total, input_total + cw)
        input_total += cw

    # R3 / R5: is reasoning inside completion_tokens (the standard) or beside it?
    contradicted = False
    if rs:
        g = gap()
        if g is not None and g >= rs and not ambiguous:
            # The upstream's own total counts reasoning beside completion: Gemini translated to
            # OpenAI (candidates exclude thoughts: R3), or xAI's own API (R5).
            output_total += rs
            rule = "R3" if from_gemini else "R5"
            fire(rule, "reasoning tokens were left out of completion_tokens (total_tokens counts them)",
                 "output_total", r.completion, output_total)  # fmt: skip
            contradicted = declared.reasoning == "included"
            if from_gemini and g > rs:
                fire("R3", "tool-use prompt tokens were left out of prompt_tokens (total_tokens counts them)",
                     "input_total", input_total, input_total + g - rs)  # fmt: skip
                input_total += g - rs
        elif g == 0:
            # total = prompt + completion: by its own arithmetic the upstream counts reasoning
            # inside completion. More reasoning than completion is then its inconsistency, not
            # a proof (OpenRouter: reasoning 11, completion 10, total = prompt + 10).
            contradicted = declared.reasoning == "excluded"
            if rs > output_total:
                anomalies.append("reasoning_exceeds_completion")
        elif declared.reasoning == "excluded" or (declared.reasoning is None and rs > output_total):
            # R5: reasoning is a subset of completion_tokens; more reasoning than completion means
            # the upstream reported it beside completion (xAI direct), or a profile says so.
            output_total = r.completion + rs
            why = " (declared by the upstream's profile)" if declared.reasoning == "excluded" else ""
            fire("R5", "reasoning tokens were left out of completion_tokens" + why,
                 "output_total", r.completion, output_total)  # fmt: skip
        elif rs > output_total:
            anomalies.append("reasoning_exceeds_completion")
    if contradicted:
        anomalies.append("declaration_contradicted:completion_reasoning")

    # What the total still counts beyond the headlines: attributed, or kept and flagged.
    unattributed = None
    g = gap()
    if g is not None and g > 0:
        if from_gemini and not rs and not ambiguous:
            # Gemini's OpenAI-compatible endpoint bills thinking it reports nowhere but in the
            # total (prompt 35, completion 12, total 109): the thinking is output.
            fire("R3", f"total_tokens counts {g} tokens beside prompt and completion: "
                 "a Gemini model's thinking, added to completion_tokens",
                 "output_total", output_total, output_total + g)  # fmt: skip
            output_total += g
        else:
            unattributed = g
            anomalies.append("ambiguous_total_gap" if ambiguous else "total_exceeds_parts")

    after = before.model_copy(
        update={"input_total": input_total, "output_total": output_total, "unattributed": unattributed}
    )
    if r.total is not None and r.total != after.total:
        fired.append(Fired("I3", "total_tokens is prompt + completion", {"total": (r.total, after.total)}))
    return Outcome(before, after, tuple(fired), tuple(dict.fromkeys(anomalies)))
