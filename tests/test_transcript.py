"""What responses and requests say beside usage: models, ids, tool calls, provider cost."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagefix import transcript
from usagefix.conversation import RequestFacts, read_request
from usagefix.exchange import ResponseFacts
from usagefix.framing.eventstream import encode_frame
from usagefix.transcript import model_requested, read_response

SSE = "text/event-stream"
JSON = "application/json"
EVENTSTREAM = "application/vnd.amazon.eventstream"


def sse(*events: tuple[str | None, Any]) -> bytes:
    out = b""
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        out += ((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode()
    return out


def frame(kind: str, payload: bytes) -> bytes:
    def header(name: str, value: str) -> bytes:
        n, v = name.encode(), value.encode()
        return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v

    return encode_frame(header(":event-type", kind) + header(":message-type", "event"), payload)


ANTHROPIC_STREAM = b": keep-alive\n\n" + sse(
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look."}},
    ),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_A", "name": "read", "input": {}},
        },
    ),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_B", "name": "grep", "input": {}},
        },
    ),
    (
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}},
    ),
    ("message_stop", {"type": "message_stop"}),
)

ANTHROPIC_JSON = json.dumps(
    {
        "id": "msg_02",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-6",
        "content": [
            {"type": "text", "text": "ok"},
            {"type": "tool_use", "id": "toolu_C", "name": "ls", "input": {}},
            {"type": "server_tool_use", "id": "srvtoolu_X", "name": "web_search", "input": {}},
        ],
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
).encode()

CHAT_STREAM = sse(
    (
        None,
        {
            "id": "gen-1",
            "object": "chat.completion.chunk",
            "model": "anthropic/claude-sonnet-4.5",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": ""},
                            }
                        ],
                    },
                }
            ],
        },
    ),
    (
        None,
        {
            "id": "gen-1",
            "object": "chat.completion.chunk",
            "model": "anthropic/claude-sonnet-4.5",
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}
            ],
        },
    ),
    (
        None,
        {
            "id": "gen-1",
            "object": "chat.completion.chunk",
            "model": "anthropic/claude-sonnet-4.5",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ],
        },
    ),
    (
        None,
        '{"id":"gen-1","object":"chat.completion.chunk","model":"anthropic/claude-sonnet-4.5","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"cost":0.000123456789012345}}',
    ),
    (None, "[DONE]"),
)

CHAT_JSON = json.dumps(
    {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_J", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
).encode()

RESPONSE_OBJ = {
    "id": "resp_1",
    "object": "response",
    "model": "gpt-5-codex",
    "status": "completed",
    "output": [
        {"type": "reasoning", "id": "rs_1"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_R1", "name": "shell", "arguments": "{}"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_R2", "name": "apply_patch", "input": ""},
    ],
    "usage": {"input_tokens": 5, "output_tokens": 6},
}
RESPONSES_STREAM = sse(
    (
        "response.created",
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": {**RESPONSE_OBJ, "status": "in_progress", "output": []},
        },
    ),
    (
        "response.output_item.added",
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_R1",
                "name": "shell",
                "arguments": "",
            },
        },
    ),
    (
        "response.output_item.done",
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_R1",
                "name": "shell",
                "arguments": "{}",
            },
        },
    ),
    (
        "response.output_item.done",
        {"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "id": "msg_x"}},
    ),
    ("response.completed", {"type": "response.completed", "sequence_number": 9, "response": RESPONSE_OBJ}),
)

GEMINI_CHUNKS = [
    {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"id": "fc-g1", "name": "lookup", "args": {}}}],
                }
            }
        ],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "gem-r1",
    },
    {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "no_id", "args": {}}}, {"text": "x"}],
                }
            }
        ],
        "usageMetadata": {"promptTokenCount": 3},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "gem-r1",
    },
]

CONVERSE_STREAM = (
    frame("messageStart", b'{"role":"assistant"}')
    + frame(
        "contentBlockStart",
        b'{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"tooluse_B1","name":"f"}}}',
    )
    + frame("contentBlockStop", b'{"contentBlockIndex":0}')
    + frame("messageStop", b'{"stopReason":"tool_use"}')
    + frame(
        "metadata", b'{"usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3},"metrics":{"latencyMs":1}}'
    )
)


def chunk(event: dict[str, Any]) -> bytes:
    return frame(
        "chunk", json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    )


INVOKE_STREAM = (
    chunk(
        {
            "type": "message_start",
            "message": {"id": "msg_bd", "model": "claude-sonnet-4-5-20250929", "content": []},
        }
    )
    + chunk(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_BD", "name": "f", "input": {}},
        }
    )
    + frame("chunk", b'{"bytes":"not base64!"}')
    + frame("chunk", json.dumps({"bytes": base64.b64encode(b"[1]").decode()}).encode())
    + chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 1}})
)

CASES = [
    (
        "anthropic",
        SSE,
        ANTHROPIC_STREAM,
        ResponseFacts("claude-sonnet-4-5-20250929", "msg_01", ("toolu_A", "toolu_B")),
    ),
    ("anthropic", JSON, ANTHROPIC_JSON, ResponseFacts("claude-opus-4-6", "msg_02", ("toolu_C",))),
    (
        "openai_chat",
        "text/event-stream; charset=utf-8",
        CHAT_STREAM,
        ResponseFacts(
            "anthropic/claude-sonnet-4.5", "gen-1", ("call_1", "call_2"), Decimal("0.000123456789012345")
        ),
    ),
    ("openai_chat", JSON, CHAT_JSON, ResponseFacts("gpt-4o-2024-08-06", "chatcmpl-9", ("call_J",))),
    (
        "openai_responses",
        SSE,
        RESPONSES_STREAM,
        ResponseFacts("gpt-5-codex", "resp_1", ("call_R1", "call_R2")),
    ),
    (
        "openai_responses",
        JSON,
        json.dumps(RESPONSE_OBJ).encode(),
        ResponseFacts("gpt-5-codex", "resp_1", ("call_R1", "call_R2")),
    ),
    (
        "gemini",
        JSON,
        json.dumps(GEMINI_CHUNKS).encode(),
        ResponseFacts("gemini-2.5-flash", "gem-r1", ("fc-g1",)),
    ),
    (
        "gemini",
        SSE,
        sse(*[(None, c) for c in GEMINI_CHUNKS]),
        ResponseFacts("gemini-2.5-flash", "gem-r1", ("fc-g1",)),
    ),
    (
        "gemini",
        JSON,
        json.dumps(GEMINI_CHUNKS[0]).encode(),
        ResponseFacts("gemini-2.5-flash", "gem-r1", ("fc-g1",)),
    ),
    ("bedrock", EVENTSTREAM, CONVERSE_STREAM, ResponseFacts(None, None, ("tooluse_B1",))),
    (
        "bedrock",
        EVENTSTREAM,
        INVOKE_STREAM,
        ResponseFacts("claude-sonnet-4-5-20250929", "msg_bd", ("toolu_BD",)),
    ),
    (
        "bedrock",
        JSON,
        json.dumps(
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [
                            {"text": "a"},
                            {"toolUse": {"toolUseId": "tooluse_J", "name": "f", "input": {}}},
                        ],
                    }
                },
                "stopReason": "tool_use",
                "usage": {"inputTokens": 1},
            }
        ).encode(),
        ResponseFacts(None, None, ("tooluse_J",)),
    ),
    ("bedrock", JSON, ANTHROPIC_JSON, ResponseFacts("claude-opus-4-6", "msg_02", ("toolu_C",))),
]


@pytest.mark.parametrize(("dialect", "content_type", "body", "expected"), CASES)
def test_each_dialect_gives_its_model_id_tool_calls_and_cost(
    dialect: str, content_type: str, body: bytes, expected: ResponseFacts
) -> None:
    assert read_response(dialect, content_type, body) == expected


def test_openrouter_cost_is_exact_and_the_last_one_wins() -> None:
    body = sse(
        (None, {"id": "g", "choices": [], "usage": {"cost": "0.5"}}),
        (None, {"id": "g", "choices": [], "usage": {"cost": 2}}),
    )
    assert read_response("openai_chat", SSE, body).provider_cost == Decimal(2)
    for bad in ('"abc"', "true", "null", '"NaN"', "[1]"):
        text = f'{{"id":"g","choices":[],"usage":{{"cost":{bad}}}}}'
        assert read_response("openai_chat", JSON, text.encode()).provider_cost is None


def test_a_stream_cut_off_keeps_what_came_before() -> None:
    cut = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"toolu_B") + 3]
    assert read_response("anthropic", SSE, cut) == ResponseFacts(
        "claude-sonnet-4-5-20250929", "msg_01", ("toolu_A",)
    )


@pytest.mark.parametrize(
    "body", [None, b"", b"not json", b"[1, 2", b'"a string"', b"{" * 100_000 + b"}" * 100_000, b"\xff\xfe"]
)
def test_bad_bodies_give_empty_facts(body: bytes | None) -> None:
    for dialect in ("anthropic", "openai_chat", "openai_responses", "gemini", "bedrock", "unknown"):
        assert read_response(dialect, JSON, body) == ResponseFacts()


@given(st.binary(max_size=300), st.sampled_from([SSE, JSON, EVENTSTREAM, None]))
def test_read_response_never_raises(body: bytes, content_type: str | None) -> None:
    for dialect in ("anthropic", "openai_chat", "openai_responses", "gemini", "bedrock"):
        assert isinstance(read_response(dialect, content_type, body), ResponseFacts)


def test_model_requested_from_body_or_path() -> None:
    assert model_requested("openai_chat", "/v1/chat/completions", {"model": "gpt-4o"}) == "gpt-4o"
    assert model_requested("openai_chat", "/v1/chat/completions", {"model": ""}) is None
    assert model_requested("openai_chat", "/v1/chat/completions", None) is None
    gem = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    assert model_requested("gemini", gem, {"contents": []}) == "gemini-2.5-pro"
    bed = "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream"
    assert model_requested("bedrock", bed, {}) == "us.anthropic.claude-sonnet-4-20250514-v1:0"
    vertex = "/v1/projects/p/locations/l/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"
    assert model_requested("anthropic", vertex, {"messages": []}) == "claude-sonnet-4@20250514"
    # A Realtime WebSocket names its model only in the upgrade's query.
    assert model_requested("openai_realtime", "/v1/realtime?model=gpt-realtime", None) == "gpt-realtime"
    assert model_requested("openai_realtime", "/v1/realtime?model=", None) is None


# --- the request side ---------------------------------------------------------------------------


def test_anthropic_request_trailing_tool_results_and_fingerprint() -> None:
    first = {
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "fix the bug"},
                ],
            }
        ],
    }
    later = {
        **first,
        "messages": [
            *first["messages"],
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_A", "name": "r", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_A", "content": "..."},
                    {"type": "tool_result", "tool_use_id": "toolu_B"},
                    {"type": "text", "text": "go on"},
                ],
            },
        ],
    }
    a, b = read_request("anthropic", first), read_request("anthropic", later)
    assert a.tool_result_ids == () and b.tool_result_ids == ("toolu_A", "toolu_B")
    assert a.fingerprint is not None and a.fingerprint == b.fingerprint
    other = read_request("anthropic", {**first, "system": "another agent"})
    assert other.fingerprint != a.fingerprint
    # Only reminders in the user turn: nothing to fingerprint.
    only = {"messages": [{"role": "user", "content": "<system-reminder>x</system-reminder>"}]}
    assert read_request("anthropic", only).fingerprint is None


def test_chat_request_trailing_tool_messages() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "tool_calls": [{"id": "call_1"}, {"id": "call_2"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a"},
            {"role": "tool", "tool_call_id": "call_2", "content": "b"},
        ]
    }
    facts = read_request("openai_chat", body)
    assert facts.tool_result_ids == ("call_1", "call_2") and facts.fingerprint is not None
    # A user turn after the tool results: they are no longer trailing.
    body["messages"].append({"role": "user", "content": "and now?"})
    assert read_request("openai_chat", body).tool_result_ids == ()


def test_responses_request_outputs_previous_id_and_string_input() -> None:
    body = {
        "previous_response_id": "resp_1",
        "input": [
            {"type": "function_call_output", "call_id": "call_R1", "output": "ok"},
            {"type": "custom_tool_call_output", "call_id": "call_R2"},
        ],
    }
    assert read_request("openai_responses", body) == RequestFacts(("call_R1", "call_R2"), "resp_1", None)
    a = read_request("openai_responses", {"instructions": "be brief", "input": "hi"})
    b = read_request(
        "openai_responses",
        {
            "input": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            ]
        },
    )
    assert a.fingerprint is not None and a.fingerprint == b.fingerprint
    assert (
        read_request("openai_responses", {"previous_response_id": "", "input": "x"}).previous_response_id
        is None
    )


def test_gemini_and_bedrock_requests() -> None:
    gem = {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [{"functionCall": {"id": "fc-g1"}}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "fc-g1", "name": "f", "response": {}}},
                    {"functionResponse": {"name": "no_id"}},
                ],
            },
        ],
    }
    facts = read_request("gemini", gem)
    assert facts.tool_result_ids == ("fc-g1",) and facts.fingerprint is not None
    assert read_request("gemini", {"contents": []}) == RequestFacts()
    converse = {
        "system": [{"text": "s"}],
        "messages": [
            {"role": "user", "content": [{"text": "q"}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_B1", "content": []}}]},
        ],
    }
    assert read_request("bedrock", converse).tool_result_ids == ("tooluse_B1",)
    invoke = {
        "anthropic_version": "bedrock-2023-05-31",
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_BD"}]}],
    }
    assert read_request("bedrock", invoke).tool_result_ids == ("toolu_BD",)
    assert read_request("bedrock", {"messages": [{"role": "assistant", "content": []}]}) == RequestFacts()


@pytest.mark.parametrize("body", [None, [], "x", {"messages": "x"}, {"messages": [1, None]}, {"input": 3}])
def test_bad_request_bodies_give_empty_facts(body: Any) -> None:
    for dialect in ("anthropic", "openai_chat", "openai_responses", "gemini", "bedrock", "unknown"):
        assert read_request(dialect, body) == RequestFacts()


_STREAM_TYPES = {".sse": "text/event-stream", ".ndjson": "application/x-ndjson", ".jsonarray": JSON}
_GOLDEN = Path(__file__).parent.parent / "flows" / "golden"
_GOLDEN_STREAMS = sorted(p for p in _GOLDEN.glob("*/*.upstream.*") if p.suffix in _STREAM_TYPES)


@pytest.mark.parametrize("path", _GOLDEN_STREAMS, ids=lambda p: f"{p.parent.name}/{p.name.split('.')[0]}")
def test_the_byte_test_for_later_events_changes_no_fact(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dialect's `later` needles let the thousands of text deltas of a long stream go unparsed
    # once its model and id are known: the facts read are those of reading every event.
    dialect, content_type, body = path.parent.name, _STREAM_TYPES[path.suffix], path.read_bytes()
    fast = read_response(dialect, content_type, body)
    everything = {name: dataclasses.replace(r, later=None) for name, r in transcript.READERS.items()}
    monkeypatch.setattr(transcript, "READERS", everything)
    assert read_response(dialect, content_type, body) == fast


def test_a_long_chat_stream_is_read_without_parsing_its_text_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    first = {"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "delta": {"content": "a"}}]}
    delta = {"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "delta": {"content": "b"}}]}
    call = {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"tool_calls": [{"id": "call_1"}]}}]}
    events = [first, *[delta] * 500, call]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    parsed: list[str] = []
    real = json.loads
    monkeypatch.setattr(transcript.json, "loads", lambda s, **kw: parsed.append(s) or real(s, **kw))
    assert read_response("openai_chat", "text/event-stream", body) == ResponseFacts(
        "m", "chatcmpl-1", ("call_1",)
    )
    assert len(parsed) == 2  # the first chunk and the tool call
