"""The rewriter's own promises: fail open without losing a byte, a record that does not depend on
chunking and keeps only what changed, the end of a stream told by its end event."""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import bytewise, chunkings, cut
from usagefix.dialects import DIALECTS, Context, Dialect, StreamSession, Tally
from usagefix.framing import Framing
from usagefix.framing.eventstream import encode_frame
from usagefix.framing.sse import BOM
from usagefix.prior import rebuild_upstream
from usagefix.recordbuild import build_record
from usagefix.rewriter import StreamRewriter, changed_span, rewrite_body, rewrite_stream

GOLDEN = Path(__file__).parent.parent / "flows" / "golden"
FOUNDING = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
FIXED = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.client.sse").read_bytes()
CHAT = DIALECTS["openai_chat"]
# The founding stream's events, and where its usage event starts.
EVENTS = [e + b"\n\n" for e in FOUNDING.split(b"\n\n") if e]
USAGE_AT = FOUNDING.index(
    b'data: {"id":"chatcmpl-synthetic-002","object":"chat.completion.chunk","created":1763900001,"model":"claude-sonnet-4-5","choices":[],'
)

STREAMED: dict[str, Framing] = {".sse": "sse", ".jsonarray": "json_array"}
STREAMS = sorted(p for p in GOLDEN.glob("*/*.upstream.*") if p.suffix in STREAMED)


def case_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name.split('.')[0]}"


def run(rw: StreamRewriter, chunks: Sequence[bytes], *, finish: bool = True) -> bytes:
    out = b""
    for c in chunks:
        pieces = rw.feed(c)
        assert all(pieces), "an empty piece would end an HTTP/1.1 client's body"
        out += b"".join(pieces)
    if finish:
        out += b"".join(rw.finish())
    return out


def record(rw: StreamRewriter, *, cut_off: bool = False) -> dict[str, Any]:
    held = rw.pending_bytes() if cut_off else b""
    rec = build_record(rw.result, cut_off="cut" if cut_off else None, held_back=held)
    return rec.model_dump(mode="json")


# -- fail open: one owner of the bytes not yet returned --------------------------------------


def test_a_non_utf8_comment_in_a_usage_event_costs_no_byte() -> None:
    # The change record decoded the whole event, outside any `try`: the client got nothing.
    body = FOUNDING[:USAGE_AT] + b": \xff keep-alive\n" + FOUNDING[USAGE_AT:]
    usage_at_client = FIXED.index(
        b'data: {"id":"chatcmpl-synthetic-002","object":"chat.completion.chunk","created":1763900001,"model":"claude-sonnet-4-5","choices":[],'
    )
    expected = FIXED[:usage_at_client] + b": \xff keep-alive\n" + FIXED[usage_at_client:]
    for chunks in ([body], cut(body, [USAGE_AT, USAGE_AT + 300]), bytewise(body)):
        rw = StreamRewriter(CHAT)
        out = run(rw, chunks)
        assert out == expected
        rec = record(rw)
        assert rec["status"] == "rewritten"
        assert rebuild_upstream(out, rec) == body


def test_a_deeply_nested_usage_event_loses_no_byte() -> None:
    # RecursionError is no ValueError: the failure was noted but the framer's held `data: ` of
    # `[DONE]` was never forwarded. (It is bad input now, flagged, and the stream goes on.)
    deep = b"[" * 100_000 + b"]" * 100_000
    usage = b'{"choices":[],"usage":{"prompt_tokens":1678,"completion_tokens":370,"total_tokens":2048},"x":'
    body = FOUNDING[:USAGE_AT] + b"data: " + usage + deep + b"}\n\ndata: [DONE]\n\n"
    split = len(body) - len(b"[DONE]\n\n")
    for chunks in ([body[:split], body[split:]], [body]):
        rw = StreamRewriter(CHAT)
        assert run(rw, chunks) == body
        rec = record(rw)
        assert rec["status"] == "unmeasured" and rec["error"] is None
        assert any(a.startswith("unparseable_event: RecursionError") for a in rec["anomalies"])


