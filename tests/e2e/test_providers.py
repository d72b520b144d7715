"""End to end, the providers that are one module of data: Ollama native (NDJSON) and Cohere v2,
over raw HTTP through a real mitmdump in front of the emulator."""

from __future__ import annotations

import json

import httpx
import pytest
from upstream import Scenario, Upstream, awkward_cuts

from conftest import ROOT, Proxy

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
