"""Sans-IO, push-style framer for Server-Sent Events that keeps every event's exact bytes.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
Lines end with CRLF, LF or CR; an empty line ends an event. We frame on bytes and decode UTF-8 only
for the fields of events somebody asks about, so a multi-byte character cut by a chunk boundary is
never decoded half-way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEEvent", "SSEFramer", "parse_fields", "replace_data"]

# The largest event we hold back while waiting for its end. LLM events are small, except the
# terminal events that repeat the whole response (OpenAI Responses' `response.completed`), which
# can reach a few hundred KiB with long outputs. h11 bounds headers at 16 KiB and node.js at
# 80 KiB; we hold whole events, so the bound is larger. An event over it is forwarded unparsed.
DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024

# Two line terminators in a row end an event. The groups are atomic so that a CRLF is never
# read as a CR line followed by an empty LF line.
_EVENT_END = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")
_LINE_END = re.compile(rb"\r\n|\r|\n")


BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte order mark: the spec's decoder ignores one at the very start of the stream."""


# Not frozen: one is built per event on the hot path, and a frozen dataclass costs 4x to build.
@dataclass(slots=True)
class SSEEvent:
    """One event as it was on the wire, or one piece of it.

    `raw` is the exact bytes, blank-line terminator included. An event the framer could not parse
    is still forwarded as it was, with `complete=False` and the `reason`: `oversize` (over the
    bound: it comes out in pieces, as it arrives) or `cut_off` (the stream ended inside it). A piece
    with `starts_event=False` continues the event before it: the rest of an oversize event, or the
    LF of a CRLF whose CR ended the event before (sent on at once, the LF not awaited).
    """

    raw: bytes
    complete: bool = True
    reason: str | None = None
    starts_event: bool = True
    bom: bool = False
    """The stream's first event, starting with a byte order mark: parsed without it, kept as it is."""
    count: int = 1
    """How many whole events `raw` holds: one, or any number for a quiet run."""
    quiet: bool = False
    """A run of whole events (one or more) that the framer's `quiet` test let through as one
    piece: none of them can carry usage or end the stream, so the caller need not look."""

    def payload(self) -> tuple[str | None, str | None]:
        """(event name, data) of a complete event."""
        return parse_fields(self.raw[len(BOM) :] if self.bom else self.raw)

    def with_payload(self, data: str) -> bytes:
        """The event's bytes with its data replaced; every other line (and a leading BOM) kept."""
        if self.bom:
            return BOM + replace_data(self.raw[len(BOM) :], data)
        return replace_data(self.raw, data)


def parse_fields(raw: bytes) -> tuple[str | None, str | None]:
    """Return (event name, data) of one complete event; data lines are joined with LF.

    Comment lines (starting with `:`) and unknown fields are ignored, as the spec says. Returns
    `None` for data when the event has no data line.
    """
    name: str | None = None
    data: list[bytes] = []
    for line in _LINE_END.split(raw):
        if not line or line[0] == 0x3A:  # empty line or ": comment"
            continue
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data:
        return name, None
    return name, b"\n".join(data).decode("utf-8")