class _Wrapped:
    """A real dialect whose session's `method` raises `exc` at its `k`-th complete event; with
    `rewrite=False`, a session that never rewrites anything."""

    def __init__(
        self,
        inner: Dialect,
        k: int,
        exc: Exception,
        method: str,
        *,
        rewrite: bool = True,
        framing: str = "sse",
    ) -> None:
        self.inner, self.k, self.exc, self.method, self.rewrite = inner, k, exc, method, rewrite
        self.framing = framing
        self.name = inner.name
        self.end_markers = inner.end_markers

    def normalize_body(self, text: str, tally: Tally, ctx: Context) -> str | None:
        return self.inner.normalize_body(text, tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        return self.inner.is_end(name, data)

    def stream_session(self, tally: Tally, ctx: Context) -> StreamSession:
        return _WrappedSession(self, self.inner.stream_session(tally, ctx))


class _WrappedSession:
    def __init__(self, spec: _Wrapped, inner: StreamSession) -> None:
        self.spec, self.inner = spec, inner
        self.seen = 0
        self.armed = False

    def quiet(self, run: bytes) -> bool:
        # A run of whole events (one or more), asked about as one for `SSEFramer`'s `quiet`: not
        # quiet, so that each of its events is asked about on its own, and counted once,
        # whatever the chunking.
        return False

    def might_carry_usage(self, raw: bytes) -> bool:
        self.seen += 1
        if self.seen - 1 == self.spec.k:
            if self.spec.method == "might_carry_usage":
                raise self.spec.exc
            self.armed = True  # fail in the first rewrite from here (an event with data)
        return self.armed or self.inner.might_carry_usage(raw)

    def normalize_event(self, name: str | None, data: str) -> str | None:
        if self.armed:
            raise self.spec.exc
        new = self.inner.normalize_event(name, data)
        return new if self.spec.rewrite else None


def _exceptions(msg: str) -> list[Exception]:
    return [
        ValueError(msg),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, msg),
        RecursionError(msg),
        KeyError(msg),
        RuntimeError(msg),
        AttributeError(msg),
        ZeroDivisionError(msg),
    ]


@pytest.mark.parametrize("upstream", STREAMS, ids=case_id)
@given(data=st.data())
def test_a_failing_dialect_never_costs_a_byte(upstream: Path, data: st.DataObject) -> None:
    body = upstream.read_bytes()
    framing = STREAMED[upstream.suffix]
    dialect = DIALECTS[upstream.parent.name]
    counting = StreamRewriter(_Wrapped(dialect, -1, ValueError(), "none", framing=framing), framing=framing)
    run(counting, [body])
    complete_events = counting._session.seen  # type: ignore[attr-defined]
    k = data.draw(st.integers(0, max(complete_events - 1, 0)), label="k")
    exc = data.draw(st.sampled_from(_exceptions(f"planted at event {k}")), label="exception")
    method = data.draw(st.sampled_from(["might_carry_usage", "normalize_event"]), label="method")
    chunks = data.draw(chunkings(body), label="chunks")

    # A session that rewrites nothing: the client gets exactly the upstream's bytes.
    rw = StreamRewriter(_Wrapped(dialect, k, exc, method, rewrite=False, framing=framing), framing=framing)
    assert run(rw, chunks) == body
    rec = record(rw)
    if rw.result.error is not None:
        assert rec["status"] == "passthrough_error" and f"planted at event {k}" in rec["error"]
    else:  # a normalize_event failure at k, but no event with data from k on
        assert method == "normalize_event"

    # One that rewrites the events before k: the same whatever the chunking, and the record
    # rebuilds the upstream's bytes.
    whole = StreamRewriter(_Wrapped(dialect, k, exc, method, framing=framing), framing=framing)
    expected = run(whole, [body])
    rw = StreamRewriter(_Wrapped(dialect, k, exc, method, framing=framing), framing=framing)
    assert run(rw, chunks) == expected
    assert record(rw) == record(whole)
    assert rebuild_upstream(expected, record(rw)) == body


def test_an_exception_outside_the_event_rewrite_loses_no_event() -> None:
    # `might_carry_usage` ran outside the `try` around the rewrite: every event framed from the
    # chunk was lost.
    usage_event = FOUNDING.count(b"\n\n", 0, USAGE_AT)
    for chunks in ([FOUNDING], cut(FOUNDING, [USAGE_AT - 5, USAGE_AT + 5])):
        rw = StreamRewriter(_Wrapped(CHAT, usage_event, RuntimeError("boom"), "might_carry_usage"))
        assert run(rw, chunks) == FOUNDING
        assert record(rw)["error"] == "RuntimeError: boom"


def test_an_exception_in_the_change_record_makes_no_change(monkeypatch: pytest.MonkeyPatch) -> None:
    import usagefix.rewriter

    def broken(*_: object) -> None:
        raise MemoryError("no room for the change")

    monkeypatch.setattr(usagefix.rewriter, "changed_span", broken)
    rw = StreamRewriter(CHAT)
    assert run(rw, bytewise(FOUNDING)) == FOUNDING
    rec = record(rw)
    assert rec["status"] == "passthrough_error" and rec["changes"] == []
    assert rec["upstream_usage"] is None  # the failed event's snapshot was taken back


