"""The record built from what the rewriter did (a `RewriteResult`): never raises, so a response is
always recorded, if need be by a minimal record that says why it is all there is.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence

from usagefix.record import ChangeRecord, RuleRecord, Status, UsageRecord
from usagefix.result import RewriteResult

__all__ = ["build_record", "http_error_record", "minimal_record"]


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
        held_back_base64=_unless_text(held_back),
        stream_usage_added=stream_usage_added,
    )


def _unless_text(data: bytes) -> str | None:
    """`data` in base64 when it is not UTF-8 text (which `held_back` then cannot hold exactly)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii")
    return None
