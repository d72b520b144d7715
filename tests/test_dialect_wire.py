"""Dialect-level wire behaviour: what each dialect does with what is not shaped as it expects.

An event or body that is not a JSON object, an event that carries no usage where usage may be, an
end event whose data is not JSON: each passes byte for byte, and is never read as a measurement
(R7, R8: unknown stays unmeasured, never 0). The end of a response is told by the event's name or
type (the rewriter's `ended`, which decides whether a client that hung up got a complete response).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from usagefix.dialects import DIALECTS, Context, Tally
from usagefix.framing import Framing
from usagefix.framing.eventstream import encode_frame
from usagefix.record import UsageRecord
from usagefix.recordbuild import build_record
from usagefix.rewriter import rewrite_body, rewrite_stream


def sse(*events: tuple[str | None, str]) -> bytes:
    """SSE events as (event name or None, data line)."""
    return b"".join(
        ((f"event: {name}\n" if name else "") + f"data: {data}\n\n").encode() for name, data in events
    )


def frame(kind: str, payload: bytes) -> bytes:
    """One AWS event-stream frame of `:event-type` `kind`."""

    def header(name: str, value: str) -> bytes:
        n, v = name.encode(), value.encode()
        return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v

    headers = header(":event-type", kind) + header(":message-type", "event")
    return encode_frame(headers, payload)


def chunk(inner: bytes) -> bytes:
    """An InvokeModelWithResponseStream frame wrapping the vendor's bytes."""
    return frame("chunk", json.dumps({"bytes": base64.b64encode(inner).decode()}).encode())


def through(dialect: str, body: bytes, framing: Framing = "sse") -> tuple[bytes, UsageRecord, bool]:
    out, rw = rewrite_stream(DIALECTS[dialect], body, framing=framing)
    return out, build_record(rw.result), rw.ended


def one(*fields: str) -> str:
    return json.dumps(list(fields))


# Events that pass each dialect's cheap byte test for usage, but whose data is JSON that is not an
# object: nothing to read.
NOT_AN_OBJECT: dict[str, tuple[Framing, bytes]] = {
    "anthropic": (
        "sse",
        sse(("message_start", one("message_start")), ("message_delta", one("message_delta"))),
    ),
    "gemini": ("sse", sse((None, one("usageMetadata")))),
    "openai_chat": ("sse", sse((None, one("usage")), (None, "[DONE]"))),
    "openai_responses": ("sse", sse(("response.completed", one("response.completed")))),
    "bedrock": ("eventstream", frame("metadata", one("usage").encode())),
}


@pytest.mark.parametrize("dialect", NOT_AN_OBJECT)
def test_an_event_that_is_not_a_json_object_passes_untouched_and_measures_nothing(dialect: str) -> None:
    framing, body = NOT_AN_OBJECT[dialect]
    out, rec, _ = through(dialect, body, framing)
    assert out == body
    assert rec.status == "unmeasured" and rec.upstream_usage is None and rec.usage_after is None
    assert rec.anomalies == ["no_final_usage"]  # read, not unparseable; simply no usage in it


# A whole body that is not a JSON object, or has no usage block: left alone, unmeasured.
NO_USAGE_BODY: dict[str, bytes] = {
    "gemini": b'[{"candidates":[],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}]',
    "openai_chat": b'{"id":"chatcmpl-t","object":"chat.completion","choices":[],"usage":null}',
    "openai_responses": b'{"id":"resp_t","object":"response","status":"failed","usage":null}',
    "anthropic": b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
}


@pytest.mark.parametrize("dialect", NO_USAGE_BODY)
def test_a_body_without_a_usage_object_is_left_alone_and_unmeasured(dialect: str) -> None:
    result = rewrite_body(DIALECTS[dialect], NO_USAGE_BODY[dialect])
    rec = build_record(result.result)
    assert result.body is None and rec.status == "unmeasured" and rec.anomalies == []


# (dialect, framing, one complete event, whether it ends the response)
END_EVENTS: dict[str, tuple[str, Framing, bytes, bool]] = {
    "anthropic: message_stop named by its event line, data cut": (
        "anthropic",
        "sse",
        sse(("message_stop", '{"type":"message_stop"')),
        True,
    ),
    "anthropic: unnamed data that only says message_stop": (
        "anthropic",
        "sse",
        sse((None, "message_stop")),
        False,
    ),
    "openai_responses: response.completed named by its event line, data cut": (
        "openai_responses",
        "sse",
        sse(("response.completed", '{"type":"response.completed"')),
        True,
    ),
    "gemini: a finishReason in data that is not JSON": (
        "gemini",
        "sse",
        sse((None, '{"candidates":[{"finishReason":')),
        False,
    ),
    "bedrock: a chunk whose bytes name the metrics but are not JSON": (
        "bedrock",
        "eventstream",
        chunk(b'{"type":"message_stop","amazon-bedrock-invocationMetrics":{'),
        False,
    ),
}


@pytest.mark.parametrize(("dialect", "framing", "event", "ends"), END_EVENTS.values(), ids=END_EVENTS.keys())
def test_an_end_event_is_told_by_its_name_when_its_data_is_not_json(
    dialect: str, framing: Framing, event: bytes, ends: bool
) -> None:
    out, _, ended = through(dialect, event, framing)
    assert out == event and ended is ends