class _FlakyFramer:
    """An SSE framer that raises on its `n`-th feed, after or before keeping the chunk."""

    def __init__(self, inner: Any, n: int, *, keeps: bool) -> None:
        self.inner, self.n, self.keeps, self.calls = inner, n, keeps, 0

    @property
    def pending(self) -> int:
        return int(self.inner.pending)

    def pending_bytes(self) -> bytes:
        return bytes(self.inner.pending_bytes())

    def feed(self, chunk: bytes) -> Any:
        self.calls += 1
        if self.calls == self.n:
            if self.keeps:
                self.inner._buf += chunk
            raise IndexError("framer bug")
        return self.inner.feed(chunk)

    take = feed  # the rewriter's hot path calls `take`: this one fails there too

    def finish(self) -> Any:
        return self.inner.finish()


@pytest.mark.parametrize("keeps", [True, False], ids=["after-keeping", "before-keeping"])
@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_a_failing_framer_forwards_every_byte_it_held(n: int, keeps: bool) -> None:
    chunks = cut(FOUNDING, range(0, len(FOUNDING), 97))
    rw = StreamRewriter(CHAT)
    rw._framer = _FlakyFramer(rw._framer, n, keeps=keeps)  # type: ignore[assignment]
    out = run(rw, chunks)
    rec = record(rw)
    assert rec["error"] == "IndexError: framer bug"
    # Nothing lost, nothing repeated: events before the failure keep their repair, the rest is
    # the upstream's bytes.
    assert rebuild_upstream(out, rec) == FOUNDING
    assert rw.pending == 0 and rw.feed(b"after") == [b"after"] and rw.finish() == []


class _Broken(_FlakyFramer):
    """A framer that fails, then cannot even hand back what it holds."""

    def pending_bytes(self) -> bytes:
        raise OSError("gone")


def test_bytes_a_broken_framer_cannot_hand_back_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    rw = StreamRewriter(CHAT, where="POST https://llm.example/v1/chat/completions")
    rw._framer = _Broken(rw._framer, 2, keeps=True)  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING):
        out = run(rw, [FOUNDING[:100], FOUNDING[100:200], FOUNDING[200:]])
    assert out == FOUNDING[200:]  # the first event, held, is lost: the loss is said, not hidden
    assert "200 bytes unaccounted for" in caplog.text


def test_after_a_failure_everything_passes_untouched_and_the_log_names_the_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rw = StreamRewriter(
        _Wrapped(CHAT, 0, ValueError("bad"), "might_carry_usage"),
        where="POST https://llm.example/v1/chat/completions",
    )
    with caplog.at_level(logging.WARNING):
        assert run(rw, [FOUNDING, FOUNDING]) == FOUNDING * 2
    assert "POST https://llm.example/v1/chat/completions" in caplog.text and "ValueError: bad" in caplog.text


def test_a_failure_keeps_the_snapshots_the_client_got() -> None:
    body = (GOLDEN / "anthropic" / "fix-cached-delta-crlf.upstream.sse").read_bytes()
    rw = StreamRewriter(_Wrapped(DIALECTS["anthropic"], 4, KeyError("x"), "normalize_event"))
    out = run(rw, [body])
    rec = record(rw)
    assert rec["status"] == "passthrough_error"
    # message_start went out before the failure: the record's last snapshot is its usage.
    assert (
        rec["upstream_usage"]
        == json.loads(body.split(b"data: ", 1)[1].split(b"\r\n", 1)[0])["message"]["usage"]
    )
    assert rebuild_upstream(out, rec) == body


# -- the record: independent of chunking, only the changed span -------------------------------


@pytest.mark.parametrize("upstream", STREAMS, ids=case_id)
@given(data=st.data())
def test_any_chunking_gives_the_same_record(upstream: Path, data: st.DataObject) -> None:
    body = upstream.read_bytes()
    framing = STREAMED[upstream.suffix]
    dialect = DIALECTS[upstream.parent.name]
    bound = data.draw(st.sampled_from([1 << 20, 300, 120, 40]), label="bound")
    strip = upstream.parent.name == "openai_chat" and data.draw(st.booleans(), label="strip")
    ctx = Context(strip_usage_chunk=strip)
    cut_at = data.draw(st.sampled_from([len(body), *range(0, len(body), 37)]), label="cut_at")
    finished = data.draw(st.booleans(), label="finished")
    stream = body[:cut_at]

    whole, rw_whole = rewrite_stream(
        dialect, stream, complete=finished, max_event_bytes=bound, ctx=ctx, framing=framing
    )
    rw = StreamRewriter(dialect, bound, ctx, framing)
    out = run(rw, data.draw(chunkings(stream), label="chunks"), finish=finished)
    assert out == whole
    assert record(rw, cut_off=not finished) == record(rw_whole, cut_off=not finished)
    assert rebuild_upstream(out, record(rw, cut_off=not finished)) == stream


