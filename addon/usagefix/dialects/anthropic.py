"""Anthropic Messages.

Usage is exclusive (usage-semantics §3): `input_tokens` counts uncached tokens only; cache reads
and writes stand beside it. In a stream, `message_start.message.usage` opens the snapshot and each
`message_delta.usage` is cumulative: its fields *replace* the snapshot's, never add to it (R4).
Claude Code treats `message_delta` as authoritative, so every `message_delta` we forward carries
the full snapshot (§8.5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Context, Tally
from usagefix.jsonedit import replace_at
from usagefix.normalize import ExclusiveReport, Fired, Outcome, Reader, normalize_exclusive

__all__ = ["Anthropic"]

# The headline counts every snapshot we emit carries, in Anthropic's own order.
HEADLINES = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


def read_report(usage: Mapping[str, Any]) -> tuple[ExclusiveReport, Reader]:
    rd = Reader()
    split = rd.block(usage, "cache_creation")
    details = rd.block(usage, "output_tokens_details")
    return (
        ExclusiveReport(
            uncached=rd.count(usage, "input_tokens") or 0,
            output=rd.count(usage, "output_tokens") or 0,
            cache_read=rd.count(usage, "cache_read_input_tokens") or 0,
            cache_write=rd.count(usage, "cache_creation_input_tokens") or 0,
            cache_write_5m=rd.count(split, "ephemeral_5m_input_tokens", "cache_creation."),
            cache_write_1h=rd.count(split, "ephemeral_1h_input_tokens", "cache_creation."),
            reasoning=rd.count(details, "thinking_tokens", "output_tokens_details.") or 0,
        ),
        rd,
    )


def _clamp(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _clamp(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return 0
    return value


def _clamped(usage: Mapping[str, Any], reader: Reader) -> dict[str, Any] | None:
    """`usage` with negative counts set to 0 (I4), or None when there were none."""
    return _clamp(usage) if reader.fired else None


class Anthropic:
    name = "anthropic"
    end_markers: tuple[bytes, ...] = (b"message_stop",)

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        obj = json.loads(text)
        if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
            return None
        usage = obj["usage"]
        report, reader = read_report(usage)
        emitted = None if _observe_only(ctx) else _clamped(usage, reader)
        tally.observe(normalize_exclusive(report, reader), usage, emitted, final=True)
        return None if emitted is None else replace_at(text, ["usage"], emitted)

    def stream_session(self, tally: Tally, ctx: Context) -> _MessagesStream:
        return _MessagesStream(tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        return (obj.get("type", name) if isinstance(obj, dict) else name) == "message_stop"


def _observe_only(ctx: Context) -> bool:
    return ctx.profile is not None and ctx.profile.observe_only


class _MessagesStream:
    def __init__(self, tally: Tally, ctx: Context) -> None:
        self.tally = tally
        self.observe_only = _observe_only(ctx)
        # The cumulative snapshot so far: the fields of message_start's usage, each replaced by
        # the later message_delta that carries it (R4: replace, never add).
        self.snapshot: dict[str, Any] = {}

    def might_carry_usage(self, raw: bytes) -> bool:
        return b"message_start" in raw or b"message_delta" in raw

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        kind = obj.get("type", name)
        if kind == "message_start":
            message = obj.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if not isinstance(usage, dict):
                return None
            report, reader = read_report(usage)
            emitted = None if self.observe_only else _clamped(usage, reader)
            self.snapshot.update(_clamped(usage, reader) or usage)
            self.tally.observe(normalize_exclusive(report, reader), usage, emitted, final=False)
            return None if emitted is None else replace_at(data, ["message", "usage"], emitted)
        if kind == "message_delta":
            usage = obj.get("usage")
            if not isinstance(usage, dict):
                return None
            return self._delta(data, usage)
        return None

    def _delta(self, data: str, usage: dict[str, Any]) -> str | None:
        own, own_reader = read_report(usage)  # what a client reading this delta alone would see
        clamped = _clamped(usage, own_reader) or usage
        self.snapshot.update(clamped)
        merged = normalize_exclusive(read_report(self.snapshot)[0])
        before = normalize_exclusive(own).before
        fired = list(own_reader.fired)

        emitted = dict(clamped)
        missing = [k for k in HEADLINES if k not in usage]
        if missing:
            # The full snapshot first, in Anthropic's order, then the delta's other keys.
            full = {k: self.snapshot.get(k, 0) for k in HEADLINES}
            if "cache_creation" in self.snapshot and "cache_creation" not in usage:
                full["cache_creation"] = self.snapshot["cache_creation"]
            emitted = {**full, **{k: v for k, v in clamped.items() if k not in full}}
            changes = {
                name: (getattr(before, name), getattr(merged.after, name))
                for name in ("input_total", "cache_read", "cache_write", "output_total")
                if getattr(before, name) != getattr(merged.after, name)
            }
            reason = "message_delta lacked " + ", ".join(missing) + "; carried over from message_start"
            fired.append(Fired("R4", reason, changes))
        anomalies = (*own_reader.anomalies, *merged.anomalies)
        if self.observe_only:  # the client gets the delta as it is; say what would have changed
            would = tuple(f"would_repair:{f.rule}" for f in fired)
            self.tally.observe(Outcome(before, before, (), (*anomalies, *would)), usage, None, final=True)
            return None
        result = None if emitted == usage else emitted
        self.tally.observe(
            Outcome(before, merged.after, merged.fired, anomalies),
            usage,
            result,
            final=True,
            extra=tuple(fired),
        )
        return None if result is None else replace_at(data, ["usage"], result)
