"""Tests for the AWS event-stream framer and the Bedrock dialect (observe-only)."""

import base64
import json
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import bytewise, check_three_ways, chunkings, events_of, merge_pieces, run_pushed
from usagefix.dialects import DIALECTS, detect
from usagefix.framing import EventStreamFramer, Frame
from usagefix.framing.eventstream import encode_frame, parse_headers
from usagefix.recordbuild import build_record
from usagefix.rewriter import rewrite_stream


def header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v


def event(kind: str, payload: dict[str, object]) -> bytes:
    headers = (
        header(":event-type", kind)
        + header(":content-type", "application/json")
        + header(":message-type", "event")
    )
    return encode_frame(headers, json.dumps(payload, separators=(",", ":")).encode())


CONVERSE = b"".join(
    [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
        event("messageStop", {"stopReason": "end_turn"}),
        # Nova capture shape from the reference: 22 + 2492 (cache write) + 13 = 2527.
        event(
            "metadata",
            {
                "usage": {
                    "inputTokens": 22,
                    "outputTokens": 13,
                    "totalTokens": 2527,
                    "cacheWriteInputTokens": 2492,
                },
                "metrics": {"latencyMs": 412},
            },
        ),
    ]
)


def frames(chunks: list[bytes], bound: int = 1 << 20) -> list[Frame]:
    f = EventStreamFramer(bound)
    return run_pushed(f.feed, f.finish, chunks)


def test_frames_three_ways() -> None:
    whole = check_three_ways(EventStreamFramer, CONVERSE, b"\x00\x00\x00")
    assert [f.payload()[0] for f in whole] == ["messageStart", "contentBlockDelta", "messageStop", "metadata"]
    assert all(f.complete for f in whole)