def test_an_oversize_event_is_counted_once_however_it_arrives() -> None:
    big = b'data: {"choices":[{"delta":{"content":"' + b"x" * 5000 + b'"}}],"usage":null}\n\n'
    body = EVENTS[0] + big + b"".join(EVENTS[1:])
    records = []
    for chunks in ([body], bytewise(body), cut(body, range(0, len(body), 1000))):
        rw = StreamRewriter(CHAT, max_event_bytes=4096)
        assert run(rw, chunks) == FIXED[: len(EVENTS[0])] + big + FIXED[len(EVENTS[0]) :]
        records.append(record(rw))
    assert records[0] == records[1] == records[2]
    assert records[0]["events"] == len(EVENTS) + 1
    assert "oversize_events:1" in records[0]["anomalies"]
    assert [c["index"] for c in records[0]["changes"]] == [4]


def _frame(kind: str, payload: dict[str, Any]) -> bytes:
    def header(name: str, value: str) -> bytes:
        n, v = name.encode(), value.encode()
        return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v

    headers = header(":event-type", kind) + header(":message-type", "event")
    return encode_frame(headers, json.dumps(payload).encode())


def test_a_frame_failing_its_crc_is_reported_as_such_not_as_oversize() -> None:
    bad = bytearray(_frame("contentBlockDelta", {"delta": {"text": "hi"}}))
    bad[-6] ^= 0xFF
    usage = {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}
    body = _frame("messageStart", {"role": "assistant"}) + bytes(bad) + _frame("metadata", usage)
    for chunks in ([body], bytewise(body)):
        rw = StreamRewriter(DIALECTS["bedrock"], framing="eventstream")
        assert run(rw, chunks) == body
        rec = record(rw)
        assert rec["events"] == 3
        assert "bad_crc_events:1" in rec["anomalies"]
        assert not any(a.startswith("oversize") for a in rec["anomalies"])


def test_a_change_keeps_only_the_span_that_differs() -> None:
    # An upstream that puts (wrong) usage on every chunk: the record grows with the usage
    # spans, not with the events (it was 2.6 MB of record for a 1.0 MB stream).
    content = b'"choices":[{"delta":{"content":"' + b"lorem ipsum " * 80 + b'"}}]'
    body = EVENTS[3].replace(b'"choices":[]', content) * 1000 + EVENTS[-1]
    assert len(body) > 1_000_000
    out, rw = rewrite_stream(CHAT, body)
    rec = record(rw)
    assert len(rec["changes"]) == 1000
    for c in rec["changes"]:  # the same few dozen bytes, however long the event
        assert c["original"] == '678,"completion_tokens":370,"total_tokens":204'
        assert c["rewritten"] == '07208,"completion_tokens":370,"total_tokens":10757'
    assert len(json.dumps(rec)) < len(body) / 5
    assert rebuild_upstream(out, rec) == body


@pytest.mark.parametrize(
    ("old", "new", "offset", "span"),
    [
        ("aé", "aè", 11, ("é", "è")),  # é and è share their first byte: the span keeps it
        ("é", "©", 10, ("é", "©")),  # …and their last
        ("x1678y", "x107208y", 12, ("67", "0720")),
        ("same", "same", 14, ("", "")),
        ("abc", "", 10, ("abc", "")),
        ("", "✓", 10, ("", "✓")),
    ],
)
def test_a_span_is_cut_on_character_boundaries(
    old: str, new: str, offset: int, span: tuple[str, str]
) -> None:
    c = changed_span(0, 10, old.encode(), new.encode())
    assert (c.offset, c.original, c.rewritten) == (offset, *span)


@given(st.text(max_size=30), st.text(max_size=8), st.text(max_size=8), st.text(max_size=30))
def test_a_span_puts_back_gives_the_original(prefix: str, old: str, new: str, suffix: str) -> None:
    a, b = (prefix + old + suffix).encode(), (prefix + new + suffix).encode()
    c = changed_span(0, 0, a, b)
    at, r, o = c.offset, c.rewritten.encode(), c.original.encode()
    assert b[at : at + len(r)] == r
    assert b[:at] + o + b[at + len(r) :] == a
    assert len(o) <= len(old.encode()) + 3 and len(r) <= len(new.encode()) + 3


# -- the end of a stream, by the end event's name or type ------------------------------------


def _sse(*events: tuple[str | None, dict[str, Any] | str]) -> bytes:
    out = b""
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        out += (f"event: {name}\n" if name else "").encode() + f"data: {text}\n\n".encode()
    return out


