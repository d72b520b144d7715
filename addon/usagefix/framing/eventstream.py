"""Sans-IO decoder for AWS's binary event stream (`application/vnd.amazon.eventstream`).

Bedrock's `ConverseStream` and `InvokeModelWithResponseStream` send it. A message is:
total length (u32 BE) | headers length (u32 BE) | prelude CRC32 | headers | payload | message CRC32,
each header `name length (u8) | name | type (u8) | value`
(https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html).
Frames come out with their exact bytes; one whose CRC fails is flagged and passed through.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from usagefix.framing.sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["EventStreamFramer", "Frame", "encode_frame", "parse_headers"]

_PRELUDE = struct.Struct(">III")
# Header value types: fixed sizes, or None for u16-length-prefixed (6 bytes, 7 string).
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}

HeaderValue = bool | int | bytes | str


def parse_headers(data: bytes) -> dict[str, HeaderValue]:
    """Decode a header block; raises `ValueError` on a malformed one."""
    out: dict[str, HeaderValue] = {}
    i = 0
    try:
        while i < len(data):
            n = data[i]
            name = data[i + 1 : i + 1 + n].decode("utf-8")
            i += 1 + n
            kind = data[i]
            i += 1
            if kind in (0, 1):
                out[name] = kind == 0
            elif kind in _FIXED:
                size = _FIXED[kind]
                raw = data[i : i + size]
                if len(raw) != size:
                    raise ValueError("truncated header value")
                out[name] = raw if kind == 9 else int.from_bytes(raw, "big", signed=True)
                i += size
            elif kind in (6, 7):
                (size,) = struct.unpack_from(">H", data, i)
                raw = data[i + 2 : i + 2 + size]
                if len(raw) != size:
                    raise ValueError("truncated header value")
                out[name] = raw.decode("utf-8") if kind == 7 else raw
                i += 2 + size
            else:
                raise ValueError(f"unknown header type {kind}")
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"malformed headers: {e}") from e
    return out


def encode_frame(header_bytes: bytes, payload: bytes) -> bytes:
    """A whole message from its raw header block and payload, with both CRCs computed."""
    total = _PRELUDE.size + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + header_bytes + payload
    return body + struct.pack(">I", zlib.crc32(body))


# Not frozen: one is built per event on the hot path, and a frozen dataclass costs 4x to build.
@dataclass(slots=True)
class Frame:
    """One message as it was on the wire, or bytes that are not one, with the `reason`:
    `bad_crc` (the message CRC fails), `bad_headers` (its header block does not decode),
    `oversize` (over the bound: in pieces, the first with `starts_event=True`), `bad_prelude`
    (a prelude CRC or length is wrong: frame boundaries are lost, the rest of the stream passes
    unparsed) or `cut_off` (the stream ended inside it)."""

    raw: bytes
    complete: bool = True
    """False for bytes that are not a verified frame."""
    headers: dict[str, HeaderValue] = field(default_factory=dict)
    header_bytes: bytes = b""
    body: bytes = b""
    reason: str | None = None
    starts_event: bool = True
    count: int = 1
    """Always one event (this framer does not join quiet runs)."""
    quiet: bool = False
    """Never: this framer does not join quiet runs."""

    def payload(self) -> tuple[str | None, str | None]:
        """(`:event-type` or `:exception-type`, the payload as text)."""
        kind = self.headers.get(":event-type", self.headers.get(":exception-type"))
        return (kind if isinstance(kind, str) else None), self.body.decode("utf-8")

    def with_payload(self, data: str) -> bytes:
        """The frame re-encoded around a new payload: lengths and both CRCs recomputed."""
        return encode_frame(self.header_bytes, data.encode("utf-8"))


def _unparsed(raw: bytes, reason: str, starts_event: bool = True) -> Frame:
    return Frame(raw, complete=False, reason=reason, starts_event=starts_event)


class EventStreamFramer:
    """Cuts an event stream into frames. Concatenating every `raw` gives back the input; if
    `feed` raises, `pending_bytes()` still holds every byte fed and not returned."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._skip = 0  # bytes of an over-bound frame still to pass through unparsed
        self._skip_started = False  # its first piece has gone
        self._lost = False  # a prelude failed its CRC: frame boundaries are gone for good
        self._lost_started = False

    @property
    def pending(self) -> int:
        return len(self._buf)

    def pending_bytes(self) -> bytes:
        return bytes(self._buf)

    def feed(self, chunk: bytes) -> list[Frame]:
        buf = self._buf
        buf += chunk
        out: list[Frame] = []
        start = 0
        n = len(buf)
        while start < n:
            if self._lost:
                out.append(_unparsed(bytes(buf[start:]), "bad_prelude", not self._lost_started))
                self._lost_started = True
                start = n
                break
            if self._skip:
                take = min(self._skip, n - start)
                out.append(_unparsed(bytes(buf[start : start + take]), "oversize", not self._skip_started))
                self._skip_started = True
                self._skip -= take
                start += take
                continue
            if n - start < _PRELUDE.size:
                break
            total, hlen, crc = _PRELUDE.unpack_from(buf, start)
            if zlib.crc32(buf[start : start + 8]) != crc or total < _PRELUDE.size + 4 + hlen:
                self._lost = True
                continue
            if total > self.max_event_bytes:
                self._skip = total
                self._skip_started = False
                continue
            if n - start < total:
                break
            raw = bytes(buf[start : start + total])
            start += total
            (msg_crc,) = struct.unpack_from(">I", raw, total - 4)
            if zlib.crc32(raw[:-4]) != msg_crc:
                out.append(_unparsed(raw, "bad_crc"))
                continue
            header_bytes = raw[12 : 12 + hlen]
            try:
                headers = parse_headers(header_bytes)
            except ValueError:
                out.append(_unparsed(raw, "bad_headers"))
                continue
            out.append(Frame(raw, True, headers, header_bytes, raw[12 + hlen : -4]))
        if start:
            del buf[:start]
        return out

    take = feed
    """`feed`: this framer has no quiet runs (see `SSEFramer.take`)."""
    run_count = 1

    def finish(self) -> list[Frame]:
        """End of stream: a frame begun and not finished comes out as it is (an empty piece when
        every byte of an over-bound frame has gone already)."""
        rest = bytes(self._buf)
        self._buf.clear()
        if self._skip:
            self._skip = 0
            return [_unparsed(rest, "cut_off", starts_event=False)]
        return [_unparsed(rest, "cut_off")] if rest else []
