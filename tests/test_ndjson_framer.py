"""Tests for the NDJSON framer (Ollama's native stream): every case whole, byte-at-a-time and with
trailing bytes; the bound; any chunking."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import check_three_ways, chunkings, events_of, run_pushed
from usagefix.framing import NDJSONFramer, NDJSONLine, make_framer

OLLAMA = (
    b'{"model":"llama3.2","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant",'
    b'"content":"H\xc3\xa9"},"done":false}\n'
    b'{"model":"llama3.2","created_at":"2026-01-01T00:00:01Z","message":{"role":"assistant",'
    b'"content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":3}\n'
)

CASES = {
    "ollama": (OLLAMA, 2),
    "crlf": (b'{"a":1}\r\n{"b":2}\r\n', 2),
    "blank_lines": (b'\n{"a":1}\n  \r\n\n{"b":"\\n"}\n', 2),
    "empty": (b"", 0),
}


def frame(chunks: list[bytes], bound: int = 1 << 20) -> list[NDJSONLine]:
    f = NDJSONFramer(bound)
    return run_pushed(f.feed, f.finish, chunks)


def values(lines: list[NDJSONLine]) -> list[object]:
    return [json.loads(text) for e in lines if e.complete and (text := e.payload()[1]) is not None]


@pytest.mark.parametrize("name", CASES)
def test_cases_three_ways(name: str) -> None:
    stream, count = CASES[name]
    whole = check_three_ways(NDJSONFramer, stream, b'{"tail": "unfinis')
    assert len(values(whole)) == count
    assert make_framer("ndjson").feed(stream) == whole  # the registry's name for it


def test_with_payload_keeps_the_line_ending() -> None:
    crlf, lf = frame([b'{"a":1}\r\n{"b":2}\n'])
    assert crlf.with_payload('{"a": 2}') == b'{"a": 2}\r\n'
    assert lf.with_payload("{}") == b"{}\n"
    assert NDJSONLine(b"{}").with_payload("[]") == b"[]"


def test_an_oversize_line_goes_through_in_pieces_unparsed() -> None:
    long = b'{"x":"' + b"a" * 40 + b'"}\n'
    stream = b'{"a":1}\n' + long + b'{"b":2}\n'
    for chunks in ([stream], [stream[i : i + 7] for i in range(0, len(stream), 7)]):
        out = frame(chunks, bound=16)
        assert b"".join(e.raw for e in out) == stream
        assert [(c, r) for c, r, _ in events_of(out)] == [(True, ()), (False, ("oversize",)), (True, ())]
        assert values(out) == [{"a": 1}, {"b": 2}]
    f = NDJSONFramer(16)
    f.feed(b"z" * 20)
    assert f.pending == 0  # the bound holds: nothing over it is kept
    cut = f.finish()
    assert [(e.raw, e.reason, e.starts_event) for e in cut] == [(b"", "cut_off", False)]


def test_a_blank_tail_is_no_event() -> None:
    (tail,) = frame([b'{"a":1}\n', b"  "])[1:]
    assert (tail.complete, tail.reason, tail.starts_event) == (False, None, False)


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        NDJSONFramer(0)


@given(data=st.data())
def test_any_chunking_gives_the_same_lines(data: st.DataObject) -> None:
    stream = OLLAMA + b'\r\n{"c":3}\n'
    chunks = data.draw(chunkings(stream))
    out = frame(chunks)
    assert b"".join(e.raw for e in out) == stream
    assert events_of(out) == events_of(frame([stream]))