ENDS: dict[str, tuple[Framing, bytes, bytes]] = {
    "openai_chat": (
        "sse",
        _sse((None, {"choices": [{"delta": {"content": "say [DONE] when done"}}]})),
        _sse((None, "[DONE]")),
    ),
    "anthropic": (
        "sse",
        _sse(("content_block_delta", {"type": "content_block_delta", "delta": {"text": "message_stop"}})),
        _sse(("message_stop", {"type": "message_stop"})),
    ),
    "openai_responses": (
        "sse",
        _sse(
            (
                "response.output_text.delta",
                {"type": "response.output_text.delta", "delta": "response.completed"},
            )
        ),
        _sse(("response.completed", {"type": "response.completed", "response": {}})),
    ),
    "gemini": (
        "json_array",
        b'[{"candidates": [{"content": {"parts": [{"text": "a finishReason"}]}}]}',
        b',{"candidates": [{"content": {"parts": [{"text": "."}]}, "finishReason": "STOP"}]}]',
    ),
    "bedrock": (
        "eventstream",
        _frame(
            "contentBlockDelta", {"delta": {"text": "messageStop metadata amazon-bedrock-invocationMetrics"}}
        ),
        _frame("messageStop", {"stopReason": "end_turn"}),
    ),
}


@pytest.mark.parametrize("dialect", ENDS)
def test_a_text_that_names_the_end_event_does_not_hide_a_cut(dialect: str) -> None:
    framing, middle, end = ENDS[dialect]
    rw = StreamRewriter(DIALECTS[dialect], framing=framing)
    run(rw, [middle], finish=False)
    assert not rw.ended
    run(rw, bytewise(end), finish=False)
    assert rw.ended


def test_invoke_streams_end_with_the_chunk_that_carries_the_invocation_metrics() -> None:
    def chunk(inner: dict[str, Any]) -> bytes:
        return _frame("chunk", {"bytes": base64.b64encode(json.dumps(inner).encode()).decode()})

    rw = StreamRewriter(DIALECTS["bedrock"], framing="eventstream")
    run(rw, [chunk({"type": "content_block_delta", "delta": {"text": "metadata"}})], finish=False)
    assert not rw.ended
    run(
        rw,
        [chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 1}})],
        finish=False,
    )
    assert rw.ended


def test_an_end_event_with_bytes_held_after_it_is_not_ended() -> None:
    rw = StreamRewriter(CHAT)
    run(rw, [FOUNDING + b"data: {"], finish=False)
    assert not rw.ended
    run(rw, [b"}\n\n"], finish=False)
    assert rw.ended


# -- framing at the edges --------------------------------------------------------------------


def test_a_leading_bom_does_not_disable_the_repair_of_the_first_event() -> None:
    body = BOM + FOUNDING[USAGE_AT:]
    expected = (
        BOM
        + FIXED[
            FIXED.index(
                b'data: {"id":"chatcmpl-synthetic-002","object":"chat.completion.chunk","created":1763900001,"model":"claude-sonnet-4-5","choices":[],'
            ) :
        ]
    )
    for chunks in ([body], bytewise(body), [body[:1], body[1:2], body[2:]]):
        rw = StreamRewriter(CHAT)
        out = run(rw, chunks)
        assert out == expected
        assert record(rw)["status"] == "rewritten"
        assert rebuild_upstream(out, record(rw)) == body


def test_a_last_event_ending_in_crlf_cr_goes_before_the_stream_ends() -> None:
    # Issue 10: complete per the spec, it was held for an LF that never came, and lost when the
    # stream ended in an error (the client got 564 of 793 bytes).
    body = FOUNDING[:USAGE_AT].replace(b"\n", b"\r\n") + FOUNDING[USAGE_AT:].split(b"\n\n")[0] + b"\r\n\r"
    for chunks in ([body], bytewise(body), [body[:-1], body[-1:]]):
        rw = StreamRewriter(CHAT)
        out = run(rw, chunks, finish=False)
        assert rw.pending == 0
        assert out.endswith(b',"prompt_tokens_details":{"cached_tokens":105530}}}\r\n\r')
        assert b'"prompt_tokens":107208' in out
        assert rw.finish() == []


def test_a_dropped_event_takes_the_lf_of_its_crlf_along() -> None:
    # With usage asked for on the client's behalf, the usage event goes; an LF after the CR that
    # ended it must go too, whatever the chunking, and the record must still rebuild the upstream.
    body = (GOLDEN / "openai_chat" / "fix-founding-bug-stream-crlf.upstream.sse").read_bytes()
    ctx = Context(strip_usage_chunk=True)
    whole, rw_whole = rewrite_stream(CHAT, body, ctx=ctx)
    at = body.index(b"}}}\r\n\r\n") + 6
    for chunks in (cut(body, [at]), bytewise(body)):
        rw = StreamRewriter(CHAT, ctx=ctx)
        assert run(rw, chunks) == whole
        assert record(rw) == record(rw_whole)
        assert rebuild_upstream(whole, record(rw)) == body


