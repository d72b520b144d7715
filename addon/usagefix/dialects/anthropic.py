"""Anthropic Messages.

Usage is exclusive (usage-semantics §3): `input_tokens` counts uncached tokens only; cache reads
and writes stand beside it. In a stream, `message_start.message.usage` opens the snapshot and each
`message_delta.usage` is cumulative: its fields *replace* the snapshot's, never add to it (R4).
Claude Code treats `message_delta` as authoritative, so every `message_delta` we forward carries
the full snapshot (§8.5). A `null` count is absent, as the SDK reads it: it never replaces a
known one. A count nobody reported is never filled in (no invented zeros). A new
`cache_creation_input_tokens` without its TTL split makes the earlier split stale: it is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Context, Session, Tally, event_type, unapplied
from usagefix.dialects.readers import Readers, RequestSays, ResponseNotes, contents, dicts, ids
from usagefix.dialects.spec import DialectSpec, Field
from usagefix.jsonedit import replace_at
from usagefix.normalize import ExclusiveReport, Fired, Outcome, Reader, normalize_exclusive

__all__ = ["DIALECT", "SPEC", "Anthropic"]

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
            cache_read=rd.count(usage, "cache_read_input_tokens"),
            cache_write=rd.count(usage, "cache_creation_input_tokens"),
            cache_write_5m=rd.count(split, "ephemeral_5m_input_tokens", "cache_creation."),
            cache_write_1h=rd.count(split, "ephemeral_1h_input_tokens", "cache_creation."),
            reasoning=rd.count(details, "thinking_tokens", "output_tokens_details."),
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


def _split_adds_up(split: Mapping[str, Any], cache_write: object) -> bool:
    """Whether a TTL split (`cache_creation`) sums to the cache-write count it splits."""
    parts = [split.get(k) for k in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")]
    return sum(v for v in parts if isinstance(v, int)) == cache_write


class Anthropic:
    name = "anthropic"
    end_markers: tuple[bytes, ...] = (b"message_stop",)

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        obj = json.loads(text)
        if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
            return None
        usage = obj["usage"]
        report, reader = read_report(usage)
        outcome = normalize_exclusive(report, reader)
        if ctx.observe_only:
            tally.observe(unapplied(outcome), usage, None, final=True)
            return None
        emitted = _clamped(usage, reader)
        tally.observe(outcome, usage, emitted, final=True)
        return None if emitted is None else replace_at(text, ["usage"], emitted)

    def stream_session(self, tally: Tally, ctx: Context) -> _MessagesStream:
        return _MessagesStream(tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        return event_type(name, data) == "message_stop"


class _MessagesStream(Session):
    def __init__(self, tally: Tally, ctx: Context) -> None:
        super().__init__(tally, ctx)
        # The cumulative snapshot so far: the fields of message_start's usage, each replaced by
        # the later message_delta that carries it (R4: replace, never add; null is absent).
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
            outcome = normalize_exclusive(report, reader)
            self._merge(_clamped(usage, reader) or usage)
            if self.observe_only:
                self.tally.observe(unapplied(outcome), usage, None, final=False)
                return None
            emitted = _clamped(usage, reader)
            self.tally.observe(outcome, usage, emitted, final=False)
            return None if emitted is None else replace_at(data, ["message", "usage"], emitted)
        if kind == "message_delta":
            usage = obj.get("usage")
            if not isinstance(usage, dict):
                return None
            return self._delta(data, usage)
        return None

    def _merge(self, usage: Mapping[str, Any]) -> None:
        for k, v in usage.items():
            if v is None:
                continue  # the SDK treats null as absent: the count stays what it was
            if k == "cache_creation_input_tokens" and usage.get("cache_creation") is None:
                if self.snapshot.get(k) != v:
                    self.snapshot.pop("cache_creation", None)  # its TTL split no longer adds up
            self.snapshot[k] = v

    def _delta(self, data: str, usage: dict[str, Any]) -> str | None:
        _, own_reader = read_report(usage)  # for the I4 clamps of the delta's own counts
        clamped = _clamped(usage, own_reader) or usage
        self._merge(clamped)
        merged = normalize_exclusive(read_report(self.snapshot)[0])
        fired = list(own_reader.fired)

        emitted = dict(clamped)
        missing = [k for k in HEADLINES if usage.get(k) is None and self.snapshot.get(k) is not None]
        if missing:
            # The full snapshot first, in Anthropic's order, then the delta's other keys. Only
            # counts someone reported: what message_start did not say stays unsaid.
            full = {k: self.snapshot[k] for k in HEADLINES if self.snapshot.get(k) is not None}
            # A split in the snapshot is an object: read_report rejects any other before a
            # block is merged (UsageShapeError).
            split = self.snapshot.get("cache_creation")
            if (
                split is not None
                and usage.get("cache_creation") is None
                and _split_adds_up(split, self.snapshot.get("cache_creation_input_tokens"))
            ):
                full["cache_creation"] = split
            emitted = _with_snapshot(clamped, full)
            reason = (
                "message_delta lacked "
                + ", ".join(missing)
                + " (absent or null); carried over from message_start"
            )
            fired.append(Fired("R4", reason))
        anomalies = (*own_reader.anomalies, *merged.anomalies)
        if self.observe_only:  # the client gets the delta as it is; say what would have changed
            outcome = unapplied(Outcome(merged.before, merged.after, merged.fired, anomalies), *fired)
            self.tally.observe(outcome, usage, None, final=True)
            return None
        result = None if emitted == usage else emitted
        self.tally.observe(
            Outcome(merged.before, merged.after, merged.fired, anomalies),
            usage,
            result,
            final=True,
            extra=tuple(fired),
        )
        return None if result is None else replace_at(data, ["usage"], result)


def _with_snapshot(delta: Mapping[str, Any], full: Mapping[str, Any]) -> dict[str, Any]:
    """The delta's keys in their own order, its headlines carrying the snapshot's counts, and each
    headline it lacked placed before the first later one (Anthropic's order), or at the end; the
    snapshot's TTL split, if it carries one the delta lacks, right after the headlines."""
    out: dict[str, Any] = {}
    pending = [k for k in HEADLINES if k in full]

    def place(upto: int) -> None:
        while pending and HEADLINES.index(pending[0]) <= upto:
            key = pending.pop(0)
            out[key] = full[key]
            if not pending and "cache_creation" in full:
                out["cache_creation"] = full["cache_creation"]

    for key, value in delta.items():
        if key in HEADLINES and key in full:
            place(HEADLINES.index(key))
        elif key not in out:
            out[key] = value
    place(len(HEADLINES))
    return out


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "**R4** every `message_delta` carries the full cumulative snapshot (`input_tokens`, "
    "`cache_creation_input_tokens`, `cache_read_input_tokens`, `output_tokens`, and the "
    "`cache_creation` TTL split when it adds up), merged from `message_start` by replacement, "
    "never addition; a `null` in a delta never replaces a known count (the SDK treats it as "
    "absent); a count nobody reported is not filled in; a new `cache_creation_input_tokens` "
    "without its split drops the stale one. A delta that already carries the snapshot passes "
    "unchanged. I4."
)

