"""Each dialect's own readers (`READERS` in its module): what the one-module providers' requests
and responses say, read through the registry by the transcript and the session tracker."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from usagefix.conversation import RequestFacts, read_request
from usagefix.dialects import NAMES, SPECS
from usagefix.dialects.readers import NO_READERS, Readers, trailing
from usagefix.dialects.registry import READERS, _readers
from usagefix.exchange import ExchangeFacts, ResponseFacts
from usagefix.sessions import SessionTracker
from usagefix.transcript import model_requested, read_response

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
JSON = "application/json"


def ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def ollama_call(call_id: str | None, name: str = "grep") -> dict[str, Any]:
    call: dict[str, Any] = {"function": {"index": 0, "name": name, "arguments": {"pattern": "usage"}}}
    return call if call_id is None else {"id": call_id, **call}


OLLAMA_TOOL_STREAM = ndjson(
    {"model": "qwen3:8b", "created_at": "t", "message": {"role": "assistant", "content": ""}, "done": False},
    {
        "model": "qwen3:8b",
        "created_at": "t",
        "message": {"role": "assistant", "content": "", "tool_calls": [ollama_call("call_o1"), ollama_call("call_o2")]},
        "done": False,
    },
    {"model": "qwen3:8b", "message": {"role": "assistant", "content": ""}, "done": True,
     "done_reason": "stop", "prompt_eval_count": 120, "eval_count": 30},
)  # fmt: skip

COHERE_TOOL_STREAM = sse(
    {"id": "c0ffee-1", "type": "message-start",
     "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}},
    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will search"}}},
    {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
        "id": "web_search_1", "type": "function", "function": {"name": "web_search", "arguments": ""}}}}},
    {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}}},
    {"type": "tool-call-end", "index": 0},
    {"type": "tool-call-start", "index": 1, "delta": {"message": {"tool_calls": {
        "id": "web_search_2", "type": "function", "function": {"name": "web_search", "arguments": ""}}}}},
    {"type": "tool-call-end", "index": 1},
    {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
        "billed_units": {"input_tokens": 30, "output_tokens": 12},
        "tokens": {"input_tokens": 800, "output_tokens": 40}, "cached_tokens": 0}}},
)  # fmt: skip

COHERE_TOOL_JSON = json.dumps(
    {
        "id": "c0ffee-2",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "tool_plan": "I will search",
            "tool_calls": [
                {
                    "id": "web_search_3",
                    "type": "function",
                    "function": {"name": "web_search", "arguments": "{}"},
                }
            ],
        },
        "usage": {
            "billed_units": {"input_tokens": 5, "output_tokens": 2},
            "tokens": {"input_tokens": 9, "output_tokens": 2},
        },
    }
).encode()

REALTIME_DONE = json.dumps(
    {
        "type": "response.done",
        "event_id": "event_9",
        "response": {
            "object": "realtime.response",
            "id": "resp_rt_1",
            "status": "completed",
            "output": [
                {"id": "item_1", "type": "message", "role": "assistant", "content": []},
                {
                    "id": "item_2",
                    "type": "function_call",
                    "call_id": "call_rt_1",
                    "name": "f",
                    "arguments": "{}",
                },
            ],
            "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        },
    }
).encode()


@pytest.mark.parametrize(
    ("dialect", "content_type", "body", "expected"),
    [
        # Ollama: the model on every line, tool calls by the `id` Ollama ≥ 0.12.10 gives them.
        ("ollama", NDJSON, OLLAMA_TOOL_STREAM, ResponseFacts("qwen3:8b", None, ("call_o1", "call_o2"))),
        (
            "ollama",
            JSON,
            json.dumps({"model": "llama3.2", "response": "hi", "done": True, "eval_count": 1}).encode(),
            ResponseFacts("llama3.2", None, ()),
        ),
        # An older server's calls have no id: nothing to index, nothing invented.
        (
            "ollama",
            NDJSON,
            ndjson({"model": "m", "message": {"tool_calls": [ollama_call(None), "odd"]}, "done": True}),
            ResponseFacts("m", None, ()),
        ),
        ("ollama", NDJSON, ndjson({"model": "m", "message": "odd", "done": True}), ResponseFacts("m")),
        # Cohere: the id on `message-start`, each call on its `tool-call-start`; no model, ever.
        (
            "cohere",
            SSE,
            COHERE_TOOL_STREAM,
            ResponseFacts(None, "c0ffee-1", ("web_search_1", "web_search_2")),
        ),
        ("cohere", JSON, COHERE_TOOL_JSON, ResponseFacts(None, "c0ffee-2", ("web_search_3",))),
        (
            "cohere",
            SSE,
            sse(
                {"type": "tool-call-start", "delta": "odd"},
                {"type": "tool-call-start", "delta": {"message": 3}},
            ),
            ResponseFacts(),
        ),
        # Realtime: one server message, `response.done`.
        ("openai_realtime", None, REALTIME_DONE, ResponseFacts(None, "resp_rt_1", ("call_rt_1",))),
        ("openai_realtime", None, b'{"type": "response.created", "response": {"id": "r"}}', ResponseFacts()),
        ("openai_realtime", None, b'{"type": "response.done", "response": null}', ResponseFacts()),
    ],
)
def test_the_one_module_providers_report_their_model_id_and_tool_calls(
    dialect: str, content_type: str | None, body: bytes, expected: ResponseFacts
) -> None:
    assert read_response(dialect, content_type, body) == expected


def test_an_ndjson_stream_cut_mid_line_keeps_the_lines_before() -> None:
    cut = OLLAMA_TOOL_STREAM[: OLLAMA_TOOL_STREAM.index(b'"done": true') - 5]
    assert read_response("ollama", NDJSON, cut) == ResponseFacts("qwen3:8b", None, ("call_o1", "call_o2"))


def test_the_model_asked_for_is_the_bodys_for_the_new_providers() -> None:
    assert model_requested("ollama", "/api/chat", {"model": "qwen3:8b", "messages": []}) == "qwen3:8b"
    assert model_requested("cohere", "/v2/chat", {"model": "command-a-03-2025"}) == "command-a-03-2025"
    # Only a dialect whose paths name the model reads it there.
    assert model_requested("ollama", "/x/models/y:z", {}) is None


# -- requests ------------------------------------------------------------------------------------

OLLAMA_FIRST = {
    "model": "qwen3:8b",
    "messages": [
        {"role": "system", "content": "You are a grep agent."},
        {"role": "user", "content": "where is usage computed?"},
    ],
    "stream": True,
}
OLLAMA_LATER = {
    **OLLAMA_FIRST,
    "messages": [
        *OLLAMA_FIRST["messages"],
        {"role": "assistant", "content": "", "tool_calls": [ollama_call("call_o1"), ollama_call("call_o2")]},
        {"role": "tool", "tool_call_id": "call_o1", "tool_name": "grep", "content": "normalize.py"},
        {"role": "tool", "tool_call_id": "call_o2", "tool_name": "grep", "content": "record.py"},
    ],
}


def test_ollama_requests_say_their_trailing_tool_results_and_fingerprint() -> None:
    first, later = read_request("ollama", OLLAMA_FIRST), read_request("ollama", OLLAMA_LATER)
    assert first.tool_result_ids == () and first.fingerprint is not None
    assert later == RequestFacts(("call_o1", "call_o2"), None, first.fingerprint)
    # A tool result named only by its tool (`tool_name`, older clients): a name is no id.
    by_name = {**OLLAMA_LATER, "messages": [*OLLAMA_FIRST["messages"], {"role": "tool", "tool_name": "grep"}]}
    assert read_request("ollama", by_name).tool_result_ids == ()
    # /api/generate: its `system` and `prompt`.
    generate = read_request("ollama", {"model": "m", "system": "be brief", "prompt": "why is the sky blue?"})
    assert generate.tool_result_ids == () and generate.fingerprint is not None
    assert read_request("ollama", {"model": "m", "prompt": ""}) == RequestFacts()


COHERE_FIRST = {
    "model": "command-a-03-2025",
    "messages": [
        {"role": "system", "content": "You are a research agent."},
        {"role": "user", "content": [{"type": "text", "text": "what is new in usage accounting?"}]},
    ],
}
COHERE_LATER = {
    **COHERE_FIRST,
    "messages": [
        *COHERE_FIRST["messages"],
        {
            "role": "assistant",
            "tool_plan": "I will search",
            "tool_calls": [
                {
                    "id": "web_search_1",
                    "type": "function",
                    "function": {"name": "web_search", "arguments": "{}"},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "web_search_1",
            "content": [{"type": "document", "document": {"data": "{}"}}],
        },
    ],
}


def test_cohere_requests_say_their_trailing_tool_results_and_fingerprint() -> None:
    first, later = read_request("cohere", COHERE_FIRST), read_request("cohere", COHERE_LATER)
    assert first.tool_result_ids == () and first.fingerprint is not None
    assert later == RequestFacts(("web_search_1",), None, first.fingerprint)
    other = read_request(
        "cohere",
        {**COHERE_FIRST, "messages": [{"role": "system", "content": "x"}, *COHERE_FIRST["messages"][1:]]},
    )
    assert other.fingerprint != first.fingerprint


def test_realtime_turns_have_no_request_reader() -> None:
    # A turn's request is the client's last message (`response.create`); the tool results went
    # earlier, in their own messages: nothing here to read.
    assert read_request("openai_realtime", {"type": "response.create"}) == RequestFacts()


def facts(n: int, body: dict[str, Any]) -> ExchangeFacts:
    return ExchangeFacts(
        flow_id=f"f{n}", ts_start=float(n), ts_end=float(n), method="POST", scheme="http",
        host="127.0.0.1", port=11434, path="/api/chat", request_headers=(("user-agent", "python-httpx/0.28"),),
        request_body=body, status_code=200, response_content_type=NDJSON, response_body=None, error=None,
    )  # fmt: skip


def test_an_ollama_tool_result_links_its_step_to_the_call_even_with_another_prefix() -> None:
    tracker = SessionTracker()
    first = tracker.step(
        facts(0, OLLAMA_FIRST), "ollama", read_response("ollama", NDJSON, OLLAMA_TOOL_STREAM)
    )
    # The next step's first user message differs (a client that trims history): only the tool
    # result ties it to the call.
    trimmed = {
        **OLLAMA_LATER,
        "messages": [{"role": "user", "content": "go on"}, *OLLAMA_LATER["messages"][2:]],
    }
    later = tracker.step(facts(1, trimmed), "ollama", ResponseFacts())
    assert (first.source, later.source) == ("fingerprint", "tool_call")
    assert later.key == first.key and later.parent_exchange_id == "f0"


# -- the registry --------------------------------------------------------------------------------


def test_every_dialect_has_readers_and_the_new_ones_read_both_sides() -> None:
    assert set(READERS) == set(NAMES)
    assert all(READERS[n].response is not None for n in NAMES)
    assert all(READERS[n].request is not None for n in NAMES if n != "openai_realtime")


def test_readers_that_are_not_readers_are_refused() -> None:
    module = ModuleType("usagefix.dialects.fake")
    assert _readers(module) is NO_READERS
    module.READERS = Readers()  # type: ignore[attr-defined]
    assert _readers(module) == Readers()
    module.READERS = {"request": None}  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"usagefix\.dialects\.fake\.READERS is a dict, not Readers"):
        _readers(module)


def test_trailing_is_the_run_at_the_end() -> None:
    items: list[dict[str, Any]] = [{"k": 1}, {"k": 0}, {"k": 1}, {"k": 1}]
    assert trailing(items, lambda i: i["k"] == 1) == [{"k": 1}, {"k": 1}]
    assert trailing(items, lambda i: i["k"] == 2) == []
    assert trailing([{"k": 1}], lambda i: i["k"] == 1) == [{"k": 1}]


def test_each_dialects_price_provider_is_data_in_its_spec() -> None:
    assert {n: SPECS[n].price_provider for n in NAMES} == {
        "openai_chat": "openai",
        "openai_responses": "openai",
        "openai_realtime": "openai",
        "anthropic": "anthropic",
        "gemini": "google",
        "ollama": None,  # genai-prices has no Ollama provider: local models
        "cohere": "cohere",
        "bedrock": "aws",
    }
    assert {n for n in NAMES if SPECS[n].model_in_path} == {"anthropic", "gemini", "bedrock"}
