"""Sans-IO, push-style framer for a streamed JSON array: `[{…}\\r\\n,\\r\\n{…}]`.

Gemini's `streamGenerateContent` without `alt=sse` sends one JSON array, element by element
(usage-semantics §4.2). Each element comes out as soon as it is complete, with its exact bytes;
the bytes between elements (`[`, `,`, whitespace, the closing `]` and anything after it) come out
on their own, as soon as they arrive, so that nothing complete is ever held.
A body that starts with `{` is framed as a single element; anything else passes through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from usagefix.framing.sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["ArrayElement", "JSONArrayFramer"]

_STRUCTURAL = re.compile(rb'[\[\]{}"]')
_IN_STRING = re.compile(rb'["\\]')
_NON_WS = re.compile(rb"[^ \t\r\n]")
_PRIMITIVE_END = re.compile(rb"[,\] \t\r\n]")

_BEFORE, _BETWEEN, _VALUE, _AFTER = range(4)


# Not frozen: one is built per event on the hot path, and a frozen dataclass costs 4x to build.
@dataclass(slots=True)
class ArrayElement:
    """A piece of the array: `raw` as on the wire, `raw[value[0]:value[1]]` the element (if any).

    Bytes between or after elements (separators, the closing bracket, a body that is no array)
    come out as soon as they arrive, with `starts_event=False` and no value. An element that
    cannot be parsed passes as it came, with its `reason`: `oversize` (over the bound: in pieces,
    the first with `starts_event=True`) or `cut_off` (the stream ended inside it).
    """

    raw: bytes
    value: tuple[int, int] | None = None
    complete: bool = True
    reason: str | None = None
    starts_event: bool = True
    count: int = 1
    """Always one event (this framer does not join quiet runs)."""
    quiet: bool = False
    """Never: this framer does not join quiet runs."""

    def payload(self) -> tuple[str | None, str | None]:
        """(None, the element's JSON text), or (None, None) for separators and the closing bracket."""
        if self.value is None:
            return None, None
        return None, self.raw[self.value[0] : self.value[1]].decode("utf-8")

    def with_payload(self, data: str) -> bytes:
        assert self.value is not None
        return self.raw[: self.value[0]] + data.encode("utf-8") + self.raw[self.value[1] :]


def _between(raw: bytes) -> ArrayElement:
    return ArrayElement(raw, None, complete=False, starts_event=False)


class JSONArrayFramer:
    """Cuts a JSON array byte stream into elements; concatenating every `raw` gives the input.

    If `feed` raises, `pending_bytes()` still holds every byte fed and not returned.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._state = _BEFORE
        self._top_level = False  # a bare `{…}` body, not an array
        # Inside a value: where it starts in the buffer, how deep we are, and string state. The
        # string and escape flags cross chunk boundaries: a chunk may end inside a string, or
        # right after a backslash.
        self._vstart = 0
        self._depth = 0
        self._primitive = False
        self._in_string = False
        self._escape = False
        self._skipping = False  # an element over the bound is being forwarded unparsed

    @property
    def pending(self) -> int:
        return len(self._buf)

    def pending_bytes(self) -> bytes:
        return bytes(self._buf)

    def feed(self, chunk: bytes) -> list[ArrayElement]:
        buf = self._buf
        buf += chunk
        out: list[ArrayElement] = []
        start, i, n = 0, self._pos, len(buf)
        while i < n:
            if self._state == _AFTER:
                out.append(_between(bytes(buf[start:n])))
                start = i = n
            elif self._state == _VALUE:
                end = self._scan_value(buf, i)
                if end is None:
                    i = n
                    break
                if self._skipping:
                    out.append(ArrayElement(bytes(buf[start:end]), None, False, "oversize", False))
                elif end - self._vstart > self.max_event_bytes:
                    # Flagged even when it arrived whole: what gets parsed does not depend on chunking.
                    out.append(ArrayElement(bytes(buf[start:end]), None, False, "oversize"))
                else:
                    out.append(ArrayElement(bytes(buf[start:end]), (self._vstart - start, end - start)))
                self._skipping = False
                start = i = end
                self._state = _AFTER if self._top_level else _BETWEEN
            else:
                m = _NON_WS.search(buf, i)
                if m is None:
                    i = n
                    break
                j = m.start()
                c = buf[j]
                if self._state == _BEFORE:
                    if c == 0x5B:  # [
                        self._state = _BETWEEN
                        i = j + 1
                        continue
                    if c != 0x7B:  # not an array, not an object: nothing to frame
                        self._state = _AFTER
                        continue
                    self._top_level = True
                if c == 0x2C:  # ,
                    i = j + 1
                elif c == 0x5D:  # ] closes the array
                    out.append(_between(bytes(buf[start : j + 1])))
                    start = i = j + 1
                    self._state = _AFTER
                else:
                    if j > start:  # the separators before an element go on their own
                        out.append(_between(bytes(buf[start:j])))
                        start = j
                    self._open_value(buf, j)
                    i = self._pos
        if self._state == _VALUE:
            if self._skipping:
                if n > start:
                    out.append(ArrayElement(bytes(buf[start:n]), None, False, "oversize", False))
                    self._vstart = start = n
            elif n - self._vstart > self.max_event_bytes:
                # No end within the bound: forward what we hold, unparsed, and keep forwarding.
                self._skipping = True
                out.append(ArrayElement(bytes(buf[start:n]), None, False, "oversize"))
                self._vstart = start = n
        elif n > start:
            # Between elements: separators go on at once, nothing complete is held.
            out.append(_between(bytes(buf[start:n])))
            start = i = n
        if start:
            del buf[:start]
            self._vstart -= start
        self._pos = i - start
        return out

    take = feed
    """`feed`: this framer has no quiet runs (see `SSEFramer.take`)."""
    run_count = 1

    def finish(self) -> list[ArrayElement]:
        """End of stream: whatever is held (an element cut off) comes out as it is."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._pos = 0
        if self._state != _VALUE:
            return [_between(rest)] if rest else []
        self._state = _AFTER
        if self._skipping:
            self._skipping = False
            return [ArrayElement(rest, None, False, "cut_off", False)]
        if self._primitive and not self._in_string:
            # A bare number/literal ends with the stream.
            return [ArrayElement(rest, (self._vstart, len(rest)))]
        return [ArrayElement(rest, None, False, "cut_off")]

    def _open_value(self, buf: bytearray, j: int) -> None:
        c = buf[j]
        self._state = _VALUE
        self._vstart = j
        self._depth = 0
        self._primitive = False
        self._in_string = self._escape = False
        if c in (0x7B, 0x5B):  # { [
            self._depth = 1
        elif c == 0x22:  # "
            self._in_string = True
        else:
            self._primitive = True
        self._pos = j + 1 if not self._primitive else j

    def _scan_value(self, buf: bytearray, i: int) -> int | None:
        """Scan from `i`; return the end of the current value, or None if it goes on."""
        n = len(buf)
        if self._primitive:
            m = _PRIMITIVE_END.search(buf, i)
            return m.start() if m else None
        while i < n:
            if self._in_string:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                m = _IN_STRING.search(buf, i)
                if m is None:
                    return None
                if buf[m.start()] == 0x5C:  # backslash: skip what it escapes
                    self._escape = True
                    i = m.start() + 1
                    continue
                self._in_string = False
                i = m.start() + 1
                if self._depth == 0:
                    return i  # a string element
                continue
            m = _STRUCTURAL.search(buf, i)
            if m is None:
                return None
            c = buf[m.start()]
            i = m.start() + 1
            if c == 0x22:
                self._in_string = True
            elif c in (0x7B, 0x5B):
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return i
        return None
