"""The usage block shared by OpenAI Chat and OpenAI Responses: inclusive headlines with details.

The two differ only in names (`prompt_tokens` / `input_tokens`, …) and in whether the detail
counts are required (Responses' SDK types require them; usage-semantics §8.5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usagefix.dialects.base import Context, Tally
from usagefix.jsonedit import replace_at
from usagefix.normalize import (
    Declared,
    Fired,
    InclusiveReport,
    Outcome,
    Reader,
    UsageShapeError,
    normalize_inclusive,
)
from usagefix.usage import CanonicalUsage

__all__ = ["CHAT", "RESPONSES", "Shape", "model_of", "rewrite_json_usage", "rewrite_usage"]

# Names upstreams use for cache writes instead of the standard `cache_write_tokens`
# (CLIProxyAPI: `cached_creation_tokens`). We rename them: Langfuse subtracts every detail key
# from the input, so keeping both would count the writes twice (§8.5).
CACHE_WRITE_ALIASES = ("cached_creation_tokens", "cache_creation_tokens")


@dataclass(frozen=True, slots=True)
class Shape:
    prompt: str
    completion: str
    prompt_details: str
    completion_details: str
    details_required: bool
    """Always emit `cached_tokens`, `cache_write_tokens` and `reasoning_tokens`."""


CHAT = Shape(
    "prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details", False
)
RESPONSES = Shape("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details", True)


def read_report(usage: Mapping[str, Any], shape: Shape) -> tuple[InclusiveReport, Reader]:
    rd = Reader()
    pd_name, cd_name = shape.prompt_details, shape.completion_details
    pd = rd.block(usage, pd_name)
    cd = rd.block(usage, cd_name)
    prompt = rd.count(usage, shape.prompt)
    completion = rd.count(usage, shape.completion)
    if prompt is None or completion is None:
        raise UsageShapeError(f"usage has no {shape.prompt} or {shape.completion}")
    # Cache reads: the standard field; LiteLLM's top-level one, seen beside `cached_tokens: 0`
    # (LiteLLM #11364); DeepSeek's `prompt_cache_hit_tokens` (R6). Take the largest.
    cache_read = max(
        rd.count(pd, "cached_tokens", f"{pd_name}.") or 0,
        rd.count(usage, "cache_read_input_tokens") or 0,
        rd.count(usage, "prompt_cache_hit_tokens") or 0,
    )
    # Cache writes: the first non-zero of the standard name and its aliases, never their sum.
    writes = [rd.count(pd, k, f"{pd_name}.") for k in ("cache_write_tokens", *CACHE_WRITE_ALIASES)]
    writes.append(rd.count(usage, "cache_creation_input_tokens"))
    cache_write = next((w for w in writes if w), 0)
    reasoning = rd.count(cd, "reasoning_tokens", f"{cd_name}.") or 0
    total = rd.count(usage, "total_tokens")
    # DeepSeek: hit + miss = prompt. We never subtract miss tokens (R6); a mismatch is flagged.
    hit, miss = rd.count(usage, "prompt_cache_hit_tokens"), rd.count(usage, "prompt_cache_miss_tokens")
    if hit is not None and miss is not None and hit + miss != prompt:
        rd.anomalies.append("deepseek_hit_plus_miss_is_not_prompt")
    return InclusiveReport(prompt, completion, cache_read, cache_write, reasoning, total), rd


def _rename(d: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """`d` with key `old` renamed to `new`, in the same place."""
    return {(new if k == old else k): v for k, v in d.items()}


def emit(usage: Mapping[str, Any], u: CanonicalUsage, shape: Shape) -> dict[str, Any] | None:
    """`usage` carrying `u` in the OpenAI standard, or None when it already does.

    Only the fields the standard defines are touched; everything else (provider `cost`, modality
    details, DeepSeek's hit/miss, unknown keys) stays as it was, in its place.
    """
    new = dict(usage)
    new[shape.prompt] = u.input_total
    new[shape.completion] = u.output_total
    new["total_tokens"] = u.total

    required = shape.details_required
    had_pd = isinstance(usage.get(shape.prompt_details), Mapping)
    pd: dict[str, Any] = dict(usage[shape.prompt_details]) if had_pd else {}
    if u.cache_read or "cached_tokens" in pd or required:
        pd["cached_tokens"] = u.cache_read
    aliases = [k for k in CACHE_WRITE_ALIASES if k in pd]
    if "cache_write_tokens" not in pd and aliases:
        pd = _rename(pd, aliases.pop(0), "cache_write_tokens")
    for k in aliases:
        del pd[k]
    if u.cache_write or "cache_write_tokens" in pd or required:
        pd["cache_write_tokens"] = u.cache_write
    if pd or had_pd:
        new[shape.prompt_details] = pd

    had_cd = isinstance(usage.get(shape.completion_details), Mapping)
    if had_cd or u.reasoning or required:
        cd: dict[str, Any] = dict(usage[shape.completion_details]) if had_cd else {}
        if u.reasoning or "reasoning_tokens" in cd or required:
            cd["reasoning_tokens"] = u.reasoning
        new[shape.completion_details] = cd
    return None if new == usage else new


def _explain_emit(usage: Mapping[str, Any], shape: Shape, fired: tuple[Fired, ...]) -> tuple[Fired, ...]:
    """Rules for changes `emit` made beyond the numbers: renamed keys, filled-in details."""
    out: list[Fired] = []
    pd = usage.get(shape.prompt_details)
    if isinstance(pd, Mapping) and any(k in pd for k in CACHE_WRITE_ALIASES):
        out.append(Fired("rename", f"cache writes belong in {shape.prompt_details}.cache_write_tokens"))
    if usage.get("prompt_cache_hit_tokens") and not (isinstance(pd, Mapping) and "cached_tokens" in pd):
        out.append(
            Fired("R6", f"DeepSeek's prompt_cache_hit_tokens copied to {shape.prompt_details}.cached_tokens")
        )
    if shape.details_required and not out and not fired:
        out.append(Fired("schema", "the detail counts are required by the dialect's standard"))
    return tuple(out)


def model_of(obj: Mapping[str, Any]) -> str | None:
    """The `model` a payload names, if it is a string."""
    m = obj.get("model")
    return m if isinstance(m, str) else None


def rewrite_json_usage(text: str, tally: Tally, ctx: Context, shape: Shape) -> str | None:
    """A whole JSON body with a top-level `usage` block: its new text, or None if unchanged."""
    obj = json.loads(text)
    if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
        return None
    emitted = rewrite_usage(obj["usage"], tally, ctx, shape, model=model_of(obj))
    return None if emitted is None else replace_at(text, ["usage"], emitted)


def _looks_translated(model: str | None) -> bool:
    """A Claude model served in an OpenAI dialect: translators disagree on inclusivity (§6.6)."""
    return model is not None and "claude" in model.lower()


def rewrite_usage(
    usage: dict[str, Any],
    tally: Tally,
    ctx: Context,
    shape: Shape,
    *,
    model: str | None = None,
    final: bool = True,
) -> dict[str, Any] | None:
    """Normalize one usage block into `tally`; return the block to emit, or None if unchanged."""
    profile = ctx.profile
    declared = Declared()
    if profile is not None:
        declared = Declared(
            profile.prompt_cache_reads, profile.prompt_cache_writes, profile.completion_reasoning
        )
    report, reader = read_report(usage, shape)
    model = ctx.model or model
    gemini = model is not None and "gemini" in model.lower()
    outcome = normalize_inclusive(report, reader, declared, from_gemini=gemini)
    if (
        report.cache_read
        and declared.cache_reads is None
        and not any(f.rule == "R1" for f in outcome.fired)
        and _looks_translated(model)
    ):
        # cache reads fit inside the prompt: right for an inclusive upstream, wrong for one that
        # left them out. Nothing proves which; a profile can say (`prompt_cache_reads`).
        tally.flag("ambiguous_inclusivity")
    if profile is not None and profile.observe_only:
        would = tuple(f"would_repair:{f.rule}" for f in outcome.fired)
        tally.observe(
            Outcome(outcome.before, outcome.before, (), (*outcome.anomalies, *would)),
            usage,
            None,
            final=final,
        )
        return None
    emitted = emit(usage, outcome.after, shape)
    extra = _explain_emit(usage, shape, outcome.fired) if emitted else ()
    tally.observe(outcome, usage, emitted, final=final, extra=extra)
    return emitted