@pytest.mark.parametrize("upstream", STREAMS, ids=case_id)
@given(data=st.data())
def test_finish_hands_back_every_byte_held(upstream: Path, data: st.DataObject) -> None:
    body = upstream.read_bytes()
    stream = body[: data.draw(st.integers(0, len(body)))]
    rw = StreamRewriter(DIALECTS[upstream.parent.name], framing=STREAMED[upstream.suffix])
    out = run(rw, data.draw(chunkings(stream)))
    assert rw.pending == 0
    assert rebuild_upstream(out, record(rw)) == stream


def test_an_unparseable_event_is_flagged_and_the_usage_after_it_still_fixed() -> None:
    # Bad input, not a bug of ours: a usage-looking event that is not JSON, or not UTF-8 in its
    # data, passes untouched and is flagged; the stream's real usage chunk is still repaired.
    bad = b'data: {"usage": not json}\n\ndata: {"usage":"\xff"}\n\n'
    body = bad + FOUNDING
    for chunks in ([body], bytewise(body)):
        rw = StreamRewriter(CHAT)
        out = b"".join(p for c in chunks for p in rw.feed(c)) + b"".join(rw.finish())
        assert out == bad + FIXED
        rec = build_record(rw.result)
        assert rec.status == "rewritten" and rec.error is None
        assert [a.split(":")[0] for a in rec.anomalies if a.startswith("unparseable")] == [
            "unparseable_event",
            "unparseable_event",
        ]
        assert rebuild_upstream(out, rec.model_dump(mode="json")) == body


def test_an_event_whose_usage_is_not_shaped_as_the_dialect_says_passes_untouched() -> None:
    # R7: a count that is no count is not repaired or guessed at: the event goes as it came,
    # flagged, its snapshot taken back; the stream's real usage chunk after it is still fixed.
    usage_event = FOUNDING[USAGE_AT:].split(b"\n\n", 1)[0] + b"\n\n"
    bad = usage_event.replace(b'"prompt_tokens":1678', b'"prompt_tokens":"1678"')
    assert bad != usage_event
    body = FOUNDING[:USAGE_AT] + bad + FOUNDING[USAGE_AT:]
    for chunks in ([body], bytewise(body)):
        rw = StreamRewriter(CHAT)
        out = run(rw, chunks)
        assert out == FIXED[:USAGE_AT] + bad + FIXED[USAGE_AT:]
        rec = record(rw)
        assert rec["status"] == "rewritten" and rec["error"] is None
        assert "invalid_usage: prompt_tokens is '1678', not a count" in rec["anomalies"]
        assert rebuild_upstream(out, rec) == body
    alone = FOUNDING.replace(usage_event, bad)
    rw = StreamRewriter(CHAT)
    assert run(rw, [alone]) == alone
    rec = record(rw)
    assert rec["status"] == "unmeasured" and rec["upstream_usage"] is None  # unknown, never 0


def test_an_end_marker_in_an_event_that_is_not_utf8_does_not_end_the_stream() -> None:
    body = FOUNDING.replace(b"data: [DONE]", b"data: [DONE]\xff")
    for chunks in ([body], bytewise(body)):
        rw = StreamRewriter(CHAT)
        out = run(rw, chunks)
        assert not rw.ended and out.endswith(b"data: [DONE]\xff\n\n")
        assert rebuild_upstream(out, record(rw)) == body
    rw = StreamRewriter(CHAT)
    run(rw, [FOUNDING])
    assert rw.ended


class _FailingFinish(_FlakyFramer):
    """A framer that raises at the end of the stream, before handing back what it holds."""

    def finish(self) -> Any:
        raise RuntimeError("framer bug at the end")


def test_a_framer_failing_at_the_end_forwards_every_byte_it_held() -> None:
    stream = FOUNDING[:-3]  # the [DONE] event unfinished: held by the framer
    rw = StreamRewriter(CHAT)
    rw._framer = _FailingFinish(rw._framer, 0, keeps=False)  # type: ignore[assignment]
    out = run(rw, cut(stream, range(0, len(stream), 97)))
    rec = record(rw)
    assert rec["status"] == "passthrough_error" and rec["error"] == "RuntimeError: framer bug at the end"
    assert out.endswith(b"\n\ndata: [DONE") and rebuild_upstream(out, rec) == stream
    assert rw.pending == 0 and rw.finish() == []


