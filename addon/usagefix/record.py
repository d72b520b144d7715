"""The record of one response: what the upstream said, what the client got, and why.

Stored as plain JSON-able values in `flow.metadata["usagefix"]` (tnetstring-safe: an
unserializable value would make mitmproxy drop the whole flow from the file), and summarized in
one line for `flow.comment`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from usagefix.result import RewriteResult
from usagefix.usage import CanonicalUsage

__all__ = [
    "METADATA_KEY",
    "SCHEMA_VERSION",
    "PriorRecord",
    "UsageRecord",
    "build_record",
    "flat_diff",
    "http_error_record",
    "minimal_record",
    "read_prior",
    "rebuild_upstream",
    "summary",
]

METADATA_KEY = "usagefix"
SCHEMA_VERSION = 1

Status = Literal[
    "rewritten", "unchanged", "unmeasured", "passthrough_error", "undecodable_encoding", "http_error"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class RuleRecord(_Strict):
    rule: str
    """Rule ID from usage-semantics §8 (R1–R8, I1–I4), or `rename` for a non-standard key."""
    reason: str
    changes: dict[str, list[int]] = {}
    """Canonical field → [before, after]."""


class ChangeRecord(_Strict):
    index: int
    """Position of the event among the response's events (0 for a whole JSON body)."""
    offset: int
    """Byte offset of the rewritten text in the body the client received."""
    original: str
    """The upstream's text there, byte for byte (UTF-8). Only the span that differs is kept (the
    event's common prefix and suffix trimmed), so a change costs O(changed span); records written
    before kept the whole event, which rebuilds the same way."""
    rewritten: str
    """What the client received instead."""


class UsageRecord(_Strict):
    schema_version: int = SCHEMA_VERSION
    dialect: str
    profile: str | None = None
    streamed: bool
    status: Status
    final_seen: bool
    """Whether the usage that ends the response arrived; false means the numbers are unknown."""
    usage_before: CanonicalUsage | None = None
    """The upstream's usage, read as it stands, in canonical terms."""
    usage_after: CanonicalUsage | None = None
    """The usage the client received, in canonical terms."""
    upstream_usage: dict[str, Any] | None = None
    """The upstream's last usage block, verbatim."""
    emitted_usage: dict[str, Any] | None = None
    """The last usage block the client received, verbatim."""
    rules: list[RuleRecord] = []
    anomalies: list[str] = []
    changes: list[ChangeRecord] = []
    events: int | None = None
    """Events in the stream (streamed responses only)."""
    error: str | None = None
    """Why the response passed through untouched, or why it was cut off."""
    content_encoding: str | None = None
    """The upstream's content-encoding, when we decoded it for the client."""
    stream_usage_added: bool = False
    """We asked the upstream for stream usage the client had not asked for, and removed it from
    what the client received (`usage_request_stream_usage`)."""
    held_back: str | None = None
    """The unfinished event the upstream had begun when the stream was cut off: never forwarded.
    (Exact unless the cut fell inside a multi-byte character.)"""
    body_saved: bool = True
    """False when the stream the client received outgrew `usage_max_saved_body_bytes`: the flow is
    saved without its body (the record still holds every change), and re-normalizing leaves it
    as it is."""


def _status(out: RewriteResult) -> Status:
    if out.error is not None:
        return "passthrough_error"
    if not out.tally.final_seen:
        return "unmeasured"  # R7, R8: unknown, never zero
    return "rewritten" if out.changes else "unchanged"


def build_record(
    out: RewriteResult,
    *,
    cut_off: str | None = None,
    content_encoding: str | None = None,
    held_back: bytes = b"",
    stream_usage_added: bool = False,
) -> UsageRecord:
    """The record of a finished (or, with `cut_off`, interrupted) response. Never raises: if the
    full record cannot be built, a minimal one says why (`passthrough_error`)."""
    try:
        return _full_record(out, cut_off, content_encoding, held_back, stream_usage_added)
    except Exception as e:
        reason = f"the record could not be built: {_describe(e)}"
        try:  # keep the changes if they are sound: enough to rebuild the upstream's body
            changes = [ChangeRecord(**dataclasses.asdict(c)) for c in out.changes]
            return minimal_record(out.dialect, out.streamed, reason, changes)
        except Exception:
            return minimal_record(out.dialect, out.streamed, reason)


