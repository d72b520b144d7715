"""Incremental content decoders, for upstreams that compress a stream although asked not to.

mitmproxy only decodes whole bodies; a stream must be decoded chunk by chunk as it passes.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Protocol

__all__ = ["Decoder", "make_decoder"]


class Decoder(Protocol):
    def decode(self, chunk: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Zlib:
    def __init__(self) -> None:
        # wbits 47 = 32 + 15: detect a gzip or zlib header by itself.
        self._d = zlib.decompressobj(47)

    def decode(self, chunk: bytes) -> bytes:
        return self._d.decompress(chunk)

    def flush(self) -> bytes:
        return self._d.flush()


class _RawDeflate:
    """`deflate` is meant to be zlib-wrapped, but some servers send a raw stream."""

    def __init__(self) -> None:
        self._d: zlib._Decompress | None = None
        self._head = b""

    def decode(self, chunk: bytes) -> bytes:
        if self._d is None:
            self._head += chunk
            if len(self._head) < 2:
                return b""
            zlib_header = (self._head[0] & 0x0F) == 8 and int.from_bytes(self._head[:2]) % 31 == 0
            self._d = zlib.decompressobj(15 if zlib_header else -15)
            chunk, self._head = self._head, b""
        return self._d.decompress(chunk)

    def flush(self) -> bytes:
        if self._d is None:
            return b"" if not self._head else zlib.decompress(self._head, -15)
        return self._d.flush()


class _Brotli:
    def __init__(self) -> None:
        import brotli  # type: ignore[import-untyped]  # a mitmproxy dependency

        self._d = brotli.Decompressor()

    def decode(self, chunk: bytes) -> bytes:
        return bytes(self._d.process(chunk))

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self) -> None:
        # What mitmproxy itself uses: the stdlib module on 3.14, its backport before (12.3),
        # or `zstandard` (12.2).
        try:
            from compression import zstd  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            try:
                from backports import zstd  # type: ignore[no-redef, unused-ignore]
            except ImportError:
                zstd = None
        if zstd is not None:
            self._d: Any = zstd.ZstdDecompressor()
        else:
            zstandard: Any = importlib.import_module("zstandard")
            self._d = zstandard.ZstdDecompressor().decompressobj()

    def decode(self, chunk: bytes) -> bytes:
        return bytes(self._d.decompress(chunk))

    def flush(self) -> bytes:
        return b""


_DECODERS: dict[str, type[Decoder]] = {
    "gzip": _Zlib,
    "x-gzip": _Zlib,
    "deflate": _RawDeflate,
    "br": _Brotli,
    "zstd": _Zstd,
}


def make_decoder(content_encoding: str) -> Decoder | None:
    """A decoder for a single content-encoding, or None when we cannot decode it."""
    cls = _DECODERS.get(content_encoding.strip().lower())
    return cls() if cls else None
