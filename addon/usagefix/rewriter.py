"""Framer + dialect + normalization: rewrites a response's usage and keeps what it changed.

`StreamRewriter.feed(chunk)` returns what may go to the client now: every complete event, at
once, untouched unless it carries usage that needed fixing. Only the incomplete tail is held.
`rewrite_body` (`wholebody.py`, re-exported here) does the same for a whole, non-streamed JSON body.

Fail open, losing nothing. As in h11, where the receive buffer alone owns the bytes not yet
consumed, the bytes not yet returned have one owner here: the framer's buffer, plus the events
taken out of it and not yet emitted. Each event is emitted as one transaction (its bytes, its
change, its counts and the tally move together, or none of them do); on any exception, in the
framer, the dialect, the change record or the rewriter itself, the raw bytes of every event not
yet emitted and the framer's held bytes go out as they came, in order, and from then on every
chunk passes untouched. The result says why (`error`, recorded as `passthrough_error`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

from usagefix.dialects import NO_CONTEXT, Context, Dialect, Tally
from usagefix.framing import DEFAULT_MAX_EVENT_BYTES, Event, Framing, make_framer
from usagefix.normalize import UsageShapeError
from usagefix.result import EventChange, RewriteResult, changed_span
from usagefix.wholebody import RewrittenBody, describe, rewrite_body

__all__ = [
    "EventChange",
    "RewriteResult",
    "RewrittenBody",
    "StreamRewriter",
    "changed_span",
    "rewrite_body",
    "rewrite_stream",
]

logger = logging.getLogger(__name__)


def _save(tally: Tally) -> dict[str, Any]:
    """The tally's state, to put back if the event that is changing it fails."""
    saved: dict[str, Any] = {}
    for f in dataclasses.fields(tally):
        v = getattr(tally, f.name)
        saved[f.name] = v.copy() if isinstance(v, list | dict | set) else v
    return saved


def _restore(tally: Tally, saved: dict[str, Any]) -> None:
    for name, v in saved.items():
        setattr(tally, name, v)


