"""The callable mitmproxy calls with each chunk of a streamed response: decode, rewrite, keep a copy.

Pure (no mitmproxy): the glue (addon.py) sets an instance's `__call__` as `response.stream` and
records what it did with `stream_record` once the stream ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from usagefix.decoding import DecodeError, Decoder
from usagefix.options import DEFAULT_MAX_SAVED_BODY_BYTES
from usagefix.record import UsageRecord
from usagefix.recordbuild import build_record
from usagefix.rewriter import StreamRewriter

__all__ = ["ResponseStream", "stream_of", "stream_record"]

logger = logging.getLogger(__name__)

_BLOCK = 256
"""Pieces kept one by one before they are joined (each object costs ~40 bytes beside its own)."""


@dataclass(slots=True)
class ResponseStream:
    """The callable mitmproxy calls with each chunk of a streamed response, then with b"".

    Fail open, losing nothing: the rewriter owns every byte it has not returned, and its `feed`,
    `finish` and `abandon` never raise. When a chunk cannot be decoded, what did decode goes
    through the rewriter, which then hands back what it held; the bytes that did not decode, and
    every chunk after them, go as they came.
    """

    rewriter: StreamRewriter
    decoder: Decoder | None = None
    content_encoding: str | None = None
    max_saved: int = DEFAULT_MAX_SAVED_BODY_BYTES
    sent: list[bytes] = field(default_factory=list)
    """The latest pieces the client was sent, for the saved flow (up to `max_saved` bytes in all):
    the very pieces returned, kept, not copied, until `_BLOCK` of them are joined into `blocks`
    (so that tiny pieces cost no more than their bytes); `take_body` joins the whole."""
    blocks: list[bytes] = field(default_factory=list)
    """The earlier pieces, `_BLOCK` at a time, joined: `blocks` then `sent` is the body so far."""
    sent_bytes: int = 0
    """The size of `blocks` and `sent` together, checked against `max_saved` with each piece."""
    too_large: int = 0
    """Bytes the client was sent, once that outgrew `max_saved`: the body is then not kept."""
    recorded: bool = False
    """Set once the response is recorded: a later `error` (the client hanging up after the end)
    must not turn a complete response into a cut-off one."""

    def __call__(self, chunk: bytes) -> list[bytes]:
        try:
            # The common chunk (not compressed, not the end) straight to the rewriter.
            out = self.rewriter.feed(chunk) if chunk and self.decoder is None else self._process(chunk)
        except Exception as e:  # not reachable by design; should it be, the chunk still goes
            logger.warning(
                "usagefix: %s: stream handling failed: %s: %s", self.rewriter.where, type(e).__name__, e
            )
            out = [chunk] if chunk else []
        # Never a b"" piece (to an HTTP/1.1 client an empty chunk ends the body): the rewriter
        # returns none, and the two paths above that add a piece of their own check it.
        for piece in out:
            if self.too_large:
                self.too_large += len(piece)
                continue
            size = self.sent_bytes + len(piece)
            if size > self.max_saved:
                self.too_large = size
                self.sent, self.blocks = [], []  # memory stays bounded: the flow goes without it
            else:
                sent = self.sent
                sent.append(piece)
                self.sent_bytes = size
                if len(sent) >= _BLOCK:
                    self.blocks.append(b"".join(sent))
                    sent.clear()
        return out

    def take_body(self) -> bytes | None:
        """The body for the saved flow, released from here; None ("content missing", as mitmproxy
        saves a streamed body) when it outgrew the bound."""
        body = None if self.too_large else b"".join([*self.blocks, *self.sent])
        self.sent, self.blocks = [], []
        self.sent_bytes = 0
        return body

    def _process(self, chunk: bytes) -> list[bytes]:
        data = chunk
        if self.decoder is not None:
            try:
                data = self.decoder.decode(chunk) if chunk else self.decoder.flush()
            except Exception as e:  # corrupt compressed data: nothing better than to forward it
                self.decoder = None
                # What decoded before the error goes through the rewriter as usual; the bytes that
                # did not decode follow as they came (a decoder that cannot say which: the chunk).
                decoded = e.decoded if isinstance(e, DecodeError) else b""
                tail = e.tail if isinstance(e, DecodeError) else chunk
                out = self.rewriter.feed(decoded) if decoded else []
                why = f"cannot decode {self.content_encoding}: {type(e).__name__}: {e}"
                return [*out, *self.rewriter.abandon(why), *([tail] if tail else [])]
        out = self.rewriter.feed(data) if data else []
        if not chunk:  # the end of the stream: every byte still held goes now
            out += self.rewriter.finish()
        return out


def stream_of(value: object) -> ResponseStream | None:
    """The `ResponseStream` a response's `stream` is set to, or None.

    The glue sets `response.stream` to the stream's bound `__call__`, not to the instance:
    mitmproxy calls it with every chunk, and CPython calls a bound method by vectorcall but an
    instance through `__call__`'s slot, which looks the method up and builds an argument tuple
    each time (about 900 more machine instructions a chunk)."""
    owner = getattr(value, "__self__", None)
    return owner if isinstance(owner, ResponseStream) else None


def stream_record(rw: StreamRewriter, encoding: str | None, cut_off: str | None = None) -> UsageRecord:
    """The record of a stream the rewriter read: cut off (with what it held back) or whole."""
    return build_record(
        rw.result,
        cut_off=cut_off,
        content_encoding=encoding,
        held_back=rw.pending_bytes() if cut_off else b"",
        stream_usage_added=rw.ctx.strip_usage_chunk,
    )
