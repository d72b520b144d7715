"""The stream callable without mitmproxy: every byte reaches the client, never a b"" piece, and the
copy for the saved flow stays bounded (usagefix.stream; the addon tests prove it in the hooks)."""

from __future__ import annotations

import gzip
import logging

import pytest

from usagefix.decoding import make_decoder
from usagefix.dialects import DIALECTS
from usagefix.rewriter import StreamRewriter
from usagefix.stream import ResponseStream, stream_of, stream_record

SSE = (
    b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    b"data: [DONE]\n\n"
)


def rewriter() -> StreamRewriter:
    return StreamRewriter(DIALECTS["openai_chat"], 1 << 20, where="POST /v1/chat/completions")


def test_the_client_gets_the_stream_and_the_saved_copy_is_what_it_got() -> None:
    stream = ResponseStream(rewriter())
    out = [p for c in (SSE[:7], SSE[7:], b"") for p in stream(c)]
    assert b"".join(out) == SSE and b"" not in out
    assert stream.take_body() == SSE and stream.take_body() == b""
    assert stream_record(stream.rewriter, None).status in ("unchanged", "rewritten")


def test_a_gzip_stream_is_decoded_and_a_corrupt_tail_goes_as_it_came() -> None:
    wire = gzip.compress(SSE)
    stream = ResponseStream(rewriter(), make_decoder("gzip"), "gzip")
    whole = b"".join(stream(wire) + stream(b""))
    assert whole == SSE
    broken = ResponseStream(rewriter(), make_decoder("gzip"), "gzip")
    out = broken(wire[:20]) + broken(b"not gzip at all") + broken(b"more") + broken(b"")
    # Nothing had decoded yet: every byte the client is sent is the wire's, as it came.
    assert b"" not in out and b"".join(out) == wire[:20] + b"not gzip at all" + b"more"
    assert broken.decoder is None
    record = stream_record(broken.rewriter, "gzip")
    assert "cannot decode gzip" in (record.error or "")


def test_a_body_past_the_bound_is_not_kept_but_reaches_the_client() -> None:
    stream = ResponseStream(rewriter(), max_saved=10)
    events = [e + b"\n\n" for e in SSE.split(b"\n\n")[:-1]]
    out = [p for c in (*events, b"") for p in stream(c)]
    assert b"".join(out) == SSE
    assert stream.too_large == len(SSE) and stream.take_body() is None


def test_an_unexpected_failure_still_forwards_the_chunk(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(StreamRewriter):
        def feed(self, data: bytes) -> list[bytes]:
            raise RuntimeError("planted")

    stream = ResponseStream(Broken(DIALECTS["openai_chat"], 1 << 20, where="POST /x"))
    with caplog.at_level(logging.WARNING):
        assert stream(b"abc") == [b"abc"]
    assert "POST /x: stream handling failed: RuntimeError: planted" in caplog.text
    assert stream.take_body() == b"abc"


def test_a_stream_of_tiny_pieces_is_kept_in_few_objects_and_saved_exactly() -> None:
    # After a failure every chunk goes as it came; kept one object per byte, a stream trickled
    # in single bytes would cost ~40 times its size. Every 256 pieces are joined into one.
    s = ResponseStream(rewriter())
    s.rewriter.abandon("planted")
    body = b"".join(b"data: %d\n\n" % i for i in range(300))
    for i in range(len(body)):
        assert s(body[i : i + 1]) == [body[i : i + 1]]
    assert s(b"") == []
    assert len(s.blocks) == len(body) // 256 and len(s.sent) < 256
    assert s.take_body() == body and not s.blocks and not s.sent


def test_the_stream_is_found_again_from_the_bound_method_mitmproxy_is_given() -> None:
    stream = ResponseStream(rewriter())
    assert stream_of(stream.__call__) is stream
    assert stream_of(True) is None and stream_of(None) is None  # bare mitmdump's, or none set
    assert stream_of(rewriter().feed) is None  # a method of something else