class StreamRewriter:
    """Rewrites a stream (SSE, JSON array, event stream) incrementally; any chunking gives the
    same output, and the same result, as the whole."""

    def __init__(
        self,
        dialect: Dialect,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        ctx: Context = NO_CONTEXT,
        framing: Framing = "sse",
        *,
        where: str = "",
    ) -> None:
        self.dialect = dialect
        self.ctx = ctx
        self.where = where or "a stream"
        """What the log lines name (the flow's method and URL)."""
        self.result = RewriteResult(
            dialect.name, streamed=True, profile=ctx.profile.name if ctx.profile else None
        )
        self._session = dialect.stream_session(self.result.tally, ctx)
        self._markers = dialect.end_markers
        self._framer = make_framer(framing, max_event_bytes, self._session.quiet)
        self._fed = 0  # bytes taken in
        self._taken = 0  # bytes of the events taken out of the framer and emitted (or given up)
        self._sent = 0  # bytes returned, for change offsets
        self._failed = False
        self._ended = False  # the dialect's end event went out
        self._event_start = 0  # where the current event began, in the bytes taken in
        self._reasons: tuple[str, ...] = ()  # reasons already counted for the current event
        self._dropped = False  # the last event was dropped: the rest of its terminator goes too

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the end of their event."""
        return 0 if self._failed else self._framer.pending

    @property
    def ended(self) -> bool:
        """Whether the dialect's end event (`[DONE]`, `message_stop`, …, told by its name or
        type) has gone to the client, with nothing held after it."""
        return self._ended and self.pending == 0

    def pending_bytes(self) -> bytes:
        """The held-back bytes themselves (never forwarded if the stream is cut off now)."""
        return b"" if self._failed else self._framer.pending_bytes()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Take a chunk; return the bytes that can go to the client now (never an empty piece).

        Never raises."""
        if self._failed:
            self._sent += len(chunk)
            return [chunk] if chunk else []
        self._fed += len(chunk)
        try:
            events = self._framer.take(chunk)
        except Exception as e:
            return self._give_up(describe(e), (), [], chunk)
        if isinstance(events, bytes):  # the hot path: a quiet run, as it came (or nothing yet)
            return [self._pass(events, self._framer.run_count)] if events else []
        if not events:
            return []
        return self._emit(events)

    def finish(self) -> list[bytes]:
        """End of stream: return every byte still held, complete or not. Never raises."""
        if self._failed:
            return []
        try:
            events = self._framer.finish()
        except Exception as e:
            return self._give_up(describe(e), (), [])
        return self._emit(events)

    def abandon(self, reason: str) -> list[bytes]:
        """Give up (the caller failed): return the held bytes as they came; the rest passes untouched."""
        if self._failed:
            return []
        return self._give_up(reason, (), [])

    def _emit(self, events: Sequence[Event]) -> list[bytes]:
        pieces: list[bytes] = []
        done = 0
        might_carry_usage = self._session.might_carry_usage
        try:
            for ev in events:
                raw = ev.raw
                # (`feed` takes a quiet run as bytes, from `take`; one that reaches here as an
                # event, from a framer's `feed`, is only tested again.)
                carries = ev.complete and might_carry_usage(raw)
                may_end = False
                if ev.complete and not self._ended:
                    for m in self._markers:
                        if raw.find(m) >= 0:
                            may_end = True
                            break
                if ev.starts_event and ev.complete and not carries and not may_end:
                    pieces.append(self._pass(raw, ev.count))
                    done += 1
                    continue
                out = self._one(ev, carries, may_end)
                if out:
                    pieces.append(out)
                self._sent += len(out)
                self._taken += len(raw)
                done += 1
        except Exception as e:  # fail open: this event and everything after it go as they came
            return self._give_up(describe(e), events[done:], pieces)
        return [b"".join(pieces)] if len(pieces) > 1 else pieces

    def _pass(self, raw: bytes, count: int) -> bytes:
        """A whole event (or a quiet run of `count`), neither usage nor the end: it goes as it
        came. What `_one` would commit for it, without its bookkeeping (the hot path)."""
        self.result.events += count
        self._event_start = self._taken
        self._reasons = ()
        self._dropped = False
        self._sent += len(raw)
        self._taken += len(raw)
        return raw

    def _give_up(
        self, reason: str, rest: Sequence[Event], pieces: list[bytes], chunk: bytes = b""
    ) -> list[bytes]:
        """Forward every byte not yet returned, in order, and pass everything after untouched."""
        self._failed = True
        self.result.error = reason
        logger.warning("usagefix: %s: rewriter failed, forwarding the rest untouched: %s", self.where, reason)
        try:
            held = self._framer.pending_bytes()
        except Exception:
            held = b""
        tail = b"".join(ev.raw for ev in rest) + held
        missing = self._fed - self._taken - len(tail)
        if 0 < missing <= len(chunk):
            # The framer failed before keeping the chunk: its bytes are still ours to send.
            tail += chunk[len(chunk) - missing :]
        elif missing:
            logger.error("usagefix: %s: %d bytes unaccounted for after the failure", self.where, missing)
        if tail:
            pieces.append(tail)
        self._taken = self._fed
        self._sent += len(tail)
        return [b"".join(pieces)] if len(pieces) > 1 else pieces

    def _one(self, ev: Event, carries: bool, may_end: bool) -> bytes:
        """One event (or piece), as a transaction: everything is computed first, then committed.

        `carries`: the dialect's byte test says it may carry usage; `may_end`: it holds an end
        marker and the end has not come yet (both worked out once, by `_emit`)."""
        raw = ev.raw
        out = self.result
        emitted = raw
        change: EventChange | None = None
        replace_last = False
        ended = self._ended
        saved: dict[str, Any] | None = None
        if ev.complete:
            parsed: tuple[str | None, str | None] | None = None
            try:
                if carries:
                    saved = _save(out.tally)
                    try:
                        parsed = ev.payload()
                        emitted, change = self._rewrite(ev, parsed[0], parsed[1])
                    except UsageShapeError as e:  # not shaped as the dialect says: event untouched
                        _restore(out.tally, saved)
                        out.tally.flag(f"invalid_usage: {e}")
                    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                        # Bad input, not a bug of ours (not JSON, not UTF-8, nested past what
                        # Python parses): this event goes untouched and is flagged; a later event
                        # (the usage chunk) is still read.
                        _restore(out.tally, saved)
                        out.tally.flag(f"unparseable_event: {describe(e)}")
                if may_end:
                    ended = self._is_end(ev, parsed)
            except Exception:
                if saved is not None:
                    _restore(out.tally, saved)
                raise
        elif self._dropped and not ev.starts_event and ev.reason is None:
            # The LF of a CRLF whose CR ended a dropped event: it goes with that event.
            last = out.changes[-1]
            change = dataclasses.replace(last, original=last.original + raw.decode("utf-8"))
            emitted, replace_last = b"", True
        # Commit.
        if ev.starts_event:
            out.events += 1
            self._event_start = self._taken
            self._reasons = ()
        reason = ev.reason
        if reason is not None and reason not in self._reasons:
            self._reasons += (reason,)
            out.unparsed[reason] = out.unparsed.get(reason, 0) + 1
            if reason == "cut_off":
                out.incomplete_tail += self._taken + len(raw) - self._event_start
        if change is not None:
            if replace_last:
                out.changes[-1] = change
            else:
                out.changes.append(change)
                self._dropped = not emitted
        elif ev.starts_event:
            self._dropped = False
        self._ended = ended
        return emitted

    def _rewrite(self, ev: Event, name: str | None, data: str | None) -> tuple[bytes, EventChange | None]:
        raw = ev.raw
        if data is None:
            return raw, None
        new = self._session.normalize_event(name, data)
        if new is None:
            return raw, None
        rewritten = ev.with_payload(new) if new else b""  # "" drops the whole event
        return rewritten, changed_span(self.result.events, self._sent, raw, rewritten)

    def _is_end(self, ev: Event, parsed: tuple[str | None, str | None] | None) -> bool:
        try:
            name, data = parsed if parsed is not None else ev.payload()
        except ValueError:  # not UTF-8: not an end event we can tell
            return False
        return data is not None and self.dialect.is_end(name, data)


def rewrite_stream(
    dialect: Dialect,
    body: bytes,
    *,
    complete: bool = True,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ctx: Context = NO_CONTEXT,
    framing: Framing = "sse",
    where: str = "",
) -> tuple[bytes, StreamRewriter]:
    """Rewrite a whole recorded stream at once, as if it had arrived in one chunk.

    With `complete=False` (the stream was cut off), the unfinished tail stays held, as it was
    live: `rewriter.pending_bytes()` has it. Never raises.
    """
    rw = StreamRewriter(dialect, max_event_bytes, ctx, framing, where=where)
    out = rw.feed(body)
    if complete:
        out += rw.finish()
    return b"".join(out), rw
