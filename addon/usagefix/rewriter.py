"""Framer + dialect + normalization: rewrites a response's usage and keeps what it changed.

`StreamRewriter.feed(chunk)` returns what may go to the client now: every complete event, at
once, untouched unless it carries usage that needed fixing. Only the incomplete tail is held.
`rewrite_body` does the same for a whole, non-streamed JSON body.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

from usagefix.dialects import NO_CONTEXT, Context, Dialect, Tally
from usagefix.framing import DEFAULT_MAX_EVENT_BYTES, Event, Framing, make_framer
from usagefix.normalize import UsageShapeError

__all__ = ["BodyRewrite", "EventChange", "Rewrite", "StreamRewriter", "rewrite_body", "rewrite_stream"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventChange:
    """One event we rewrote: where it sits in what the client received, and both texts."""

    index: int
    """Its position among the events of the response, from 0."""
    offset: int
    """Its byte offset in the body the client received."""
    original: str
    rewritten: str


@dataclass
class Rewrite:
    """What rewriting a response did, for the record."""

    dialect: str
    streamed: bool
    profile: str | None = None
    tally: Tally = field(default_factory=Tally)
    changes: list[EventChange] = field(default_factory=list)
    error: str | None = None
    """Set when the rewriter failed and let the rest through untouched (fail open)."""
    events: int = 0
    oversize_events: int = 0
    incomplete_tail: int = 0
    """Bytes of an event cut off by the end of the stream (forwarded as they were)."""


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


class StreamRewriter:
    """Rewrites a stream (SSE, JSON array, event stream) incrementally; any chunking gives the
    same output as the whole."""

    def __init__(
        self,
        dialect: Dialect,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        ctx: Context = NO_CONTEXT,
        framing: Framing = "sse",
    ) -> None:
        self.dialect = dialect
        self.ctx = ctx
        self.outcome = Rewrite(dialect.name, streamed=True, profile=ctx.profile.name if ctx.profile else None)
        self._framer = make_framer(framing, max_event_bytes)
        self._session = dialect.stream_session(self.outcome.tally, ctx)
        self._sent = 0  # bytes returned so far, for change offsets
        self._failed = False
        self._last = b""  # the last event forwarded, to tell a finished stream from a cut one

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the end of their event."""
        return self._framer.pending

    @property
    def ended(self) -> bool:
        """Whether the dialect's last event (`[DONE]`, `message_stop`, …) has been forwarded."""
        return self._framer.pending == 0 and any(m in self._last for m in self.dialect.end_markers)

    def pending_bytes(self) -> bytes:
        """The held-back bytes themselves (never forwarded if the stream is cut off now)."""
        return self._framer.pending_bytes()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Take a chunk; return the bytes that can go to the client now (never an empty piece)."""
        if self._failed:
            return [chunk] if chunk else []
        try:
            return self._forward(self._framer.feed(chunk))
        except Exception as e:  # fail open: the framer gave up, forward everything it held
            return self.abandon(_describe(e))

    def finish(self) -> list[bytes]:
        """End of stream: return the held tail, if any."""
        if self._failed:
            return []
        try:
            return self._forward(self._framer.finish(), at_end=True)
        except Exception as e:
            return self.abandon(_describe(e))

    def abandon(self, reason: str) -> list[bytes]:
        """Give up: return the held bytes as they came, and pass everything after untouched."""
        self._failed = True
        self.outcome.error = reason
        logger.warning("usagefix: rewriter failed, forwarding the rest untouched: %s", reason)
        held = self._framer.pending_bytes()
        return [held] if held else []

    def _forward(self, events: Sequence[Event], at_end: bool = False) -> list[bytes]:
        if not events:
            return []
        out = self.outcome
        session = self._session
        pieces: list[bytes] = []
        for ev in events:
            raw = ev.raw
            if not ev.complete:
                # Unparsed: a piece of an event over the bound, or, at the end, one cut off.
                if at_end:
                    out.incomplete_tail += len(raw)
                else:
                    out.oversize_events += 1
            elif not self._failed and session.might_carry_usage(raw):
                raw = self._rewrite_event(ev)
            if raw:
                pieces.append(raw)
                self._last = raw
            self._sent += len(raw)
            out.events += 1
        return [b"".join(pieces)] if len(pieces) > 1 else pieces

    def _rewrite_event(self, ev: Event) -> bytes:
        out = self.outcome
        raw = ev.raw
        try:
            name, data = ev.payload()
            if data is None:
                return raw
            new = self._session.rewrite_event(name, data)
            if new is None:
                return raw
            rewritten = ev.with_payload(new) if new else b""  # "" drops the whole event
        except UsageShapeError as e:
            out.tally.flag(f"invalid_usage: {e}")
            return raw
        except (ValueError, UnicodeDecodeError) as e:  # not JSON, not UTF-8
            out.tally.flag(f"unparseable_event: {_describe(e)}")
            return raw
        except Exception as e:  # a bug of ours: this event and the rest go through untouched
            self._failed = True
            out.error = _describe(e)
            logger.warning(
                "usagefix: rewriting an event failed, forwarding the rest untouched: %s", out.error
            )
            return raw
        out.changes.append(
            EventChange(out.events, self._sent, raw.decode("utf-8"), rewritten.decode("utf-8"))
        )
        return rewritten


@dataclass(frozen=True, slots=True)
class BodyRewrite:
    body: bytes | None
    """The new body, or None to leave the response exactly as it was."""
    outcome: Rewrite


def rewrite_body(dialect: Dialect, body: bytes, ctx: Context = NO_CONTEXT) -> BodyRewrite:
    """Rewrite the usage of a whole JSON body; never raises."""
    out = Rewrite(dialect.name, streamed=False, profile=ctx.profile.name if ctx.profile else None)
    try:
        text = body.decode("utf-8")
        new = dialect.rewrite_json(text, out.tally, ctx)
    except UsageShapeError as e:
        out.tally.flag(f"invalid_usage: {e}")
        return BodyRewrite(None, out)
    except (ValueError, UnicodeDecodeError) as e:
        out.tally.flag(f"unparseable_body: {_describe(e)}")
        return BodyRewrite(None, out)
    except Exception as e:
        out.error = _describe(e)
        logger.warning("usagefix: rewriting a body failed, forwarding it untouched: %s", out.error)
        return BodyRewrite(None, out)
    if new is None:
        return BodyRewrite(None, out)
    out.changes.append(EventChange(0, 0, text, new))
    return BodyRewrite(new.encode("utf-8"), out)


def rewrite_stream(
    dialect: Dialect,
    body: bytes,
    *,
    complete: bool = True,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ctx: Context = NO_CONTEXT,
    framing: Framing = "sse",
) -> tuple[bytes, StreamRewriter]:
    """Rewrite a whole recorded stream at once, as if it had arrived in one chunk.

    With `complete=False` (the stream was cut off), the unfinished tail stays held, as it was
    live: `rewriter.pending_bytes()` has it. Never raises.
    """
    rw = StreamRewriter(dialect, max_event_bytes, ctx, framing)
    out = rw.feed(body)
    if complete:
        out += rw.finish()
    return b"".join(out), rw
