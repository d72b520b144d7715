"""A local LLM upstream emulator: serves recorded bodies the way real upstreams do, and worse.

It answers every POST with the current `Scenario`: a status, a body, and how to send it
(chunked at awkward points, with delays, compressed, or cut off mid-stream). It also remembers the
requests it got, so tests can see what the proxy forwarded. Loopback only.
"""

from __future__ import annotations

import gzip
import importlib
import json
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def awkward_cuts(body: bytes) -> list[bytes]:
    """Cut a body where framing is hardest: between the two halves of every blank line and
    every CRLF, inside multi-byte UTF-8 characters, and every 41 bytes in between."""
    points = set(range(41, len(body), 41))
    for i in range(len(body) - 1):
        pair = body[i : i + 2]
        if pair in (b"\n\n", b"\r\n", b"\n\r") or (body[i] >= 0xC0 and body[i + 1] & 0xC0 == 0x80):
            points.add(i + 1)
    edges = [0, *sorted(points), len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _event_ends(sent: bytes) -> int:
    return sent.count(b"\n\n") + sent.count(b"\n\r\n")


def _zstd() -> Any:
    for name in ("compression.zstd", "backports.zstd"):  # what mitmproxy 12.3 ships
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    return None


class StreamCompressor:
    """Compresses a stream chunk by chunk, flushing each, as a streaming upstream does.

    `kind` is a coding (`gzip`, `deflate`, `br`, `zstd`) or a variant: `deflate-raw` (no zlib
    wrapper), and one member per chunk: `gzip-members`, `zstd-frames`, `deflate-streams`.
    """

    CODING = {
        "deflate-raw": "deflate",
        "gzip-members": "gzip",
        "zstd-frames": "zstd",
        "deflate-streams": "deflate",
    }

    def __init__(self, kind: str) -> None:
        self.coding = self.CODING.get(kind, kind)
        self.chunk: Callable[[bytes], bytes]
        self.end: Callable[[], bytes] = lambda: b""
        if kind in ("gzip", "deflate", "deflate-raw"):
            z = zlib.compressobj(wbits={"gzip": 31, "deflate": 15, "deflate-raw": -15}[kind])
            self.chunk, self.end = (lambda d: z.compress(d) + z.flush(zlib.Z_SYNC_FLUSH)), z.flush
        elif kind == "br":
            b = importlib.import_module("brotli").Compressor()
            self.chunk, self.end = (lambda d: b.process(d) + b.flush()), b.finish
        elif kind == "zstd" and _zstd() is not None:
            mod = _zstd()
            c = mod.ZstdCompressor()
            self.chunk = lambda d: c.compress(d, mode=mod.ZstdCompressor.FLUSH_BLOCK)
            self.end = lambda: c.flush(mode=mod.ZstdCompressor.FLUSH_FRAME)
        elif kind == "zstd":  # zstandard (mitmproxy 12.2)
            zstandard = importlib.import_module("zstandard")
            o = zstandard.ZstdCompressor().compressobj()
            self.chunk = lambda d: o.compress(d) + o.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            self.end = lambda: o.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        elif kind == "gzip-members":
            self.chunk = gzip.compress
        elif kind == "deflate-streams":
            self.chunk = zlib.compress
        elif kind == "zstd-frames":
            mod = _zstd()
            self.chunk = mod.compress if mod is not None else importlib.import_module("zstandard").compress
        else:
            raise ValueError(f"unknown compression {kind!r}")


@dataclass
class Scenario:
    body: bytes = b"{}"
    content_type: str = "application/json"
    status: int = 200
    chunks: list[bytes] | None = None
    """Send these as separate HTTP chunks (transfer-encoding: chunked); else one body with a length."""
    delay: float = 0.0
    """Seconds to pause after each chunk in which an event ends."""
    gzip: bool = False
    cut_after: int | None = None
    """Close the connection after this many chunks, without ending the body."""
    headers: dict[str, str] = field(default_factory=dict)
    compress: str | None = None
    """Compress `chunks` on the fly, each flushed as it is sent (see `StreamCompressor`); several
    comma-separated are stacked in that order (`br,gzip`), named so in `content-encoding`. The
    upstream ignores the request's `accept-encoding`, as some do."""


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        super().__init__((host, port), _Handler)
        if tls is not None:  # HTTPS: each connection's handshake happens as it is accepted
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scenario = Scenario()
        self.requests: list[dict[str, Any]] = []
        self.sent: bytes = b""
        """The body of the last chunked response sent to its end, as it went on the wire."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers.items()), "json": json.loads(raw or b"null")}
        )
        sc = self.server.scenario
        self.send_response(sc.status)
        self.send_header("content-type", sc.content_type)
        for k, v in sc.headers.items():
            self.send_header(k, v)
        if sc.chunks is None:
            body = gzip.compress(sc.body) if sc.gzip else sc.body
            if sc.gzip:
                self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        compressors = [StreamCompressor(k.strip()) for k in sc.compress.split(",")] if sc.compress else []
        if compressors:
            self.send_header("content-encoding", ", ".join(c.coding for c in compressors))
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self._wire = b""
        sent = b""
        for n, c in enumerate(sc.chunks):
            if sc.cut_after is not None and n == sc.cut_after:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if compressors:
                self._send_compressed(c, compressors)
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                self.wfile.flush()
                self._wire += c
            if sc.delay and _event_ends(sent + c) > _event_ends(sent):
                time.sleep(sc.delay)  # an event ended in this chunk: pause before the next
            sent += c
        if compressors:
            self._send_compressed(b"", compressors, end=True)
        # Kept before the body's end goes: a client that has read the end can compare at once.
        self.server.sent = self._wire
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_compressed(self, c: bytes, compressors: list[StreamCompressor], end: bool = False) -> None:
        for comp in compressors:
            if end:  # the compressor's own end (a trailer), after what the one before ended with
                c = (comp.chunk(c) if c else b"") + comp.end()
            elif c:
                c = comp.chunk(c)
        if c:  # an empty HTTP chunk would end the body
            self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.flush()
            self._wire += c
