"""Incremental content decoders, for upstreams that compress a stream although asked not to.

mitmproxy only decodes whole bodies; a stream must be decoded chunk by chunk as it passes. Each
encoding is decoded with the library mitmproxy itself uses for it: `zlib` for gzip and deflate,
`brotli` for br, and for zstd the stdlib's `compression.zstd` (Python 3.14), its backport
`backports.zstd` (mitmproxy 12.3) or `zstandard` (mitmproxy 12.2), whichever is there.

A stream may hold several members one after the other (gzip members, zstd frames, zlib streams):
every one is decoded. Bytes after the last member that do not start a new one are an error.

The contract, for whoever forwards the bytes: every input byte either went into the output of
`decode`/`flush`, or is in the `tail` of the `DecodeError` they raised. After an error the decoder
is spent; the caller forwards the rest of the stream as it comes. (brotli cannot tell where in a
chunk its stream ended: a chunk that runs on past the end comes back whole in the tail.)
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["DecodeError", "Decoder", "make_decoder"]


class Decoder(Protocol):
    def decode(self, chunk: bytes) -> bytes:
        """The decoded bytes of `chunk` (may be empty). Raises `DecodeError`."""
        ...

    def flush(self) -> bytes:
        """End of stream: whatever is still buffered. Raises `DecodeError` for trailing bytes
        that decode to nothing (a member begun and never continued, or garbage)."""
        ...


class DecodeError(ValueError):
    """Compressed data that cannot be decoded: corrupt, or bytes after the last member."""

    def __init__(self, message: str, *, decoded: bytes = b"", tail: bytes = b"") -> None:
        super().__init__(message)
        self.decoded = decoded
        """What the failing call decoded before the error: it belongs before `tail`."""
        self.tail = tail
        """The raw bytes that could not be decoded, from the ones fed since the decoder last
        produced output (or since the member began) through the end of the failing chunk."""


class _Member(Protocol):
    """One compressed member: a gzip member, a zlib or raw deflate stream, a zstd frame."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


# Raw bytes fed since the last output are kept (to hand them back on an error) up to this size;
# past it, an error's tail holds only the failing chunk.
_KEEP_UNPRODUCTIVE = 64 * 1024


class _Members:
    """Decodes members one after the other, each with a fresh `new_member()`."""

    def __init__(self, name: str, new_member: Callable[[], _Member], *, several: bool = True) -> None:
        self._name = name
        self._new = new_member
        self._several = several
        """Whether another member may follow one that ended (raw deflate and brotli have no
        header to tell a new member from garbage: nothing may follow them)."""
        self._d: _Member | None = None
        self._members = 0
        self._produced = False
        """Whether the current member has produced output."""
        self._unproductive: bytearray | None = bytearray()
        """Raw bytes fed since the last output (None: more than `_KEEP_UNPRODUCTIVE`)."""
        self._spent = False

    def _fail(self, why: str, decoded: list[bytes], data: bytes) -> DecodeError:
        self._spent = True
        held = self._unproductive
        tail = bytes(held) + data if held is not None else data
        return DecodeError(f"{self._name}: {why}", decoded=b"".join(decoded), tail=tail)

    def decode(self, chunk: bytes) -> bytes:
        if self._spent:
            raise DecodeError(f"{self._name}: decoder used after an error", tail=chunk)
        out: list[bytes] = []
        data = chunk
        while data:
            if self._d is None:
                if self._members and not self._several:
                    raise self._fail(f"{len(data)} bytes after the end of the stream", out, data)
                self._d = self._new()
                self._members += 1
                self._produced = False
                self._unproductive = bytearray()
            try:
                got = self._d.decompress(data)
            except Exception as e:  # each backend has its own error types
                after = self._members > 1 and not self._produced
                why = "bytes after the last member" if after else "corrupt data"
                raise self._fail(f"{why} ({type(e).__name__}: {e})", out, data) from e
            if got:
                out.append(got)
                self._produced = True
                self._unproductive = bytearray()
            elif self._unproductive is not None:
                if len(self._unproductive) + len(data) > _KEEP_UNPRODUCTIVE:
                    self._unproductive = None
                else:
                    self._unproductive += data
            if self._d.eof:  # every byte of the member is accounted for: the rest is the next one's
                data = self._d.unused_data
                self._d = None
                self._unproductive = bytearray()
            else:
                data = b""
        return b"".join(out)

    def flush(self) -> bytes:
        if self._spent or self._d is None:
            return b""
        d, self._d = self._d, None
        flush = getattr(d, "flush", None)  # zlib's and zstandard's; the others hold nothing back
        rest: bytes = flush() if callable(flush) else b""
        if not self._produced and not rest:
            # A member begun and never continued decodes to nothing: hand its bytes back.
            raise self._fail("the stream ends inside a member that decoded to nothing", [], b"")
        # A member cut short after it produced output keeps what it gave (as zlib and browsers do).
        return rest