class SSEFramer:
    """Cuts a byte stream into SSE events.

    `feed(chunk)` returns the events completed by `chunk`, each as soon as its last byte is here;
    `finish()` returns what is left at the end of the stream. Concatenating every returned `raw`,
    in order, gives back exactly the bytes that were fed; if `feed` raises, `pending_bytes()`
    still holds every byte fed and not returned (the buffer is extended first, trimmed last).
    """

    def __init__(
        self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, quiet: Callable[[bytes], bool] | None = None
    ) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self._quiet = quiet
        self._buf = bytearray()
        # Where the next search for an event end starts: everything before it holds no event
        # end. Kept so that a large event arriving in many chunks is scanned once, not again
        # with every chunk. Backs off 3 bytes, since a terminator is at most 4 bytes long.
        self._scan_from = 0
        # True while we forward the rest of an over-bound event unparsed, up to its end.
        self._skipping = False
        # The last event ended with a CR at the end of what we had: an LF next is its CRLF's end.
        self._lf_may_follow = False
        self._at_start = True  # no event returned yet: the first may start with a BOM
        # The held bytes may hold a CR (the hot path is for LF line ends only). Kept, not
        # searched for, so that a large event arriving in many chunks is not scanned again with
        # each: set by a chunk with a CR, cleared once the held bytes have none.
        self._cr_held = False
        # The hot path may be taken: a `quiet` test, and none of the four states above that the
        # general loop must see (at the start, skipping, an LF awaited, a CR held). One flag, set
        # where they change (`_settle`), so that a chunk of a long stream reads one, not five.
        self._hot = False
        self.run_count = 1
        """How many events the last quiet run `take` returned holds."""

    @property
    def quiet(self) -> Callable[[bytes], bool] | None:
        """A byte test of a run of whole events: True means none of them needs to be looked at,
        so the run comes out as one event with its `count` (the hot path of a long stream: one
        piece per chunk instead of one object per event). It must be true of a run only if it
        would be true of each event in it (a search for a needle without a line end is)."""
        return self._quiet

    @quiet.setter
    def quiet(self, test: Callable[[bytes], bool] | None) -> None:
        self._quiet = test
        self._settle()

    def _settle(self) -> None:
        self._hot = self._quiet is not None and not (
            self._at_start or self._skipping or self._lf_may_follow or self._cr_held
        )

    @property
    def pending(self) -> int:
        """Bytes held back: the incomplete tail of the stream."""
        return len(self._buf)

    def pending_bytes(self) -> bytes:
        """The held-back tail, for a caller that gives up on framing and forwards it as it is."""
        return bytes(self._buf)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events `chunk` completes (a quiet run as one event with its `count`)."""
        run = self.take(chunk)
        if isinstance(run, bytes):
            # Positional: keywords cost a dict per call (twice the time).
            return [SSEEvent(run, True, None, True, False, self.run_count, True)] if run else []
        return run

    def take(self, chunk: bytes) -> bytes | list[SSEEvent]:
        """`feed`, for the hot path: a quiet run comes back as its bytes alone (its number of
        events in `run_count`), and a chunk that ends no event on that path as b"", without an
        event object; anything else comes back as `feed` gives it, a list of events."""
        buf = self._buf
        if chunk.find(b"\r") >= 0:  # one search a chunk: a CR line end takes the general loop
            self._cr_held = True
            self._hot = False
        if not self._hot:
            # The general loop: the stream's first event, an over-bound one, a CR line end.
            buf += chunk
            return self._feed(buf)
        quiet = self._quiet
        assert quiet is not None  # (`_hot` says so)
        if not buf and type(chunk) is bytes:
            size = len(chunk)
            if 2 < size <= self.max_event_bytes and chunk[-1] == chunk[-2] == 0x0A and chunk[-3] != 0x0A:
                # Nothing held, and the chunk is whole events (a server that writes an event per
                # chunk): a quiet run as it came, without a trip through the buffer (the cut is the
                # one the path below makes).
                try:
                    if quiet(chunk):
                        # One line and its blank line (the first LF ends it): one event, told by a
                        # memchr instead of a count of LF LF (which costs as much as a regex search).
                        self.run_count = 1 if chunk.find(b"\n") == size - 2 else chunk.count(b"\n\n")
                        return chunk
                except BaseException:
                    buf += chunk  # held, as the buffer would hold it had it raised below
                    raise
                buf += chunk  # not quiet: the path below would ask the same of the same bytes
                return self._feed(buf)
        # The buffer is extended first and trimmed last, so that if anything in between
        # raised, `pending_bytes()` would still hold every byte not yet returned.
        buf += chunk
        # The hot path of a long stream, in the plain case: LF line ends only (no CR held) and
        # the held bytes within the bound. A chunk that ends no event returns nothing; one whose
        # whole events pass `quiet` returns them as one run. It cuts exactly where `_feed`'s loop
        # would: at the last LF LF, unless an LF comes before it (in a run of LFs, the loop pairs
        # them from the left; `rfind` would pair them from the right).
        n = len(buf)
        if n <= self.max_event_bytes:
            last = buf.rfind(b"\n\n", self._scan_from)
            if last < 0:
                self._scan_from = n - 3 if n > 3 else 0
                return b""
            if last and buf[last - 1] != 0x0A:
                end = last + 2
                raw = bytes(buf[:end])
                if quiet(raw):
                    del buf[:end]
                    n -= end
                    self._scan_from = n - 3 if n > 3 else 0
                    self.run_count = 1 if raw.find(b"\n") == end - 2 else raw.count(b"\n\n")
                    return raw
        return self._feed(buf)

    def _feed(self, buf: bytearray) -> list[SSEEvent]:
        self._hot = False  # until `_settle`: should this raise, the next chunk comes here again
        events: list[SSEEvent] = []
        start = 0
        pos = self._scan_from
        n = len(buf)
        if self._lf_may_follow and n:
            self._lf_may_follow = False
            if buf[0] == 0x0A:
                # The CR that ended the last event was half of a CRLF: its LF goes on alone.
                events.append(SSEEvent(b"\n", complete=False, starts_event=False))
                start = pos = 1
        lflf = buf.find(b"\n\n", pos)
        while True:
            # Fast path for the common LF-only stream: two C-speed finds instead of the regex,
            # which only runs when a CR shows up before the first LF LF.
            cr = buf.find(b"\r", pos, lflf if lflf >= 0 else n)
            if cr < 0:
                if lflf < 0:
                    break
                end = size = lflf + 2
            else:
                m = _EVENT_END.search(buf, pos)
                if m is None:
                    break
                end = size = m.end()
                if buf[end - 1] == 0x0A and buf[end - 2] == 0x0D:
                    size -= 1  # the LF of a final CRLF may come after the event went: not counted
            # An event over the bound is flagged even when it arrived whole, so that what gets
            # parsed does not depend on chunking.
            if self._skipping:
                events.append(SSEEvent(bytes(buf[start:end]), False, "oversize", starts_event=False))
            elif size - start > self.max_event_bytes:
                events.append(SSEEvent(bytes(buf[start:end]), False, "oversize"))
            else:
                raw = bytes(buf[start:end])
                events.append(SSEEvent(raw, bom=self._at_start and raw.startswith(BOM)))
            self._at_start = self._skipping = False
            start = pos = end
            lflf = buf.find(b"\n\n", pos)
        if events and start == n and buf[n - 1] == 0x0D:
            # An event ended with a CR and nothing after it yet. It is complete (a CR ends a
            # line), so it goes now; should an LF come next, it is the rest of a CRLF.
            self._lf_may_follow = True
        if self._skipping:
            # Forward the over-bound event as it comes, keeping the last 3 bytes: they may be
            # the start of the terminator that ends it.
            keep_from = max(start, n - 3)
            if keep_from > start:
                events.append(SSEEvent(bytes(buf[start:keep_from]), False, "oversize", starts_event=False))
                start = keep_from
        elif n - start > self.max_event_bytes:
            # No end within the bound: forward what we hold, unparsed, and keep forwarding
            # until this event ends.
            keep_from = max(start, n - 3)
            events.append(SSEEvent(bytes(buf[start:keep_from]), False, "oversize"))
            self._at_start = False
            self._skipping = True
            start = keep_from
        if start:
            del buf[:start]
        self._scan_from = max(0, len(buf) - 3)
        if self._cr_held:  # a CR stream's held bytes find one at once; the search ends early
            self._cr_held = buf.find(b"\r") >= 0
        self._settle()
        return events

    def finish(self) -> list[SSEEvent]:
        """End of stream: return the held-back tail, if any.

        A tail ending in a line terminator is a complete event: its blank line never came (some
        servers end the stream that way). A tail without one is cut off, as is the rest of an
        over-bound event (an empty piece, when every byte of it has gone already).
        """
        raw = bytes(self._buf)
        self._buf.clear()
        self._cr_held = False
        self._scan_from = 0
        self._lf_may_follow = False
        skipping, self._skipping = self._skipping, False
        self._settle()
        if skipping:
            return [SSEEvent(raw, False, "cut_off", starts_event=False)]
        if not raw:
            return []
        if not raw.endswith((b"\n", b"\r")):
            return [SSEEvent(raw, False, "cut_off")]
        return [SSEEvent(raw, bom=self._at_start and raw.startswith(BOM))]


def replace_data(raw: bytes, data: str) -> bytes:
    """`raw` (one complete event) with its data replaced by `data`, every other line kept.

    When the new data has as many lines as the old (the usual case: a value spliced inside a
    line), each new line takes its old one's place, with that line's `data:` or `data: ` prefix and
    line ending, so that comments or fields between data lines stay where they were. Otherwise
    the new data lines take the place of the first old one, with its prefix and ending. The other
    lines (event name, id, comments) and the blank line that ends the event stay as they were.
    """
    lines = raw.splitlines(keepends=True)  # bytes split on CRLF, CR and LF alone
    data_at = [i for i, whole in enumerate(lines) if whole.rstrip(b"\r\n").partition(b":")[0] == b"data"]
    if not data_at:
        raise ValueError("event has no data line")
    parts = data.encode("utf-8").split(b"\n")
    if len(parts) == len(data_at):
        for i, part in zip(data_at, parts, strict=True):
            lines[i] = _data_line(lines[i], part)
        return b"".join(lines)
    out: list[bytes] = []
    first, rest = data_at[0], set(data_at[1:])
    for i, whole in enumerate(lines):
        if i == first:
            out.extend(_data_line(whole, part) for part in parts)
        elif i not in rest:
            out.append(whole)
    return b"".join(out)


def _data_line(whole: bytes, part: bytes) -> bytes:
    """The data line `whole` (with its line ending) carrying `part` instead, in the same style."""
    line = whole.rstrip(b"\r\n")
    value = line.partition(b":")[2]
    # A reader strips one space after the colon, so data that itself begins with a space needs
    # the spaced prefix whatever the old line had, or its first space would be lost.
    spaced = value.startswith(b" ") or part.startswith(b" ")
    return (b"data: " if spaced else b"data:") + part + whole[len(line) :]
