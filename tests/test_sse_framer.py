"""Tests for the SSE framer: every case whole, byte-at-a-time and with trailing bytes."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chunking import bytewise, check_three_ways, chunkings, merge_pieces, run_pushed
from usagefix.framing import SSEEvent, SSEFramer, parse_fields
from usagefix.framing.sse import BOM, replace_data


def frame(chunks: list[bytes], max_event_bytes: int = 1 << 20) -> list[SSEEvent]:
    f = SSEFramer(max_event_bytes)
    return run_pushed(f.feed, f.finish, chunks)


def check(stream: bytes, expected: list[bytes]) -> None:
    whole = check_three_ways(SSEFramer, stream, b"data: trail")
    assert [e.raw for e in whole] == expected
    assert all(isinstance(e, SSEEvent) and e.complete for e in whole)
    # Pieces joined, byte at a time frames the same events as the whole.
    assert [m.raw for m in merge_pieces(frame(bytewise(stream)))] == expected


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
    check(stream, expected)


def test_an_event_ending_in_a_cr_goes_at_once_and_its_lf_follows_on_its_own() -> None:
    # Issue 10: `\r\n\r` ends an event (a CR ends the blank line). Waiting for an LF that may
    # never come held a complete usage event until an end of stream that may be an error.
    f = SSEFramer()
    assert f.feed(b"data: a\r\n\r") == [SSEEvent(b"data: a\r\n\r")]
    assert f.pending == 0
    assert f.feed(b"\ndata: b") == [SSEEvent(b"\n", complete=False, starts_event=False)]
    assert f.feed(b"\r\r") == [SSEEvent(b"data: b\r\r")]
    assert f.feed(b"data: c\n\n") == [SSEEvent(b"data: c\n\n")]  # no LF came: nothing to continue
    assert f.finish() == []


def test_a_final_cr_is_not_held_at_the_end_of_the_stream() -> None:
    f = SSEFramer()
    assert f.feed(b"data: a\r\n\r") == [SSEEvent(b"data: a\r\n\r")]
    assert f.pending_bytes() == b""


def test_stream_ending_without_blank_line() -> None:
    assert frame([b"data: a\n\ndata: [DONE]\n"]) == [SSEEvent(b"data: a\n\n"), SSEEvent(b"data: [DONE]\n")]


def test_stream_cut_mid_event_gives_incomplete_tail() -> None:
    assert frame([b'data: a\n\ndata: {"x']) == [
        SSEEvent(b"data: a\n\n"),
        SSEEvent(b'data: {"x', complete=False, reason="cut_off"),
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
        assert middle and all(not e.complete and e.reason == "oversize" for e in middle)
        assert [e.starts_event for e in middle] == [True] + [False] * (len(middle) - 1)
        assert b"".join(e.raw for e in middle) == big
        # The bound holds: never more than the bound (plus a possible terminator) held back.
        f = SSEFramer(max_event_bytes=40)
        for c in chunks:
            f.feed(c)
            assert f.pending <= 40 + len(c)


def test_a_stream_cut_inside_an_over_bound_event_ends_with_the_rest_of_it_cut_off() -> None:
    stream = b"data: a\n\ndata: " + b"x" * 100
    for chunks in ([stream], bytewise(stream), [stream[:50], stream[50:]]):
        events = frame(chunks, 40)
        assert b"".join(e.raw for e in events) == stream
        *_, last = events
        assert (last.complete, last.reason, last.starts_event) == (False, "cut_off", False)
        assert [(m.complete, m.reasons) for m in merge_pieces(events)] == [
            (True, ()),
            (False, ("oversize", "cut_off")),
        ]


def test_a_leading_bom_is_ignored_when_parsing_and_kept_on_the_wire() -> None:
    # WHATWG: one U+FEFF at the very start of the stream is ignored.
    stream = BOM + b'data: {"a":1}\n\ndata: b\n\n'
    for chunks in ([stream], bytewise(stream)):
        first, second = frame(chunks)
        assert first.bom and first.payload() == (None, '{"a":1}')
        assert first.with_payload('{"a":2}') == BOM + b'data: {"a":2}\n\n'
        assert not second.bom and second.payload() == (None, "b")
    # Anywhere else it is part of the line: `\ufeffdata` is an unknown field.
    later = frame([b"data: a\n\n" + BOM + b"data: b\n\n"])
    assert not later[1].bom and later[1].payload() == (None, None)


def test_a_tiny_bound_never_repeats_a_byte() -> None:
    for bound in (1, 2, 3):
        stream = b"data: a\n\ndata: bb\n\n"
        for chunks in ([stream], bytewise(stream), [stream[:10], stream[10:]]):
            assert b"".join(e.raw for e in frame(chunks, bound)) == stream


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEFramer(0)


def test_parse_fields() -> None:
    assert parse_fields(b"event: message_delta\ndata: {}\n\n") == ("message_delta", "{}")
    assert parse_fields(b'data:{"a":\r\ndata: 1}\r\n\r\n') == (None, '{"a":\n1}')
    assert parse_fields(b": comment\n\n") == (None, None)
    assert parse_fields(b"id: 3\nretry: 10\ndata: x\n\n") == (None, "x")
    assert parse_fields(b"data\n\n") == (None, "")


def test_new_data_takes_the_place_of_the_first_data_line_and_every_other_line_stays() -> None:
    raw = b'event: message_delta\r\nid: 7\r\ndata:{"a":\r\n: note\r\ndata: 1}\r\n\r\n'
    # The first data line's `data:` prefix and CRLF are kept; the second data line is gone.
    assert replace_data(raw, '{"a":2}') == b'event: message_delta\r\nid: 7\r\ndata:{"a":2}\r\n: note\r\n\r\n'
    # New data of several lines: each a data line, with the old one's prefix and line ending.
    assert replace_data(b"data: x\r\r", "a\nb") == b"data: a\rdata: b\r\r"
    assert SSEEvent(b"data: x\n\n").with_payload("y") == b"data: y\n\n"


@pytest.mark.parametrize("raw", [b"event: ping\n\n", b": keep-alive\r\n\r\n", b"datum: x\n\n", b""])
def test_an_event_without_a_data_line_takes_no_new_data(raw: bytes) -> None:
    with pytest.raises(ValueError, match="no data line"):
        replace_data(raw, "{}")


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
    assert merge_pieces(frame(chunks)) == merge_pieces(whole)
    assert b"".join(e.raw for e in whole) == stream


@given(st.data(), sse_streams(), st.integers(4, 40))
def test_any_chunking_gives_the_same_events_under_a_bound(
    data: st.DataObject, stream: bytes, bound: int
) -> None:
    # Over-bound events come in pieces that depend on chunking; joined, they are the same events,
    # flagged for the same reasons.
    whole = frame([stream], bound)
    assert merge_pieces(frame(data.draw(chunkings(stream)), bound)) == merge_pieces(whole)
    cut_short = stream[: data.draw(st.integers(0, len(stream)))]
    assert merge_pieces(frame(data.draw(chunkings(cut_short)), bound)) == merge_pieces(
        frame([cut_short], bound)
    )


@given(st.data(), st.binary(max_size=300), st.integers(4, 64))
def test_any_bytes_pass_through_exactly(data: st.DataObject, stream: bytes, bound: int) -> None:
    # Whatever comes in, nothing is dropped, reordered or invented, even under a tiny bound.
    chunks = data.draw(chunkings(stream))
    assert b"".join(e.raw for e in frame(chunks, bound)) == stream


@given(sse_streams(), st.text(st.characters(exclude_characters="\r", codec="utf-8"), max_size=20))
def test_replacing_the_data_of_any_event_gives_that_data_and_keeps_its_name(stream: bytes, new: str) -> None:
    for ev in frame([stream]):
        name, data = ev.payload()
        if data is None:
            continue
        again = SSEFramer()
        (replaced,) = run_pushed(again.feed, again.finish, [ev.with_payload(new)])
        assert replaced.payload() == (name, new)


# -- quiet runs: whole events the caller need not look at, as one piece -------------------------


def no_x(raw: bytes) -> bool:
    return b"x" not in raw


def test_quiet_whole_events_come_as_one_run_with_their_count() -> None:
    f = SSEFramer(quiet=no_x)
    assert f.feed(b"data: a\n\n") == [SSEEvent(b"data: a\n\n")]  # the first: its BOM is looked at
    assert f.feed(b"data: b\n\ndata: c\n\ndata: d") == [
        SSEEvent(b"data: b\n\ndata: c\n\n", count=2, quiet=True)
    ]
    assert f.feed(b"\n\ndata: x\n\ndata: e\n\n") == [
        SSEEvent(b"data: d\n\n"),
        SSEEvent(b"data: x\n\n"),
        SSEEvent(b"data: e\n\n"),
    ]  # not quiet: each event on its own
    assert f.feed(b"data: f\n\n") == [SSEEvent(b"data: f\n\n", quiet=True)]  # a run of one
    assert f.feed(b"data: g") == []  # no event ends: nothing
    assert f.feed(b"\n\ndata: h") == [SSEEvent(b"data: g\n\n", quiet=True)]
    assert f.finish() == [SSEEvent(b"data: h", False, "cut_off")]


def test_a_failing_quiet_test_leaves_every_byte_held() -> None:
    def failing(raw: bytes) -> bool:
        raise RuntimeError("planted")

    f = SSEFramer(quiet=failing)
    f.feed(b"data: a\n\n")  # the first event is looked at on its own
    for chunk in (b"data: b\n\n", b"data: c\n\ndata: d"):  # nothing held before; then held
        with pytest.raises(RuntimeError, match="planted"):
            f.feed(chunk)
    assert f.pending_bytes() == b"data: b\n\ndata: c\n\ndata: d"


@pytest.mark.parametrize(
    "chunk",
    [
        b"data: b\r\n\ndata: c\n\ndata: d\n\n",  # a CR: the loop decides where events end
        b"data: b\n\ndata: c\n\n\n",  # LFs in a row at the end: paired from the left by the loop
    ],
)
def test_runs_are_only_taken_where_they_cut_as_the_loop_does(chunk: bytes) -> None:
    f = SSEFramer(quiet=no_x)
    f.feed(b"data: a\n\n")
    assert not any(e.quiet for e in f.feed(chunk))


def test_no_run_over_the_bound() -> None:
    f = SSEFramer(12, quiet=no_x)
    f.feed(b"data: a\n\n")
    assert [e.quiet for e in f.feed(b"data: b\n\ndata: c\n\n")] == [False, False]


def expand(events: list[SSEEvent]) -> list[SSEEvent]:
    """Each run split into its events (a run holds LF line ends only)."""
    out: list[SSEEvent] = []
    for e in events:
        if not e.quiet:
            out.append(e)
            continue
        start = 0
        while (end := e.raw.find(b"\n\n", start)) >= 0:
            out.append(SSEEvent(e.raw[start : end + 2]))
            start = end + 2
        assert start == len(e.raw) and len(out) >= e.count
    return out


@given(st.data(), st.one_of(sse_streams(), st.binary(max_size=300)), st.integers(4, 64))
@example(None, b"data: a\n\ndata: b\n\n\ndata: c\n\n\n\n", 64)
def test_a_quiet_run_is_exactly_the_events_the_framer_gives_without_it(
    data: st.DataObject, stream: bytes, bound: int
) -> None:
    chunks = data.draw(chunkings(stream)) if data is not None else bytewise(stream)
    plain = SSEFramer(bound)
    runs = SSEFramer(bound, quiet=no_x)
    with_runs = run_pushed(runs.feed, runs.finish, chunks)
    assert expand(with_runs) == run_pushed(plain.feed, plain.finish, chunks)
    assert all(no_x(e.raw) for e in with_runs if e.quiet)
    assert sum(e.count for e in with_runs) == len(expand(with_runs))


def test_take_gives_a_quiet_run_as_its_bytes_and_anything_else_as_feed_does() -> None:
    f = SSEFramer(quiet=no_x)
    assert f.take(b"data: a\n\n") == [SSEEvent(b"data: a\n\n")]  # the first event: a BOM may lead it
    assert f.take(b"data: b\n\ndata: c\n") == b"data: b\n\n" and f.run_count == 1
    assert f.take(b"\ndata: d\n\n") == b"data: c\n\ndata: d\n\n" and f.run_count == 2  # from the buffer
    assert f.take(b"data: e") == b""  # ends no event: held
    assert f.take(b"\n\n") == b"data: e\n\n" and f.run_count == 1
    assert f.take(b"data: x\n\n") == [SSEEvent(b"data: x\n\n")]  # not quiet: the events, as feed
    assert f.quiet is no_x
    f.quiet = None  # no test: no run, every event on its own
    assert f.take(b"data: f\n\n") == [SSEEvent(b"data: f\n\n")]