def _gzip() -> Decoder:
    # wbits 47 = 32 + 15: each member's gzip (or zlib) header detected by zlib, as mitmproxy does.
    return _Members("gzip", lambda: zlib.decompressobj(47))


def _zlib_header(head: bytes) -> bool:
    """RFC 1950: deflate (CM 8) with a window of at most 32 KiB, and the header check bits."""
    return head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and int.from_bytes(head[:2]) % 31 == 0


class _Deflate:
    """`deflate` is meant to be zlib-wrapped (RFC 9110), but some servers send it raw: mitmproxy
    accepts both, and so do we, told apart by the first two bytes."""

    def __init__(self) -> None:
        self._d: _Members | None = None
        self._head = b""

    def decode(self, chunk: bytes) -> bytes:
        if self._d is None:
            self._head += chunk
            if len(self._head) < 2:
                return b""
            chunk, self._head = self._head, b""
            if _zlib_header(chunk):
                self._d = _Members("deflate (zlib)", lambda: zlib.decompressobj(15))
            else:
                self._d = _Members("deflate (raw)", lambda: zlib.decompressobj(-15), several=False)
        return self._d.decode(chunk)

    def flush(self) -> bytes:
        if self._d is None:
            if self._head:
                raise DecodeError("deflate: the stream ends after 1 byte", tail=self._head)
            return b""
        return self._d.flush()


class _BrotliMember:
    """A brotli stream is one member: `eof` once it is complete, and nothing may follow it."""

    def __init__(self, brotli: Any) -> None:
        self._d = brotli.Decompressor()

    @property
    def eof(self) -> bool:
        return bool(self._d.is_finished())

    @property
    def unused_data(self) -> bytes:
        return b""  # brotli rejects a chunk that goes on past the end of the stream as a whole

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._d.process(data))


def _brotli() -> Decoder:
    brotli = importlib.import_module("brotli")  # a mitmproxy dependency; ImportError if missing
    return _Members("br", lambda: _BrotliMember(brotli), several=False)


def _zstd_backend() -> Callable[[], _Member]:
    """A new-frame decompressor from what mitmproxy ships: the stdlib on 3.14, its backport
    (12.3), or zstandard (12.2). Raises ImportError when none is installed."""
    for name in ("compression.zstd", "backports.zstd"):
        try:
            zstd: Any = importlib.import_module(name)
        except ImportError:
            continue
        return lambda: zstd.ZstdDecompressor()
    zstandard: Any = importlib.import_module("zstandard")
    return lambda: zstandard.ZstdDecompressor().decompressobj()


def _zstd() -> Decoder:
    return _Members("zstd", _zstd_backend())


class _Identity:
    def decode(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> bytes:
        return b""


_DECODERS: dict[str, Callable[[], Decoder]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _Deflate,
    "br": _brotli,
    "zstd": _zstd,
}
_IDENTITY = ("identity", "none")  # "none": mitmproxy reads it as identity too


def make_decoder(content_encoding: str) -> Decoder | None:
    """A decoder for a `content-encoding` value, or None when we cannot decode it: an unknown
    coding, a missing backend, or several codings stacked (`gzip, br`). Never raises.

    A stack is not decoded: an error in an inner coding could not hand back the wire's bytes
    (its input is the outer coding's output), and the stream must then pass through untouched.
    """
    codings = [c for c in (t.strip().lower() for t in content_encoding.split(",")) if c]
    codings = [c for c in codings if c not in _IDENTITY]
    if not codings:
        return _Identity()
    if len(codings) > 1 or codings[0] not in _DECODERS:
        return None
    try:
        return _DECODERS[codings[0]]()
    except Exception:  # ImportError for a missing backend, or anything it raises on creation
        return None
