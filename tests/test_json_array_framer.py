"""Tests for the streamed JSON array framer: every case whole, byte-at-a-time and with trailing bytes."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import bytewise, check_three_ways, chunkings, events_of, run_pushed
from usagefix.framing import ArrayElement, JSONArrayFramer


def frame(chunks: list[bytes], bound: int = 1 << 20) -> list[ArrayElement]:
    f = JSONArrayFramer(bound)
    return run_pushed(f.feed, f.finish, chunks)


def values(elements: list[ArrayElement]) -> list[str]:
    return [text for e in elements if (text := e.payload()[1]) is not None]


GEMINI = (
    b'[{"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}\r\n,\r\n'
    b'{"candidates": [{"content": {"parts": [{"text": "lo \\"x\\" ]}{ \xc3\xa9"}]}}],'
    b'"usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 9}}\r\n]'
)

CASES = {
    "gemini": (GEMINI, 2),
    "compact": (b'[{"a":1},{"b":[1,2,{"c":"]"}]}]', 2),
    "strings_and_numbers": (b'["a\\\\", 12, true, null, -1.5e3]', 5),
    "empty": (b"[]", 0),
    "whitespace": (b'  [\n  {"a": 1}\n]\n', 1),
    "single_object": (b'{"usageMetadata": {"totalTokenCount": 3}}', 1),
}


@pytest.mark.parametrize("name", CASES)
def test_cases_three_ways(name: str) -> None:
    stream, count = CASES[name]
    whole = frame([stream])
    assert len(values(whole)) == count
    for v in values(whole):
        json.loads(v)
    # Open the array again after its last element: what follows is an element that never ends.
    body = stream.rstrip()
    open_array = body[:-1].rstrip() if body.endswith(b"]") else body
    trailing: bytes | None = b',{"tail": "unfinis' if count else b'{"tail": "unfinis'
    if name == "single_object":
        trailing = None  # after a top-level object, nothing more is framed
    eager = name != "strings_and_numbers"  # a number ends only when the next byte says so
    opened = check_three_ways(JSONArrayFramer, open_array, trailing, eager=eager)
    assert values(opened) == values(whole)
    assert b"".join(e.raw for e in whole) == stream
    assert values(frame(bytewise(stream))) == values(whole)


def test_elements_come_out_as_soon_as_complete() -> None:
    f = JSONArrayFramer()
    first, rest = GEMINI.split(b"\r\n,\r\n", 1)
    between, e = f.feed(first)
    assert between == ArrayElement(b"[", None, complete=False, starts_event=False)
    assert e.raw == first[1:] and e.payload()[1] == first[1:].decode()
    # Separators go on at once (nothing complete is held), the closing bracket too.
    out = f.feed(b"\r\n,\r\n")
    assert out == [ArrayElement(b"\r\n,\r\n", None, complete=False, starts_event=False)]
    (e,) = f.feed(rest[:-3])
    assert e.payload()[1] == rest[:-3].decode()
    assert f.feed(b"\r\n]") == [ArrayElement(b"\r\n]", None, complete=False, starts_event=False)]


def test_with_payload_replaces_the_element_alone() -> None:
    e = frame([b'[ {"a": 1}'])[1]
    assert e.with_payload('{"a": 2}') == b'{"a": 2}'


def test_not_an_array_passes_through() -> None:
    out = frame([b"<html>oops</html>"])
    assert b"".join(e.raw for e in out) == b"<html>oops</html>" and values(out) == []


def test_over_bound_element_passes_through_unparsed() -> None:
    big = b'{"x": "' + b"y" * 200 + b'"}'
    stream = b'[{"a": 1},' + big + b',{"b": 2}]'
    for chunks in ([stream], bytewise(stream)):
        out = frame(chunks, bound=64)
        assert b"".join(e.raw for e in out) == stream
        assert values(out) == ['{"a": 1}', '{"b": 2}']
        assert [x[1] for x in events_of(out)] == [(), ("oversize",), ()]


def test_a_stream_cut_inside_an_over_bound_element_ends_with_the_rest_of_it_cut_off() -> None:
    stream = b'[{"a": 1},{"x": "' + b"y" * 200
    for chunks in ([stream], bytewise(stream), [stream[:80], stream[80:]]):
        out = frame(chunks, bound=64)
        assert b"".join(e.raw for e in out) == stream and values(out) == ['{"a": 1}']
        *_, last = out
        assert (last.complete, last.reason, last.starts_event) == (False, "cut_off", False)
        assert [x[1] for x in events_of(out)] == [(), ("oversize", "cut_off")]


def test_an_empty_chunk_gives_nothing_wherever_it_comes() -> None:
    # Not even an empty piece while an over-bound element is forwarded: to an HTTP/1.1 client an
    # empty chunk would end the body.
    big = b'{"x": "' + b"y" * 200 + b'"}'
    stream = b'[{"a": 1},' + big + b',{"b": 2}]'
    expected = events_of(frame([stream], bound=64))
    for i in range(len(stream) + 1):
        f = JSONArrayFramer(64)
        out = f.feed(stream[:i])
        assert f.feed(b"") == []
        out += f.feed(stream[i:]) + f.finish()
        assert b"".join(e.raw for e in out) == stream and events_of(out) == expected


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        JSONArrayFramer(0)


def test_an_element_at_the_bound_is_parsed_however_it_is_chunked() -> None:
    # The separators before an element do not count against the bound: only the element.
    element = b'{"x": "' + b"y" * 50 + b'"}'
    stream = b"[" + b" " * 40 + element + b"]"
    for chunks in ([stream], bytewise(stream)):
        assert values(frame(chunks, bound=len(element))) == [element.decode()]


@st.composite
def arrays(draw: st.DrawFn) -> bytes:
    leaf = st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none())
    value = st.recursive(
        leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3)
    )
    items = draw(st.lists(st.dictionaries(st.text(max_size=4), value, max_size=3), max_size=4))
    sep = draw(st.sampled_from([",", "\r\n,\r\n", ", "]))
    return ("[" + sep.join(json.dumps(i, ensure_ascii=draw(st.booleans())) for i in items) + "]").encode()


@given(st.data(), arrays())
def test_any_chunking_gives_the_same_elements(data: st.DataObject, stream: bytes) -> None:
    whole = frame([stream])
    assert b"".join(e.raw for e in whole) == stream
    assert [json.loads(v) for v in values(whole)] == json.loads(stream)
    chunks = data.draw(chunkings(stream))
    assert events_of(frame(chunks)) == events_of(whole)
    assert b"".join(e.raw for e in frame(chunks)) == stream


@given(st.data(), arrays(), st.integers(4, 40))
def test_any_chunking_gives_the_same_elements_under_a_bound(
    data: st.DataObject, stream: bytes, bound: int
) -> None:
    whole = frame([stream], bound)
    assert events_of(frame(data.draw(chunkings(stream)), bound)) == events_of(whole)
    cut_short = stream[: data.draw(st.integers(0, len(stream)))]
    assert events_of(frame(data.draw(chunkings(cut_short)), bound)) == events_of(frame([cut_short], bound))


@given(st.data(), st.binary(max_size=200), st.integers(4, 64))
def test_any_bytes_pass_through_exactly(data: st.DataObject, stream: bytes, bound: int) -> None:
    chunks = data.draw(chunkings(stream))
    assert b"".join(e.raw for e in frame(chunks, bound)) == stream