@pytest.mark.parametrize(
    "payload",
    [
        chunk(b'{"type":"message_stop","amazon-bedrock-invocationMetrics":{'),  # not JSON inside
        frame("chunk", b'{"bytes":"not base64!"}'),
    ],
)
def test_a_bedrock_chunk_that_does_not_decode_is_flagged_and_passes(payload: bytes) -> None:
    out, rec, _ = through("bedrock", payload, "eventstream")
    assert out == payload and rec.status == "unmeasured"
    assert "bedrock_chunk_not_json" in rec.anomalies


def test_a_bedrock_metadata_frame_that_is_not_an_object_still_ends_the_stream() -> None:
    out, rec, ended = through("bedrock", frame("metadata", b"[]"), "eventstream")
    assert out == frame("metadata", b"[]") and ended and rec.status == "unmeasured"


def test_a_whole_bedrock_body_with_invocation_metrics_is_measured() -> None:
    # The last chunk of an InvokeModelWithResponseStream, decoded, as a whole body.
    body = (
        b'{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":11,'
        b'"outputTokenCount":6,"cacheReadInputTokenCount":1200,"invocationLatency":500}}'
    )
    result = rewrite_body(DIALECTS["bedrock"], body)
    rec = build_record(result.result)
    assert result.body is None and rec.status == "unchanged" and rec.final_seen
    assert rec.usage_after is not None
    assert (rec.usage_after.input_total, rec.usage_after.cache_read, rec.usage_after.total) == (
        1211,
        1200,
        1217,
    )


def anthropic_events(start: dict[str, Any], delta: dict[str, Any]) -> bytes:
    return b"".join(
        sse((e["type"], json.dumps(e, separators=(",", ":"))))
        for e in (start, delta, {"type": "message_stop"})
    )


def test_a_message_start_without_usage_leaves_the_delta_as_it_came() -> None:
    # A translator that opens the message bare: the delta's snapshot is all there is (R4 has
    # nothing to carry over, and nothing is invented).
    body = anthropic_events(
        {"type": "message_start", "message": {"id": "msg_t", "model": "claude-t"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"input_tokens": 11, "output_tokens": 6},
        },
    )
    out, rec, ended = through("anthropic", body)
    assert out == body and ended and rec.status == "unchanged" and rec.rules == []
    assert rec.usage_after is not None and (rec.usage_after.input_total, rec.usage_after.total) == (11, 17)


def test_a_message_delta_without_usage_leaves_the_stream_unmeasured() -> None:
    # message_start's output count is a partial one: without a delta's, the final usage is unknown.
    body = anthropic_events(
        {
            "type": "message_start",
            "message": {"id": "msg_t", "usage": {"input_tokens": 11, "output_tokens": 1}},
        },
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
    )
    out, rec, ended = through("anthropic", body)
    assert out == body and ended and rec.status == "unmeasured" and rec.final_seen is False
    assert rec.usage_after is not None and rec.usage_after.input_total == 11  # the partial, kept


def test_done_makes_only_a_seen_snapshot_final() -> None:
    # R8: `[DONE]` ends the stream; it measures nothing by itself. (The rewriter shows a session
    # every event its byte test lets through, `[DONE]` included.)
    tally = Tally()
    session = DIALECTS["openai_chat"].stream_session(tally, Context())
    assert session.normalize_event(None, "[DONE]") is None
    assert (tally.snapshots, tally.final_seen) == (0, False)
    partial = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    unfinished = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}], "usage": partial}
    assert session.normalize_event(None, json.dumps(unfinished)) is None
    assert (tally.snapshots, tally.final_seen) == (1, False)
    assert session.normalize_event(None, "[DONE]") is None
    assert tally.final_seen is True


def test_r4_fills_a_delta_in_and_keeps_its_own_keys_in_their_order() -> None:
    start_usage = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 9511,
        "output_tokens": 1,
    }
    body = anthropic_events(
        {"type": "message_start", "message": {"id": "msg_t", "model": "claude-t", "usage": start_usage}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"server_tool_use": {"web_search_requests": 1}, "output_tokens": 20},
        },
    )
    out, rec, _ = through("anthropic", body)
    delta = json.loads(out.split(b"data: ")[2].split(b"\n")[0])
    assert list(delta["usage"]) == [
        "server_tool_use",  # the delta's own key stays first
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    ]
    assert delta["usage"]["cache_read_input_tokens"] == 9511 and [r.rule for r in rec.rules] == ["R4"]


def test_r4_puts_the_known_ttl_split_in_place_of_a_null_one() -> None:
    split = {"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 0}
    start_usage = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 1200,
        "cache_creation": split,
        "output_tokens": 1,
    }
    body = anthropic_events(
        {"type": "message_start", "message": {"id": "msg_t", "model": "claude-t", "usage": start_usage}},
        {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 20, "cache_creation": None}},
    )
    out, rec, _ = through("anthropic", body)
    usage = json.loads(out.split(b"data: ")[2].split(b"\n")[0])["usage"]
    assert usage == {
        "input_tokens": 3,
        "cache_creation_input_tokens": 1200,
        "output_tokens": 20,
        "cache_creation": split,
    }
    assert "cache_creation_split_mismatch" not in rec.anomalies