SPEC = DialectSpec(
    name="anthropic",
    rank=30,
    title="Anthropic Messages (also Claude on Vertex)",
    paths=(
        # Anthropic's SDK always appends `/v1/messages` to its base URL, whatever the gateway's
        # path; `…/threads/v1/messages` is a thread's (OpenAI Assistants), not a message.
        r"(?!(?:.*/)?threads/v1/messages$)(?:.*)/v1/messages",
        # Claude on Vertex speaks Anthropic. Other publishers' rawPredict (Mistral, Llama, AI21,
        # custom endpoints) do not, and `count-tokens:rawPredict` answers with a count only.
        r"(?:.*/)?publishers/anthropic/models/(?!count-tokens:[^:/]*$)[^/]*:(?:rawPredict|streamRawPredict)",
    ),
    shown_paths=("`POST …/v1/messages`, `…/publishers/anthropic/models/…:rawPredict` / `:streamRawPredict`"),
    framing_shown="JSON, SSE",
    usage_at=("usage", "message.usage"),
    end_events=("message_stop",),
    cumulative="replace_by_field",
    fields=(
        # Exclusive (§3.1): input_tokens is the uncached part; cache counts stand beside it.
        Field(key="input_tokens", unit="input_total", kind="headline"),
        Field(key="cache_read_input_tokens", unit="cache_read", kind="beside"),
        Field(key="cache_creation_input_tokens", unit="cache_write", kind="beside"),
        Field(key="output_tokens", unit="output_total", kind="headline"),
        Field(key="output_tokens_details.thinking_tokens", unit="reasoning", kind="subset"),
    ),
    emits=(*HEADLINES, "cache_creation", "output_tokens_details", "server_tool_use"),
    repairs=_REPAIRS,
    price_provider="anthropic",
    # Claude on Vertex names the model only in its path.
    model_in_path=True,
)

DIALECT = Anthropic()


# -- what its requests and responses say (sessions, transcript) --


def read_message(msg: dict[str, Any], notes: ResponseNotes) -> None:
    """A whole message (a body, or `message_start`'s): its model, id, `tool_use` blocks, cost."""
    notes.ids(msg.get("model"), msg.get("id"))
    for block in dicts(msg.get("content")):
        if block.get("type") == "tool_use":
            notes.tool(block.get("id"))
    notes.usage(msg.get("usage"))


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """A stream's `message_start` and `content_block_start` (`tool_use`), or a whole body."""
    kind = obj.get("type")
    if kind == "message_start" and isinstance(obj.get("message"), dict):
        read_message(obj["message"], notes)
    elif kind == "content_block_start" and isinstance(obj.get("content_block"), dict):
        if obj["content_block"].get("type") == "tool_use":
            notes.tool(obj["content_block"].get("id"))
    elif kind == "message":
        read_message(obj, notes)


def read_request(body: dict[str, Any]) -> RequestSays:
    """Tool results are `tool_result` blocks of the last (user) message, by `tool_use_id`; the
    system prompt is the body's `system`."""
    messages = dicts(body.get("messages"))
    results: tuple[str, ...] = ()
    if messages and messages[-1].get("role") == "user":
        blocks = [b for b in dicts(messages[-1].get("content")) if b.get("type") == "tool_result"]
        results = ids(blocks, "tool_use_id")
    return RequestSays(results, body.get("system"), contents(messages, "user"))


READERS = Readers(request=read_request, response=read_event)