def test_headers_decode() -> None:
    (f, *_) = frames([CONVERSE])
    assert f.headers == {
        ":event-type": "messageStart",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert parse_headers(b"\x01a\x00\x01b\x04\x00\x00\x00\x07") == {"a": True, "b": 7}


def test_a_frame_that_fails_its_crc_passes_untouched_and_flagged() -> None:
    first = event("messageStart", {"role": "assistant"})
    bad = bytearray(event("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1}}))
    bad[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    stream = first + bytes(bad) + first
    out = frames([stream])
    assert [(f.complete, f.reason) for f in out] == [(True, None), (False, "bad_crc"), (True, None)]
    assert b"".join(f.raw for f in out) == stream


def test_a_frame_whose_headers_do_not_decode_is_flagged_as_such() -> None:
    bad = encode_frame(b"\x01a\x63", b"{}")  # header type 0x63 does not exist
    out = frames([bad])
    assert [(f.complete, f.reason) for f in out] == [(False, "bad_headers")]


@pytest.mark.parametrize(
    ("block", "why"),
    [
        pytest.param(b"\x01a\x04\x00\x00", "truncated header value", id="int32 cut short"),
        pytest.param(b"\x01a\x07\x00\x05ab", "truncated header value", id="string cut short"),
        pytest.param(b"\x01a\x06\x00\x05ab", "truncated header value", id="bytes cut short"),
        pytest.param(b"\x01a\x07\x00", "malformed headers", id="length cut short"),
        pytest.param(b"\x01a", "malformed headers", id="no type"),
        pytest.param(b"\x05ab", "malformed headers", id="name cut short"),
        pytest.param(b"\x01\xff\x00", "malformed headers", id="name not UTF-8"),
        pytest.param(b"\x01a\x07\x00\x01\xff", "malformed headers", id="string not UTF-8"),
        pytest.param(b"\x01a\x63", "unknown header type 99", id="unknown type"),
    ],
)
def test_a_malformed_header_block_is_an_error_and_its_frame_flagged(block: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_headers(block)
    stream = event("messageStart", {}) + encode_frame(block, b"{}") + event("messageStop", {})
    whole = check_three_ways(EventStreamFramer, stream, b"\x00\x00\x00")
    assert [(f.complete, f.reason) for f in whole] == [(True, None), (False, "bad_headers"), (True, None)]


def test_a_broken_prelude_passes_the_rest_through() -> None:
    stream = event("messageStart", {}) + b"garbage that is not a frame at all"
    for chunks in ([stream], [stream[:40], stream[40:50], stream[50:]]):
        out = frames(chunks)
        assert out[0].complete and b"".join(f.raw for f in out) == stream
        assert events_of(out) == [(True, (), ("messageStart", "{}")), (False, ("bad_prelude",), None)]


def test_over_bound_frame_passes_through_unparsed() -> None:
    big = event("contentBlockDelta", {"delta": {"text": "x" * 500}})
    stream = event("messageStart", {}) + big + event("messageStop", {})
    for chunks in ([stream], bytewise(stream)):
        out = frames(chunks, bound=200)
        assert b"".join(f.raw for f in out) == stream
        assert out[0].complete and out[-1].complete
        assert [(m.raw, m.reasons) for m in merge_pieces(out)][1] == (big, ("oversize",))
    # Cut off inside it, after every byte it had has gone: still reported, counted once.
    cut = stream[: stream.index(big) + len(big) - 30]
    for chunks in ([cut], bytewise(cut)):
        out = frames(chunks, bound=200)
        assert b"".join(f.raw for f in out) == cut
        assert [m.reasons for m in merge_pieces(out)] == [(), ("oversize", "cut_off")]


def test_reencoding_round_trips() -> None:
    for f in frames([CONVERSE]):
        name, text = f.payload()
        assert text is not None
        again = f.with_payload(text)
        assert again == f.raw  # same payload: same bytes, both CRCs
        changed = f.with_payload(text.replace("22", "23"))
        (g,) = frames([changed])
        assert g.complete and g.payload() == (name, text.replace("22", "23"))
        total, _, prelude_crc = struct.unpack(">III", changed[:12])
        assert total == len(changed) and prelude_crc == zlib.crc32(changed[:8])


@given(st.data(), st.integers(20, 200), st.integers(0, len(CONVERSE)))
def test_any_chunking_gives_the_same_frames(data: st.DataObject, bound: int, cut_at: int) -> None:
    assert frames(data.draw(chunkings(CONVERSE))) == frames([CONVERSE])
    stream = CONVERSE[:cut_at]
    assert merge_pieces(frames(data.draw(chunkings(stream)), bound)) == merge_pieces(frames([stream], bound))


def test_converse_stream_usage_is_recorded_not_rewritten() -> None:
    dialect = detect("POST", "/model/amazon.nova-pro-v1%3A0/converse-stream")
    assert dialect is DIALECTS["bedrock"]
    out, rw = rewrite_stream(dialect, CONVERSE, framing="eventstream")
    assert out == CONVERSE
    rec = build_record(rw.result)
    assert rec.status == "unchanged" and rec.final_seen
    assert rec.usage_after is not None
    assert (rec.usage_after.input_total, rec.usage_after.cache_write, rec.usage_after.total) == (
        2514,
        2492,
        2527,
    )
    assert rec.anomalies == []


def test_invoke_with_response_stream_metrics_are_recorded() -> None:
    inner = {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 11,
            "outputTokenCount": 6,
            "invocationLatency": 500,
        },
    }
    stream = event("chunk", {"bytes": base64.b64encode(json.dumps(inner).encode()).decode()})
    dialect = detect("POST", "/model/anthropic.claude-sonnet-4-5/invoke-with-response-stream")
    assert dialect is not None
    out, rw = rewrite_stream(dialect, stream, framing="eventstream")
    rec = build_record(rw.result)
    assert out == stream and rec.final_seen and rec.usage_after is not None and rec.usage_after.total == 17


def test_total_mismatch_is_flagged() -> None:
    stream = event(
        "metadata",
        {"usage": {"inputTokens": 22, "outputTokens": 13, "totalTokens": 35, "cacheReadInputTokens": 5}},
    )
    dialect = DIALECTS["bedrock"]
    _, rw = rewrite_stream(dialect, stream, framing="eventstream")
    assert "bedrock_total_mismatch" in build_record(rw.result).anomalies


@given(st.data(), st.binary(max_size=400), st.integers(16, 200))
def test_any_bytes_pass_through_exactly(data: st.DataObject, stream: bytes, bound: int) -> None:
    # Arbitrary bytes (and a valid stream with them after it): never an exception, never a byte
    # dropped, reordered or invented, whatever the chunking and the bound.
    for body in (stream, CONVERSE + stream):
        assert b"".join(f.raw for f in frames(data.draw(chunkings(body)), bound)) == body
