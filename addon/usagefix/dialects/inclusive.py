"""The usage block shared by OpenAI Chat and OpenAI Responses: inclusive headlines with details.

The two differ only in names (`prompt_tokens` / `input_tokens`, …). A block is rewritten only
when a rule says so, and then keeps the upstream's own set of keys plus exactly what the rule
names: no `total_tokens`, no zero detail count the upstream did not send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usagefix.dialects.base import Context, Tally, unapplied
from usagefix.jsonedit import replace_at
from usagefix.normalize import (
    Declared,
    Fired,
    InclusiveReport,
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


CHAT = Shape("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
# The SDK's types declare the detail objects required, but it builds responses without validating
# them (a missing `input_tokens_details` reads as None), and most correct upstreams omit them: we
# never add them for the schema's sake.
RESPONSES = Shape("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the cache counts of a block were read from, to say what emitting them changes."""

    cache_read: str | None = None
    """The key the cache-read count came from (`cached_tokens`, or an alias); None if unreported."""
    cache_write: str | None = None


def read_report(usage: Mapping[str, Any], shape: Shape) -> tuple[InclusiveReport, Reader, Sources]:
    rd = Reader()
    pd_name, cd_name = shape.prompt_details, shape.completion_details
    pd = rd.block(usage, pd_name)
    cd = rd.block(usage, cd_name)
    prompt = rd.count(usage, shape.prompt)
    completion = rd.count(usage, shape.completion)
    if prompt is None or completion is None:
        raise UsageShapeError(f"usage has no {shape.prompt} or {shape.completion}")
    # Cache reads: the standard field; LiteLLM's top-level one, seen beside `cached_tokens: 0`
    # (LiteLLM #11364); DeepSeek's `prompt_cache_hit_tokens` (R6). Take the largest reported;
    # none reported (absent or null) is unknown, not 0.
    reads = {
        "cached_tokens": rd.count(pd, "cached_tokens", f"{pd_name}."),
        "cache_read_input_tokens": rd.count(usage, "cache_read_input_tokens"),
        "prompt_cache_hit_tokens": rd.count(usage, "prompt_cache_hit_tokens"),
    }
    known_reads = {k: v for k, v in reads.items() if v is not None}
    read_from = max(known_reads, key=lambda k: known_reads[k]) if known_reads else None
    # Cache writes: the first non-zero of the standard name and its aliases, never their sum.
    writes = {k: rd.count(pd, k, f"{pd_name}.") for k in ("cache_write_tokens", *CACHE_WRITE_ALIASES)}
    writes["cache_creation_input_tokens"] = rd.count(usage, "cache_creation_input_tokens")
    known_writes = {k: v for k, v in writes.items() if v is not None}
    write_from = next((k for k, v in known_writes.items() if v), next(iter(known_writes), None))
    reasoning = rd.count(cd, "reasoning_tokens", f"{cd_name}.")
    total = rd.count(usage, "total_tokens")
    # DeepSeek: hit + miss = prompt. We never subtract miss tokens (R6); a mismatch is flagged.
    hit, miss = reads["prompt_cache_hit_tokens"], rd.count(usage, "prompt_cache_miss_tokens")
    if hit is not None and miss is not None and hit + miss != prompt:
        rd.anomalies.append("deepseek_hit_plus_miss_is_not_prompt")
    report = InclusiveReport(
        prompt,
        completion,
        known_reads[read_from] if read_from else None,
        known_writes[write_from] if write_from else None,
        reasoning,
        total,
    )
    return report, rd, Sources(read_from, write_from)


