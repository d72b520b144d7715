"""Sans-IO, push-style framer for newline-delimited JSON (`application/x-ndjson`) that keeps every
line's exact bytes.

Ollama's native API streams one JSON object per line, each ended by LF (a CRLF is taken too: the
CR stays in the line's bytes and out of its payload). A line that holds only whitespace is no
event of its own: it goes on as bytes between events. Framing is on bytes; only the lines somebody
asks about are decoded, so a multi-byte character cut by a chunk boundary is never decoded
half-way.
"""

from __future__ import annotations

from dataclasses import dataclass

from usagefix.framing.sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["NDJSONFramer", "NDJSONLine"]

_BLANK = b" \t\r"


@dataclass(slots=True)
class NDJSONLine:
    """One line as it was on the wire (its LF included), or one piece of it.

    A line the framer could not parse is still forwarded as it was, with `complete=False` and the
    `reason`: `oversize` (longer than the bound: it comes out in pieces, as it arrives) or
    `cut_off` (the stream ended inside it). A blank line is `complete=False` with no reason and
    `starts_event=False`, as are the pieces after the first of an oversize line.
    """

    raw: bytes
    complete: bool = True
    reason: str | None = None
    starts_event: bool = True
    count: int = 1
    """Always one event (this framer does not join quiet runs)."""
    quiet: bool = False
    """Never: this framer does not join quiet runs."""

    def payload(self) -> tuple[str | None, str | None]:
        """(None, the line's text without its line ending): NDJSON lines have no event name."""
        return None, _content(self.raw).decode("utf-8")

    def with_payload(self, data: str) -> bytes:
        """The line carrying `data` instead, with its own line ending."""
        body = _content(self.raw)
        return data.encode("utf-8") + self.raw[len(body) :]


def _content(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(b"\n") else raw


class NDJSONFramer:
    """Cuts a byte stream into lines.

    `feed(chunk)` returns the lines completed by `chunk`, each as soon as its LF is here;
    `finish()` returns what is left. Concatenating every returned `raw`, in order, gives back
    exactly the bytes fed; if `feed` raises, `pending_bytes()` still holds every byte fed and not
    returned (the buffer is extended first, trimmed last).
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._scan_from = 0  # no LF before this offset of the buffer
        self._skipping = False  # forwarding the rest of an over-bound line, up to its LF

    @property
    def pending(self) -> int:
        return len(self._buf)

    def pending_bytes(self) -> bytes:
        return bytes(self._buf)

    def feed(self, chunk: bytes) -> list[NDJSONLine]:
        buf = self._buf
        buf += chunk
        lines: list[NDJSONLine] = []
        start = 0
        while (lf := buf.find(b"\n", max(start, self._scan_from))) >= 0:
            end = lf + 1
            raw = bytes(buf[start:end])
            if self._skipping:
                lines.append(NDJSONLine(raw, False, "oversize", starts_event=False))
            elif lf - start > self.max_event_bytes:  # over the bound even when whole: chunking-proof
                lines.append(NDJSONLine(raw, False, "oversize"))
            elif not raw.strip(_BLANK + b"\n"):
                lines.append(NDJSONLine(raw, False, None, starts_event=False))
            else:
                lines.append(NDJSONLine(raw))
            self._skipping = False
            start = end
        n = len(buf)
        if n > start and (self._skipping or n - start > self.max_event_bytes):
            # No LF within the bound: forward what is held, unparsed, until the line ends.
            lines.append(NDJSONLine(bytes(buf[start:]), False, "oversize", starts_event=not self._skipping))
            self._skipping = True
            start = n
        if start:
            del buf[:start]
        self._scan_from = len(buf)
        return lines

    take = feed
    """`feed`: this framer has no quiet runs (see `SSEFramer.take`)."""
    run_count = 1

    def finish(self) -> list[NDJSONLine]:
        """End of stream: the held tail, a line cut off before its LF (or blank bytes)."""
        raw = bytes(self._buf)
        self._buf.clear()
        self._scan_from = 0
        skipping, self._skipping = self._skipping, False
        if skipping:
            return [NDJSONLine(raw, False, "cut_off", starts_event=False)]
        if not raw:
            return []
        if not raw.strip(_BLANK):
            return [NDJSONLine(raw, False, None, starts_event=False)]
        return [NDJSONLine(raw, False, "cut_off")]