def minimal_record(
    dialect: str, streamed: bool, error: str, changes: Sequence[ChangeRecord] = ()
) -> UsageRecord:
    """A record that holds little but why it is all there is: nothing measured, nothing claimed
    (and the changes made, when they are known, so that the upstream's body can be rebuilt)."""
    return UsageRecord(
        dialect=dialect,
        streamed=streamed,
        status="passthrough_error",
        final_seen=False,
        error=error,
        changes=list(changes),
    )


def http_error_record(
    dialect: str, profile: str | None, status_code: int, reason: str, by: str
) -> UsageRecord:
    """The record of an LLM request answered with an error status (`by`: who answered): its body
    passed untouched and no usage was read, so nothing is measured and nothing claimed (R7)."""
    what = f"{status_code} {reason}".strip()
    return UsageRecord(
        dialect=dialect,
        profile=profile,
        streamed=False,
        status="http_error",
        final_seen=False,
        error=f"{by} answered HTTP {what}: no usage read",
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _full_record(
    out: RewriteResult,
    cut_off: str | None,
    content_encoding: str | None,
    held_back: bytes,
    stream_usage_added: bool,
) -> UsageRecord:
    t = out.tally
    anomalies = list(t.anomalies)
    for reason in sorted(out.unparsed):  # events forwarded unparsed, each counted once
        if reason == "cut_off":
            anomalies.append(f"incomplete_tail_bytes:{out.incomplete_tail}")
        else:
            anomalies.append(f"{reason}_events:{out.unparsed[reason]}")
    if cut_off:
        anomalies.append("cut_off")
    elif out.streamed and not t.final_seen:
        anomalies.append("no_final_usage")
    return UsageRecord(
        dialect=out.dialect,
        profile=out.profile,
        streamed=out.streamed,
        status=_status(out),
        final_seen=t.final_seen,
        usage_before=t.before,
        usage_after=t.after,
        upstream_usage=t.upstream_usage,
        emitted_usage=t.emitted_usage,
        rules=[
            RuleRecord(rule=f.rule, reason=f.reason, changes={k: list(v) for k, v in f.changes.items()})
            for f in t.fired
        ],
        anomalies=anomalies,
        changes=[
            ChangeRecord(index=c.index, offset=c.offset, original=c.original, rewritten=c.rewritten)
            for c in out.changes
        ],
        events=out.events if out.streamed else None,
        error=out.error or cut_off,
        content_encoding=content_encoding,
        held_back=held_back.decode("utf-8", "backslashreplace") if held_back else None,
        stream_usage_added=stream_usage_added,
    )


class _Lenient(BaseModel):
    # Strict types (a hand-edited "12" is not an offset), other keys ignored (a later schema's).
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class PriorChange(_Lenient):
    index: int
    offset: int
    original: str
    rewritten: str


class PriorRecord(_Lenient):
    """What re-normalizing a saved flow reads from its record: enough to rebuild the upstream's
    body and to redo the response as it was recorded."""

    schema_version: int = SCHEMA_VERSION
    changes: list[PriorChange] = []
    held_back: str | None = None
    stream_usage_added: bool = False
    error: str | None = None
    content_encoding: str | None = None


def read_prior(saved: object) -> PriorRecord:
    """The record saved with a flow, read for re-normalizing it.

    Raises `ValueError` with a one-line reason when it is not a record this version can use
    (hand-edited, or written by a schema with other types): treat the flow as having none.
    """
    if isinstance(saved, PriorRecord):
        return saved
    try:
        return PriorRecord.model_validate(saved)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise ValueError(f"{where}: {first['msg']} ({e.error_count()} error(s))") from None


def rebuild_upstream(client_body: bytes, record: PriorRecord | Mapping[str, Any]) -> bytes:
    """The body the upstream sent, from the body the client received and the record of changes.

    Each change says where, in the client's body, the text that replaced the upstream's starts
    (`offset`) and what it was (`rewritten`, "" for a dropped event). Event k was emitted after
    every byte of the events before it, so `offset[k+1] >= offset[k] + len(rewritten[k])`: in the
    order (offset, index) the spans follow each other without overlap. Offsets tie only behind a
    zero-length span (a dropped event, `usage_request_stream_usage`), and there the event of the
    lower index came first upstream. So one pass in (offset, index) order, copying the client's
    bytes up to each span and the upstream's original in its place, rebuilds the upstream's body
    exactly (sorting by offset alone put a dropped event after its successor: the rebuild failed).

    Raises `ValueError` when the record does not match the body (one or the other was edited), or
    is not a record (`read_prior`).
    """
    prior = read_prior(record)
    changes = sorted((c.offset, c.index, c.rewritten.encode(), c.original.encode()) for c in prior.changes)
    pieces: list[bytes] = []
    pos = 0
    for off, _, rewritten, original in changes:
        if not pos <= off <= len(client_body):
            raise ValueError(f"the record's change at byte {off} overlaps another or lies outside the body")
        if client_body[off : off + len(rewritten)] != rewritten:
            raise ValueError(f"the record's change at byte {off} does not match the body")
        pieces += (client_body[pos:off], original)
        pos = off + len(rewritten)
    pieces.append(client_body[pos:])
    if prior.held_back:
        pieces.append(prior.held_back.encode())
    return b"".join(pieces)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def flat_diff(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[tuple[str, Any, Any]]:
    """Leaf fields that differ, as (dotted.name, before, after); None stands for absent."""
    a, b = _flatten(before or {}), _flatten(after or {})
    return [
        (k, a.get(k), b.get(k))
        for k in dict.fromkeys([*a, *b])
        if a.get(k) != b.get(k) or (k in a) != (k in b)
    ]


def _show(v: Any) -> str:
    return "∅" if v is None else str(v)


# Totals follow from the other counts: the comment leads with a count that changed for its own sake.
_TOTALS = ("total_tokens", "totalTokenCount", "totalTokens")
COMMENT_MAX = 72
"""The longest comment (an error's): mitmweb's Comment column is 150 pixels wide, about 20
characters, before the user widens it; the numbers come first so that they are what shows."""


def _clip(text: str, limit: int = COMMENT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(field: str) -> str:
    """`prompt_tokens` → `prompt`, `prompt_tokens_details.cached_tokens` → `cached`,
    `totalTokenCount` → `total`: the column has room for a word and two numbers."""
    leaf = field.rsplit(".", 1)[-1]
    for suffix in ("_tokens", "TokenCount", "Tokens"):
        if leaf.endswith(suffix):
            return leaf.removesuffix(suffix) or leaf
    return leaf


def _rule_ids(rec: UsageRecord) -> str:
    ids = list(dict.fromkeys(r.rule for r in rec.rules))
    shown = [i for i in ids if i != "I3"] or ids  # I3 (a total raised) only when it is all there is
    return "+".join(shown)


def summary(rec: UsageRecord) -> str:
    """One line for `flow.comment`, the numbers first: `prompt 1678→107208 · R1` (the first
    changed count, totals last, then the rules). Nothing the column title already says; the usage
    diff view has the rest."""
    if rec.status == "rewritten":
        diff = flat_diff(rec.upstream_usage, rec.emitted_usage)
        diff.sort(key=lambda d: d[0].rsplit(".", 1)[-1] in _TOTALS)  # stable: upstream's order else
        head = f"{_short(diff[0][0])} {_show(diff[0][1])}→{_show(diff[0][2])}" if diff else "usage rewritten"
        rules = _rule_ids(rec)
        return _clip(head + (f" · {rules}" if rules else ""))
    if rec.status == "unchanged":
        return "usage correct"
    if rec.status == "unmeasured":
        if rec.error:
            return _clip(f"unmeasured · cut off ({rec.error})")
        return "unmeasured · no usage in the response"
    if rec.status == "http_error":  # "HTTP 401 Unauthorized: no usage read"
        return _clip(str(rec.error).removeprefix("the upstream answered "))
    if rec.status == "undecodable_encoding":
        return _clip(f"untouched · {rec.error}")
    return _clip(f"passed through untouched · error: {rec.error}")