def _rename(d: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """`d` with key `old` renamed to `new`, in the same place."""
    return {(new if k == old else k): v for k, v in d.items()}


def emit(
    usage: Mapping[str, Any], u: CanonicalUsage, shape: Shape, adds: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """`usage` carrying `u` in the OpenAI standard, or None when it already does.

    Only keys the upstream sent are written, plus the detail keys in `adds` (named by a rule:
    R6's `cached_tokens`, …); `total_tokens` only if it was there. A count that is unknown (None)
    leaves its key as it was, `null` included. Everything else (provider `cost`, modality
    details, DeepSeek's hit/miss, unknown keys) stays as it was, in its place.
    """
    new = dict(usage)
    new[shape.prompt] = u.input_total
    new[shape.completion] = u.output_total
    if usage.get("total_tokens") is not None:
        new["total_tokens"] = u.total

    raw_pd = usage.get(shape.prompt_details)
    pd: dict[str, Any] = dict(raw_pd) if isinstance(raw_pd, Mapping) else {}

    def put(d: dict[str, Any], key: str, value: int | None) -> None:
        if value is not None and (d.get(key) is not None or key in adds):
            d[key] = value

    put(pd, "cached_tokens", u.cache_read)
    aliases = [k for k in CACHE_WRITE_ALIASES if k in pd]
    if "cache_write_tokens" not in pd and aliases:
        pd = _rename(pd, aliases.pop(0), "cache_write_tokens")
    for k in aliases:
        del pd[k]
    put(pd, "cache_write_tokens", u.cache_write)
    if isinstance(raw_pd, Mapping) or pd:
        new[shape.prompt_details] = pd

    raw_cd = usage.get(shape.completion_details)
    if isinstance(raw_cd, Mapping):
        cd = dict(raw_cd)
        put(cd, "reasoning_tokens", u.reasoning)
        new[shape.completion_details] = cd
    return None if new == usage else new


def clamp_negative_counts(usage: Mapping[str, Any]) -> dict[str, Any] | None:
    """`usage` with every negative token count set to 0 (I4: never emit a negative count), or None
    when it has none. Counts are the `*_tokens` keys, at the top or in a details object; other
    numbers (a provider's `cost`, which may be a credit) are never touched."""
    new = dict(usage)
    for k, v in usage.items():
        if isinstance(v, Mapping):
            inner = clamp_negative_counts(v)
            if inner is not None:
                new[k] = inner
        elif k.endswith("_tokens") and isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
            new[k] = 0
    return None if new == usage else new


def _adds(
    usage: Mapping[str, Any], shape: Shape, sources: Sources, fired: tuple[Fired, ...]
) -> frozenset[str]:
    """The standard detail keys a rule names, to be added when the upstream left them out or null."""
    rules = {f.rule for f in fired}
    pd = usage.get(shape.prompt_details)
    pd = pd if isinstance(pd, Mapping) else {}
    adds = set()
    if pd.get("cached_tokens") is None and sources.cache_read not in (None, "cached_tokens"):
        # R6 copies DeepSeek's hit tokens into the standard key; R1/R2, having moved cache reads
        # into the prompt, say where they are (else a client bills them at the full rate).
        if sources.cache_read == "prompt_cache_hit_tokens" or rules & {"R1", "R2"}:
            adds.add("cached_tokens")
    if sources.cache_write == "cache_creation_input_tokens" and "R2" in rules:
        if all(pd.get(k) is None for k in ("cache_write_tokens", *CACHE_WRITE_ALIASES)):
            adds.add("cache_write_tokens")
    return frozenset(adds)


def _explain_emit(
    usage: Mapping[str, Any], emitted: Mapping[str, Any], shape: Shape, sources: Sources
) -> tuple[Fired, ...]:
    """Rules for changes `emit` made beyond the headline numbers: renamed keys, copied counts."""
    out: list[Fired] = []
    pd_name = shape.prompt_details
    pd = usage.get(pd_name)
    pd = pd if isinstance(pd, Mapping) else {}
    new_pd = emitted.get(pd_name)
    new_pd = new_pd if isinstance(new_pd, Mapping) else {}
    if any(k in pd for k in CACHE_WRITE_ALIASES):
        out.append(Fired("rename", f"cache writes belong in {pd_name}.cache_write_tokens"))
    if sources.cache_read == "prompt_cache_hit_tokens" and pd.get("cached_tokens") is None:
        # `_adds` named the key, so `emit` wrote the hit count there.
        out.append(Fired("R6", f"DeepSeek's prompt_cache_hit_tokens copied to {pd_name}.cached_tokens"))
    elif pd.get("cached_tokens") is not None and new_pd.get("cached_tokens") != pd.get("cached_tokens"):
        if sources.cache_read != "cached_tokens":
            out.append(
                Fired(
                    "alias",
                    f"{pd_name}.cached_tokens said {pd['cached_tokens']}; "
                    f"the cache reads are in {sources.cache_read} (LiteLLM #11364)",
                )
            )
    old_writes = pd.get("cache_write_tokens")
    if (
        old_writes is not None
        and new_pd.get("cache_write_tokens") != old_writes
        and sources.cache_write not in (None, "cache_write_tokens", *CACHE_WRITE_ALIASES)
    ):
        out.append(
            Fired(
                "alias",
                f"{pd_name}.cache_write_tokens said {old_writes}; "
                f"the cache writes are in {sources.cache_write} (LiteLLM #11364)",
            )
        )
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
    """Normalize one usage block into `tally`; return the block to emit, or None if unchanged.

    `final`: this block is the response's last word on usage (R8); a partial snapshot (vLLM's
    continuous usage, a translator's usage on every chunk) leaves the response unmeasured until one is.
    """
    if all(usage.get(k) is None for k in (shape.prompt, shape.completion, "total_tokens")):
        return None  # `{}` or all-null: no count at all, no snapshot (unmeasured, not invalid)
    profile = ctx.profile
    declared = Declared()
    if profile is not None:
        declared = Declared(
            profile.prompt_cache_reads, profile.prompt_cache_writes, profile.completion_reasoning
        )
    report, reader, sources = read_report(usage, shape)
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
    if ctx.observe_only:
        tally.observe(unapplied(outcome), usage, None, final=final)
        return None
    emitted = emit(usage, outcome.after, shape, _adds(usage, shape, sources, outcome.fired))
    if reader.fired:  # I4 clamped a count while reading it: the client gets the 0 too
        emitted = clamp_negative_counts(emitted or usage) or emitted
    extra = _explain_emit(usage, emitted, shape, sources) if emitted else ()
    tally.observe(outcome, usage, emitted, final=final, extra=extra)
    return emitted
