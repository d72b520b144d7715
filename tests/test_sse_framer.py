"""Tests for the SSE framer: every case whole, byte-at-a-time and with trailing bytes."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chunking import bytewise, chunkings, run_pushed
from usagefix.framing import SSEEvent, SSEFramer, parse_fields


def frame(chunks: list[bytes], max_event_bytes: int = 1 << 20) -> list[SSEEvent]:
    f = SSEFramer(max_event_bytes)
    return run_pushed(f.feed, f.finish, chunks)


def check_three_ways(stream: bytes, expected: list[bytes]) -> None:
    """Whole, byte-at-a-time (nothing returned early), and with trailing bytes held back."""
    assert [e.raw for e in frame([stream])] == expected
    assert all(e.complete for e in frame([stream]))
    assert [e.raw for e in frame(bytewise(stream))] == expected

    # Byte-at-a-time with a growing buffer: each event comes out as soon as it is complete
    # (or, for a final CR, at the next byte), never before.
    f = SSEFramer()
    seen = b""
    for i in range(len(stream)):
        for ev in f.feed(stream[i : i + 1]):
            seen += ev.raw
            assert stream[: len(seen)] == seen
    # Trailing bytes of an unfinished event stay held until finish().
    f = SSEFramer()
    out = f.feed(stream + b"data: trail")
    held = f.pending_bytes()
    assert b"".join(e.raw for e in out) + held == stream + b"data: trail"
    assert held.endswith(b"data: trail")
    tail = f.finish()
    assert [(e.raw.endswith(b"data: trail"), e.complete) for e in tail] == [(True, False)]


CASES = {
    "lf": (b"data: a\n\ndata: b\n\n", [b"data: a\n\n", b"data: b\n\n"]),
    "crlf": (b"data: a\r\n\r\ndata: b\r\n\r\n", [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]),
    "cr": (b"data: a\r\rdata: b\r\r", [b"data: a\r\r", b"data: b\r\r"]),
    "mixed_endings": (b"data: a\r\n\ndata: b\n\r\n", [b"data: a\r\n\n", b"data: b\n\r\n"]),
    "named_events": (
        b"event: message_start\ndata: {}\n\nevent: ping\ndata: {}\n\n",
        [b"event: message_start\ndata: {}\n\n", b"event: ping\ndata: {}\n\n"],
    ),
    "comments": (
        b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: x\n\n",
        [b": keep-alive\n\n", b": OPENROUTER PROCESSING\n\n", b"data: x\n\n"],
    ),
    "multiline_data": (b'data: {"a":\ndata: 1}\n\n', [b'data: {"a":\ndata: 1}\n\n']),
    "utf8": ('data: "héllo ✓"\n\n'.encode(), ['data: "héllo ✓"\n\n'.encode()]),
    "leading_blank_line": (b"\ndata: a\n\n", [b"\ndata: a\n\n"]),
}


@pytest.mark.parametrize("name", CASES)
def test_cases_three_ways(name: str) -> None:
    stream, expected = CASES[name]
    check_three_ways(stream, expected)


def test_crlf_split_across_chunks() -> None:
    # The final CR of a CRLF terminator arrives alone: the event waits for its LF.
    f = SSEFramer()
    assert f.feed(b"data: a\r\n\r") == []
    assert f.feed(b"\ndata: b") == [SSEEvent(b"data: a\r\n\r\n")]


def test_lone_cr_terminator_is_released_by_the_next_byte() -> None:
    f = SSEFramer()
    assert f.feed(b"data: a\r\r") == []
    assert f.feed(b"d") == [SSEEvent(b"data: a\r\r")]


def test_stream_ending_without_blank_line() -> None:
    assert frame([b"data: a\n\ndata: [DONE]\n"]) == [SSEEvent(b"data: a\n\n"), SSEEvent(b"data: [DONE]\n")]


def test_stream_cut_mid_event_gives_incomplete_tail() -> None:
    assert frame([b'data: a\n\ndata: {"x']) == [
        SSEEvent(b"data: a\n\n"),
        SSEEvent(b'data: {"x', complete=False),
    ]


def test_trailing_cr_at_finish_is_complete() -> None:
    assert frame([b"data: a\r\r"]) == [SSEEvent(b"data: a\r\r")]


def test_over_bound_event_passes_through_unparsed() -> None:
    big = b"data: " + b"x" * 100 + b"\n\n"
    stream = b"data: a\n\n" + big + b"data: b\n\n"
    for chunks in ([stream], bytewise(stream), [stream[:50], stream[50:]]):
        f = SSEFramer(max_event_bytes=40)
        events = run_pushed(f.feed, f.finish, chunks)
        assert b"".join(e.raw for e in events) == stream
        assert events[0] == SSEEvent(b"data: a\n\n")
        assert events[-1] == SSEEvent(b"data: b\n\n")
        middle = events[1:-1]
        assert middle and all(not e.complete for e in middle)
        assert b"".join(e.raw for e in middle) == big
        # The bound holds: never more than the bound (plus a possible terminator) held back.
        f = SSEFramer(max_event_bytes=40)
        for c in chunks:
            f.feed(c)
            assert f.pending <= 40 + len(c)


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEFramer(0)


def test_parse_fields() -> None:
    assert parse_fields(b"event: message_delta\ndata: {}\n\n") == ("message_delta", "{}")
    assert parse_fields(b'data:{"a":\r\ndata: 1}\r\n\r\n') == (None, '{"a":\n1}')
    assert parse_fields(b": comment\n\n") == (None, None)
    assert parse_fields(b"id: 3\nretry: 10\ndata: x\n\n") == (None, "x")
    assert parse_fields(b"data\n\n") == (None, "")


# -- properties --------------------------------------------------------------------------

_line = st.sampled_from(
    [
        b'data: {"usage":null}',
        b"data: [DONE]",
        b"event: ping",
        b": keep-alive",
        b"data:x",
        b"id: 1",
        b"data: \xc3\xa9",
    ]
)
_eol = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        for _ in range(draw(st.integers(1, 3))):
            out += draw(_line) + draw(_eol)
        out += draw(_eol)
    return out


@given(st.data(), sse_streams())
@example(None, b"data: a\r\n\r\ndata: b\r\r")
def test_any_chunking_gives_the_same_events(data: st.DataObject, stream: bytes) -> None:
    whole = frame([stream])
    chunks = data.draw(chunkings(stream)) if data is not None else bytewise(stream)
    assert frame(chunks) == whole
    assert b"".join(e.raw for e in whole) == stream


@given(st.data(), st.binary(max_size=300), st.integers(4, 64))
def test_any_bytes_pass_through_exactly(data: st.DataObject, stream: bytes, bound: int) -> None:
    # Whatever comes in, nothing is dropped, reordered or invented, even under a tiny bound.
    chunks = data.draw(chunkings(stream))
    assert b"".join(e.raw for e in frame(chunks, bound)) == stream