def test_abandon_hands_back_what_is_held_once_and_keeps_the_first_reason() -> None:
    rw = StreamRewriter(CHAT)
    out = run(rw, [FOUNDING[:-3]], finish=False)
    assert rw.abandon("cannot decode gzip") == [b"data: [DONE"]
    assert rw.abandon("again") == [] and rw.finish() == []
    assert rw.feed(b"]\n\n") == [b"]\n\n"]
    rec = record(rw)
    assert rec["status"] == "passthrough_error" and rec["error"] == "cannot decode gzip"
    assert rebuild_upstream(out + b"data: [DONE]\n\n", rec) == FOUNDING


class _FailingBody(_Wrapped):
    def normalize_body(self, text: str, tally: Tally, ctx: Context) -> str | None:
        raise self.exc


def test_a_failing_body_rewrite_leaves_the_body_as_it_was(caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
    dialect = _FailingBody(CHAT, 0, ZeroDivisionError("planted"), "none")
    with caplog.at_level(logging.WARNING):
        result = rewrite_body(dialect, body, where="POST https://llm.example/v1/chat/completions")
    assert result.body is None  # None: the response goes exactly as it came
    rec = build_record(result.result)
    assert rec.status == "passthrough_error" and rec.error == "ZeroDivisionError: planted"
    assert rec.changes == [] and rec.usage_after is None
    assert "POST https://llm.example/v1/chat/completions" in caplog.text and "planted" in caplog.text


def test_an_event_that_mentions_usage_outside_its_data_passes_untouched() -> None:
    body = b': {"usage": {"prompt_tokens": 1}}\n\n' + FOUNDING
    for chunks in ([body], bytewise(body)):
        rw = StreamRewriter(CHAT)
        assert run(rw, chunks) == body[: body.index(b"data:")] + FIXED
        rec = record(rw)
        assert rec["status"] == "rewritten" and rec["events"] == len(EVENTS) + 1
        assert rebuild_upstream(body[: body.index(b"data:")] + FIXED, rec) == body


def test_an_event_nested_past_what_python_parses_is_bad_input_not_a_failure() -> None:
    # json.loads raises RecursionError on ~20,000 levels: the event passes untouched and is
    # flagged, and the usage chunk after it is still repaired (no passthrough for the rest).
    deep = b'data: {"usage": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n\n"
    body = deep + FOUNDING
    rw = StreamRewriter(CHAT)
    out = b"".join(rw.feed(body)) + b"".join(rw.finish())
    assert out == deep + FIXED
    rec = build_record(rw.result)
    assert rec.status == "rewritten" and rec.error is None
    assert any(a.startswith("unparseable_event: RecursionError") for a in rec.anomalies)


def test_a_usage_event_split_over_data_lines_keeps_every_other_line_in_its_place() -> None:
    # The new data has as many lines as the old: each keeps its place, prefix and line ending, so
    # a comment between data lines stays between them.
    usage = b'"usage":{"prompt_tokens":1678,"completion_tokens":370,"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":105530}}}'
    event = b'data: {"model":"claude-sonnet-4-5","choices":[],\r: keep-alive\ndata:' + usage + b"\r\n\r\n"
    rw = StreamRewriter(CHAT)
    out = b"".join(rw.feed(event)) + b"".join(rw.finish())
    fixed = usage.replace(b"1678", b"107208").replace(b"2048", b"107578")
    assert (
        out == b'data: {"model":"claude-sonnet-4-5","choices":[],\r: keep-alive\ndata:' + fixed + b"\r\n\r\n"
    )
    assert rebuild_upstream(out, build_record(rw.result).model_dump(mode="json")) == event


class _EndRaises(_Wrapped):
    """A real dialect whose `is_end` has a bug."""

    def is_end(self, name: str | None, data: str) -> bool:
        raise RuntimeError("is_end failed")


def test_a_failing_end_test_on_an_event_without_usage_costs_no_byte() -> None:
    # `[DONE]` carries no usage: the failure comes from the end test alone, and still fails open.
    for chunks in ([FOUNDING], bytewise(FOUNDING)):
        rw = StreamRewriter(_EndRaises(CHAT, -1, ValueError(), "none"))
        out = run(rw, chunks)
        assert out == FOUNDING[:USAGE_AT] + FIXED[USAGE_AT:]  # the usage before it was repaired
        rec = record(rw)
        assert rec["status"] == "passthrough_error" and "is_end failed" in rec["error"]


# -- quiet runs: the hot path of a long stream ------------------------------------------------


def test_a_long_stream_goes_in_quiet_runs_and_every_event_is_counted() -> None:
    # Each chunk's whole events that cannot carry usage or end the stream go as one piece; the
    # output and the record are those of the events looked at one by one.
    first = len(EVENTS[0])  # the stream's first event is looked at on its own (for a BOM)
    chunks = [FOUNDING[:first], FOUNDING[first:USAGE_AT], FOUNDING[USAGE_AT:]]
    fast = StreamRewriter(CHAT)
    slow = StreamRewriter(CHAT)
    slow._framer.quiet = None  # type: ignore[attr-defined]
    runs: list[int] = []
    fast._framer.quiet = lambda raw, q=fast._session.quiet: runs.append(len(raw)) is None and q(raw)  # type: ignore[attr-defined]
    assert run(fast, chunks) == run(slow, chunks) == FIXED
    assert runs == [USAGE_AT - first, len(FOUNDING) - USAGE_AT]  # quiet, then not (the usage)
    assert record(fast) == record(slow) and fast.result.events == len(EVENTS)


def _pool() -> list[bytes]:
    """Events of every golden stream, each dialect's needles and end markers, and odd bytes."""
    pool = [b"data: [DONE]\n\n", b'"usage"', b'"usage": {"prompt_tokens": 1}', b"\xff\x00", b""]
    for path in STREAMS:
        pool += [e + b"\n\n" for e in path.read_bytes().split(b"\n\n") if e][:12]
    for d in DIALECTS.values():
        pool += [*getattr(d, "needles", ()), *d.end_markers]
    return pool


POOL = _pool()


@pytest.mark.parametrize("name", sorted(DIALECTS))
@given(data=st.data())
def test_a_session_s_quiet_is_its_byte_tests_in_one_call(name: str, data: st.DataObject) -> None:
    # The framer lets a run through untouched on `quiet` alone: it must say look wherever the
    # session's `might_carry_usage` or the dialect's end markers would, in every state.
    dialect = DIALECTS[name]
    tally = Tally()
    tally.snapshots = data.draw(st.integers(0, 2), label="snapshots")
    tally.final_seen = data.draw(st.booleans(), label="final_seen")
    session = dialect.stream_session(
        tally, Context(strip_usage_chunk=data.draw(st.booleans(), label="strip"))
    )
    own = [*getattr(dialect, "needles", ()), *dialect.end_markers, b'"usage"', b'"usage":null', b"[DONE]"]
    own += [b'data: "usage"\n\n', b":null\n\n"]  # what a test across line ends would join
    parts = st.sampled_from(own) | st.sampled_from(POOL) | st.binary(max_size=40)
    run = b"".join(data.draw(st.lists(parts, max_size=4), label="run"))
    looks = session.might_carry_usage(run) or any(run.find(m) >= 0 for m in dialect.end_markers)
    assert session.quiet(run) is not looks
    # A run of whole events is quiet exactly when each of its events is (a test that crossed
    # the line ends between them would see what no event holds).
    mine = [e for e in own if e.endswith(b"\n\n")]
    whole = st.sampled_from(mine) | st.sampled_from([e for e in POOL if e.endswith(b"\n\n")])
    events = data.draw(st.lists(whole, min_size=1, max_size=4), label="events")
    assert session.quiet(b"".join(events)) is all(session.quiet(e) for e in events)


def test_a_failing_quiet_test_forwards_every_byte() -> None:
    # The framer keeps what it held when the session's `quiet` raises (on a whole-event chunk,
    # or on a run cut from held bytes); the rewriter hands it all back and passes the rest
    # untouched. The first event is looked at on its own, so the first `quiet` comes after it.
    def failing(run: bytes) -> bool:
        raise RuntimeError("planted in quiet")

    for chunks in (EVENTS, [FOUNDING[:230], FOUNDING[230:]]):
        rw = StreamRewriter(CHAT)
        rw._framer.quiet = failing  # type: ignore[attr-defined]
        assert run(rw, chunks) == FOUNDING
        assert record(rw)["error"] == "RuntimeError: planted in quiet"


@pytest.mark.parametrize(
    ("event", "carries"),
    [
        (b'data: {"choices":[{"usage":null}],"usage":null}\n\n', False),
        (b'data: {"choices":[],"usage":\t null}\n\n', False),
        (b'data: {"choices":[],"usage" : {"prompt_tokens":1}}\n\n', True),
        (b'data: {"usage":null,"x_groq":{"usage":{"prompt_tokens":1}}}\n\n', True),
        (b'data: {"choices":[{"delta":{"content":"\\"usage\\""}}]}\n\n', False),
    ],
)
def test_chat_tells_a_usage_block_from_null_usage_keys(event: bytes, carries: bool) -> None:
    session = CHAT.stream_session(Tally(), Context())
    assert session.might_carry_usage(event) is carries
    assert session.might_carry_usage(event * 3) is carries  # a run, as each of its events
