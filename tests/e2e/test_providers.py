"""End to end, the providers that are one module of data: Ollama native (NDJSON) and Cohere v2,
over raw HTTP through a real mitmdump in front of the emulator; their tool loops through the
ledger and `usagefix report`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from genai_prices import Usage, calc_price
from upstream import Scenario, Upstream, awkward_cuts

from conftest import ROOT, Proxy, start_mitmdump, stop

pytestmark = pytest.mark.e2e

GOLDEN = ROOT / "flows" / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def streamed(name: str, content_type: str) -> Scenario:
    body = golden(name)
    cuts = [body[i : i + 1] for i in range(len(body))] if len(body) < 400 else awkward_cuts(body)
    return Scenario(body=body, content_type=content_type, chunks=cuts)


@pytest.mark.parametrize(
    ("name", "path", "content_type"),
    [
        ("ollama/ok-chat-stream.upstream.ndjson", "/api/chat", "application/x-ndjson"),
        ("ollama/ok-generate.upstream.json", "/api/generate", "application/json; charset=utf-8"),
        ("cohere/ok-chat-stream.upstream.sse", "/v2/chat", "text/event-stream"),
        ("cohere/ok-chat.upstream.json", "/v2/chat", "application/json"),
    ],
)
def test_correct_providers_pass_byte_for_byte_and_are_measured(
    proxy: Proxy, upstream: Upstream, name: str, path: str, content_type: str
) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    body = golden(name)
    upstream.scenario = (
        streamed(name, content_type)
        if not name.endswith(".json")
        else Scenario(body=body, content_type=content_type)
    )
    with httpx.Client(timeout=20) as c:
        assert c.post(proxy.url + path, json={"model": "m"}).content == body
    rec = proxy.wait_for_flows(n + 1)[-1].metadata["usagefix"]
    expect = json.loads(
        (GOLDEN / name.replace(".upstream." + name.rsplit(".", 1)[1], ".expect.json")).read_text()
    )
    assert (rec["dialect"], rec["status"]) == (name.split("/")[0], "unchanged")
    assert {k: v for k, v in rec["usage_after"].items() if v is not None} == expect["usage_after"]


def test_ollama_stream_is_repaired_line_by_line(proxy: Proxy, upstream: Upstream) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    name = "ollama/fix-negative-eval-count-crlf.upstream.ndjson"
    upstream.scenario = streamed(name, "application/x-ndjson")
    lines = []
    with httpx.Client(timeout=20) as c, c.stream("POST", proxy.url + "/api/generate", json={}) as r:
        for line in r.iter_lines():
            lines.append(json.loads(line))
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 0
    assert "total_tokens" not in lines[-1]  # a key Ollama never sends
    f = proxy.wait_for_flows(n + 1)[-1]
    assert f.response is not None
    assert f.response.content == golden("ollama/fix-negative-eval-count-crlf.client.ndjson")
    rec = f.metadata["usagefix"]
    assert (rec["status"], [r["rule"] for r in rec["rules"]]) == ("rewritten", ["I4"])


def test_ollama_whole_prompt_cached_is_unmeasured_not_zero(proxy: Proxy, upstream: Upstream) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    name = "ollama/ok-whole-prompt-cached.upstream.ndjson"
    upstream.scenario = streamed(name, "application/x-ndjson")
    with httpx.Client(timeout=20) as c:
        assert c.post(proxy.url + "/api/chat", json={}).content == golden(name)
    rec = proxy.wait_for_flows(n + 1)[-1].metadata["usagefix"]
    assert (rec["status"], rec["usage_after"]) == ("unmeasured", None)
    assert "unreported:prompt_eval_count" in rec["anomalies"]


def test_cohere_stream_is_repaired_billed_units_untouched(proxy: Proxy, upstream: Upstream) -> None:
    name = "cohere/fix-cache-outside-input.upstream.sse"
    upstream.scenario = streamed(name, "text/event-stream")
    with httpx.Client(timeout=20) as c:
        out = c.post(proxy.url + "/v2/chat", json={"stream": True}).content
    assert out == golden("cohere/fix-cache-outside-input.client.sse")
    assert b'"billed_units":{"input_tokens":9,"output_tokens":6}' in out
    assert b'"tokens":{"input_tokens":75,' in out


# -- tool loops: one session each, the model reported, priced by the dialect's own provider ------

USAGEFIX = Path(sys.executable).with_name("usagefix")
SYSTEM = {"role": "system", "content": "You are a grep agent."}


def ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def ollama_step(model: str, prompt: int, output: int, call_id: str | None) -> bytes:
    """Ollama's native stream: content lines, the tool call (with the id Ollama ≥ 0.12.10 gives
    it) on a line of its own, then the `done` line with the counts."""
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    if call_id:
        message["tool_calls"] = [
            {"id": call_id, "function": {"index": 0, "name": "grep", "arguments": {"p": "usage"}}}
        ]
    return ndjson(
        {"model": model, "created_at": "2026-12-02T02:00:00Z", "message": message, "done": False},
        {"model": model, "created_at": "2026-12-02T02:00:01Z", "message": {"role": "assistant", "content": ""},
         "done": True, "done_reason": "stop", "total_duration": 1, "prompt_eval_count": prompt,
         "prompt_eval_duration": 1, "eval_count": output, "eval_duration": 1},
    )  # fmt: skip


def cohere_step(n: int, tokens_in: int, billed_in: int, output: int, call_id: str | None) -> bytes:
    """Cohere v2's stream: `message-start` with the response id, a `tool-call-start` per call,
    `message-end` with the usage."""
    events: list[dict[str, Any]] = [
        {"id": f"cohere-resp-{n}", "type": "message-start", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}},
    ]  # fmt: skip
    if call_id:
        events += [
            {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will search."}}},
            {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
                "id": call_id, "type": "function", "function": {"name": "web_search", "arguments": ""}}}}},
            {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}}},
            {"type": "tool-call-end", "index": 0},
        ]  # fmt: skip
    else:
        events += [
            {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Found it."}}}},
            {"type": "content-end", "index": 0},
        ]  # fmt: skip
    events.append(
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL" if call_id else "COMPLETE", "usage": {
            "billed_units": {"input_tokens": billed_in, "output_tokens": output},
            "tokens": {"input_tokens": tokens_in, "output_tokens": output}, "cached_tokens": 0}}}
    )  # fmt: skip
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


# (prompt or processed tokens, billed input, output, the tool call the step emits)
OLLAMA_STEPS = [(420, 0, 35, "call_ollama_1"), (610, 0, 22, None)]
COHERE_STEPS = [(1200, 900, 40, "web_search_c1"), (1500, 1180, 60, None)]


def run_ollama_loop(url: str, upstream: Upstream, c: httpx.Client) -> None:
    messages: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": "where is usage computed?"}]
    for prompt, _, output, call_id in OLLAMA_STEPS:
        body = ollama_step("qwen3:8b", prompt, output, call_id)
        upstream.scenario = Scenario(
            body=body, content_type="application/x-ndjson", chunks=awkward_cuts(body)
        )
        request = {"model": "qwen3:8b", "messages": messages, "stream": True}
        lines = [json.loads(line) for line in c.post(url + "/api/chat", json=request).content.splitlines()]
        assert lines[-1]["done"] is True
        if call_id:
            messages = [
                *messages,
                {"role": "assistant", "content": "", "tool_calls": lines[0]["message"]["tool_calls"]},
                {"role": "tool", "tool_call_id": call_id, "tool_name": "grep", "content": "normalize.py"},
            ]


def run_cohere_loop(url: str, upstream: Upstream, c: httpx.Client) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a research agent."},
        {"role": "user", "content": [{"type": "text", "text": "what is new in usage accounting?"}]},
    ]
    for n, (tokens_in, billed_in, output, call_id) in enumerate(COHERE_STEPS):
        body = cohere_step(n, tokens_in, billed_in, output, call_id)
        upstream.scenario = Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body))
        request = {"model": "command-a-03-2025", "messages": messages, "stream": True}
        assert c.post(url + "/v2/chat", json=request).content == body
        if call_id:
            messages = [
                *messages,
                {"role": "assistant", "tool_plan": "I will search.", "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": "web_search", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": call_id, "content": [{"type": "document", "document": {"data": "{}"}}]},
            ]  # fmt: skip


def usagefix(*args: str) -> str:
    out = subprocess.run([str(USAGEFIX), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_ollama_and_cohere_tool_loops_are_one_session_each_with_their_model_and_price(
    upstream: Upstream, tmp_path: Path
) -> None:
    flows, ledger, prices = tmp_path / "loops.mitm", tmp_path / "ledger.sqlite", tmp_path / "prices.toml"
    # A local model is priced only by the user's word (genai-prices has no Ollama provider).
    prices.write_text('[[price]]\nmodel = "qwen3*"\nprice_as = "gpt-4o-mini"\nprovider = "openai"\n')
    proc, port = start_mitmdump(
        ["--mode", f"reverse:{upstream.url}", "-s", str(ROOT / "addon" / "normalize_usage.py"), "-w", str(flows),
         "--set", f"usage_ledger={ledger}", "--set", f"usage_prices={prices}"],
        tmp_path,
        "loops.log",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=20) as c:
            run_ollama_loop(url, upstream, c)
            run_cohere_loop(url, upstream, c)
            # One more local model, which nothing prices.
            upstream.scenario = Scenario(
                body=ollama_step("llama3.2", 26, 9, None), content_type="application/x-ndjson"
            )
            c.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "why is the sky blue?"})
    finally:
        stop(proc)  # `done` flushes the ledger

    from_ledger = json.loads(usagefix("report", "--json", str(ledger)))
    assert from_ledger == json.loads(usagefix("report", "--json", "--prices", str(prices), str(flows)))
    sessions = from_ledger["sessions"]
    assert [(s["source"], s["steps"], s["models"]) for s in sessions] == [
        ("tool_call", 2, ["qwen3:8b"]),
        ("tool_call", 2, ["command-a-03-2025"]),
        ("fingerprint", 1, ["llama3.2"]),
    ]
    ollama, cohere, unpriced = sessions
    assert Decimal(ollama["cost_usd"]["after"]) == sum(
        calc_price(Usage(input_tokens=p, output_tokens=o), "gpt-4o-mini", provider_id="openai").total_price
        for p, _, o, _ in OLLAMA_STEPS
    )
    # Cohere priced from what the model processed (`tokens`), at Cohere's own prices.
    assert Decimal(cohere["cost_usd"]["after"]) == sum(
        calc_price(
            Usage(input_tokens=t, output_tokens=o), "command-a-03-2025", provider_id="cohere"
        ).total_price
        for t, _, o, _ in COHERE_STEPS
    )
    assert unpriced["cost_usd"]["after"] is None and unpriced["tokens"]["input"] == 26  # unpriced, not 0

    rows = list(csv.DictReader(io.StringIO(usagefix("report", "--csv", str(ledger)))))
    reported = [(r["usagefix.dialect"], r["gen_ai.response.model"], r["gen_ai.response.id"]) for r in rows]
    assert reported == [
        ("ollama", "qwen3:8b", ""),  # Ollama names the model on every line, and no response id
        ("ollama", "qwen3:8b", ""),
        ("cohere", "", "cohere-resp-0"),  # Cohere gives the response's id, never its model
        ("cohere", "", "cohere-resp-1"),
        ("ollama", "llama3.2", ""),
    ]
    assert [r["usagefix.price.match"] for r in rows] == ["override", "override", "provider", "provider", ""]
