"""Tests for the streamed JSON array framer: every case whole, byte-at-a-time and with trailing bytes."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import bytewise, chunkings, run_pushed
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
    assert b"".join(e.raw for e in whole) == stream
    assert all(e.complete for e in whole)
    assert len(values(whole)) == count
    for v in values(whole):
        json.loads(v)
    assert frame(bytewise(stream)) == whole or values(frame(bytewise(stream))) == values(whole)
    # Trailing bytes of an unfinished element stay held until finish().
    if stream.rstrip().endswith(b"]") and count:
        f = JSONArrayFramer()
        open_array = stream.rstrip()[:-1] + b',{"tail": "unfinis'
        out = f.feed(open_array)
        assert values(out) == values(whole)
        assert f.pending_bytes().endswith(b'{"tail": "unfinis')
        assert [e.complete for e in f.finish()] == [False]


def test_elements_come_out_as_soon_as_complete() -> None:
    f = JSONArrayFramer()
    first, rest = GEMINI.split(b"\r\n,\r\n", 1)
    (e,) = f.feed(first)
    assert e.raw == first and e.payload()[1] == first[1:].decode()
    # The separator rides with the next element, the closing bracket comes out at once.
    out = f.feed(b"\r\n,\r\n" + rest[:-1])
    assert [x.raw[:5] for x in out] == [b"\r\n,\r\n"]
    assert f.feed(b"]") == [ArrayElement(b"\r\n]")]


def test_with_payload_keeps_the_separators() -> None:
    (e,) = frame([b'[ {"a": 1}'])[:1]
    assert e.with_payload('{"a": 2}') == b'[ {"a": 2}'


def test_not_an_array_passes_through() -> None:
    out = frame([b"<html>oops</html>"])
    assert b"".join(e.raw for e in out) == b"<html>oops</html>" and values(out) == []


def test_over_bound_element_passes_through_unparsed() -> None:
    big = b'{"x": "' + b"y" * 200 + b'"}'
    stream = b'[{"a": 1},' + big + b',{"b": 2}]'
    for chunks in ([stream], bytewise(stream)):
        out = frame(chunks, bound=64)
        assert b"".join(e.raw for e in out) == stream
        assert values(out)[0] == '{"a": 1}' and values(out)[-1] == '{"b": 2}'
        assert any(not e.complete for e in out)


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
    assert values(frame(chunks)) == values(whole)
    assert b"".join(e.raw for e in frame(chunks)) == stream


@given(st.data(), st.binary(max_size=200), st.integers(4, 64))
def test_any_bytes_pass_through_exactly(data: st.DataObject, stream: bytes, bound: int) -> None:
    chunks = data.draw(chunkings(stream))
    assert b"".join(e.raw for e in frame(chunks, bound)) == stream
