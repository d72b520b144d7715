"""End to end, per dialect: OpenAI Responses and Gemini through their SDKs, the rest over raw HTTP."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
from google import genai
from google.genai import types as gtypes
from mitmproxy import http
from mitmproxy import io as mio
from upstream import Scenario, Upstream, awkward_cuts

from conftest import MITMDUMP, ROOT, Proxy, start_mitmdump, stop

pytestmark = pytest.mark.e2e

GOLDEN = ROOT / "flows" / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def sse(name: str, delay: float = 0.0) -> Scenario:
    body = golden(name)
    return Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body), delay=delay)


def test_responses_stream_through_the_openai_sdk(proxy: Proxy, upstream: Upstream) -> None:
    upstream.scenario = sse("openai_responses/fix-cache-reads-left-out-crlf.upstream.sse")
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)
    final = None
    for event in client.responses.create(model="claude-sonnet-4-5", input="hi", stream=True):
        if event.type == "response.completed":
            final = event.response
    assert final is not None and final.usage is not None
    u = final.usage
    assert (u.input_tokens, u.input_tokens_details.cached_tokens, u.total_tokens) == (22013, 22000, 22053)
    assert u.output_tokens_details is None  # not invented for the schema: the SDK reads it as absent


def test_responses_json_through_the_openai_sdk(proxy: Proxy, upstream: Upstream) -> None:
    upstream.scenario = Scenario(body=golden("openai_responses/ok-no-details.upstream.json"))
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)
    r = client.responses.create(model="gpt-5.1", input="hi")
    assert r.usage is not None and (r.usage.total_tokens, r.usage.input_tokens_details) == (57, None)


def genai_client(proxy: Proxy) -> genai.Client:
    return genai.Client(
        api_key="test-key", http_options=gtypes.HttpOptions(base_url=proxy.url, timeout=20_000)
    )


def test_gemini_stream_through_google_genai(proxy: Proxy, upstream: Upstream) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    # A generous pause between the two chunks: the test asserts streaming, not the machine's speed.
    upstream.scenario = sse("gemini/fix-total-without-thoughts-sse.upstream.sse", delay=0.6)
    start = time.monotonic()
    arrivals, last = [], None
    client = genai_client(proxy)  # keep it alive while the stream is read
    for chunk in client.models.generate_content_stream(model="gemini-2.5-pro", contents="hi"):
        arrivals.append(time.monotonic() - start)
        last = chunk
    assert last is not None and last.usage_metadata is not None
    um = last.usage_metadata
    assert (um.prompt_token_count, um.thoughts_token_count, um.total_token_count) == (1106, 1089, 2973)
    assert len(arrivals) == 2 and arrivals[1] - arrivals[0] > 0.3
    assert "alt=sse" in upstream.requests[-1]["path"]
    f = proxy.wait_for_flows(n + 1)[-1]
    assert f.metadata["usagefix"]["dialect"] == "gemini"
    assert f.request.headers["x-goog-api-key"] == "<redacted>"
    assert upstream.requests[-1]["headers"]["x-goog-api-key"] == "test-key"  # the upstream got the real one


def test_gemini_json_through_google_genai(proxy: Proxy, upstream: Upstream) -> None:
    upstream.scenario = Scenario(body=golden("gemini/ok-tool-use.upstream.json"))
    client = genai_client(proxy)
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert r.usage_metadata is not None and r.usage_metadata.total_token_count == 550


def test_gemini_json_array_stream_over_raw_http(proxy: Proxy, upstream: Upstream) -> None:
    body = golden("gemini/fix-total-without-thoughts.upstream.jsonarray")
    upstream.scenario = Scenario(body=body, chunks=awkward_cuts(body))  # application/json, chunked
    with httpx.Client(timeout=20) as c:
        r = c.post(proxy.url + "/v1beta/models/gemini-2.5-pro:streamGenerateContent", json={})
    assert r.content == golden("gemini/fix-total-without-thoughts.client.jsonarray")
    correct = golden("gemini/ok-array-stream.upstream.jsonarray")
    upstream.scenario = Scenario(body=correct, chunks=awkward_cuts(correct))
    with httpx.Client(timeout=20) as c:
        assert c.post(proxy.url + "/v1beta/models/g:streamGenerateContent", json={}).content == correct


@pytest.mark.parametrize(
    "name",
    [
        "openai_chat/ok-openrouter.upstream.sse",
        "openai_chat/ok-deepseek.upstream.json",
        "openai_chat/ok-vllm-continuous.upstream.sse",
        "openai_chat/ok-mistral.upstream.sse",
        "openai_chat/ok-ollama.upstream.sse",
        "openai_responses/ok-completed.upstream.sse",
        "gemini/ok-vertex-sse-crlf.upstream.sse",
    ],
)
def test_correct_upstreams_are_byte_identical(proxy: Proxy, upstream: Upstream, name: str) -> None:
    body = golden(name)
    path = {
        "openai_chat": "/v1/chat/completions",
        "openai_responses": "/v1/responses",
        "gemini": "/v1beta/models/g:streamGenerateContent?alt=sse",
    }[name.split("/")[0]]
    upstream.scenario = sse(name) if name.endswith(".sse") else Scenario(body=body)
    with httpx.Client(timeout=20) as c:
        assert c.post(proxy.url + path, json={}).content == body


@pytest.mark.parametrize(
    ("name", "fixed"),
    [
        ("openai_chat/fix-deepseek-hit-only.upstream.sse", b'"prompt_tokens_details":{"cached_tokens":512}'),
        ("openai_chat/fix-xai-reasoning.upstream.json", b'"completion_tokens":353'),
        ("openai_chat/fix-gemini-translated.upstream.sse", b'"completion_tokens":414'),
    ],
)
def test_family_repairs_over_raw_http(proxy: Proxy, upstream: Upstream, name: str, fixed: bytes) -> None:
    body = golden(name)
    assert fixed not in body
    upstream.scenario = sse(name) if name.endswith(".sse") else Scenario(body=body)
    with httpx.Client(timeout=20) as c:
        assert fixed in c.post(proxy.url + "/v1/chat/completions", json={}).content


def eventstream_frame(kind: str, payload: dict[str, object]) -> bytes:
    from usagefix.framing.eventstream import encode_frame

    def header(name: str, value: str) -> bytes:
        return bytes([len(name)]) + name.encode() + b"\x07" + len(value).to_bytes(2, "big") + value.encode()

    return encode_frame(
        header(":event-type", kind) + header(":message-type", "event"), json.dumps(payload).encode()
    )


def test_bedrock_converse_stream_is_observed(proxy: Proxy, upstream: Upstream) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    body = b"".join(
        [
            eventstream_frame("messageStart", {"role": "assistant"}),
            eventstream_frame("contentBlockDelta", {"delta": {"text": "Hi"}}),
            eventstream_frame("messageStop", {"stopReason": "end_turn"}),
            eventstream_frame(
                "metadata",
                {
                    "usage": {
                        "inputTokens": 22,
                        "outputTokens": 13,
                        "totalTokens": 2527,
                        "cacheReadInputTokens": 2492,
                    }
                },
            ),
        ]
    )
    chunks = [body[i : i + 29] for i in range(0, len(body), 29)]
    upstream.scenario = Scenario(body=body, content_type="application/vnd.amazon.eventstream", chunks=chunks)
    with httpx.Client(timeout=20) as c:
        r = c.post(proxy.url + "/model/amazon.nova-pro-v1:0/converse-stream", json={})
    assert r.content == body
    rec = proxy.wait_for_flows(n + 1)[-1].metadata["usagefix"]
    assert (rec["dialect"], rec["status"], rec["usage_after"]["total"]) == ("bedrock", "unchanged", 2527)


def test_stream_usage_is_asked_for_and_removed(upstream: Upstream, tmp_path: Path) -> None:
    flows = tmp_path / "f.mitm"
    args = ["--mode", f"reverse:{upstream.url}", "-s", str(ROOT / "addon" / "normalize_usage.py")]
    args += ["--set", "usage_request_stream_usage=true", "-w", str(flows)]
    proc, port = start_mitmdump(args, tmp_path)
    try:
        upstream.scenario = sse("openai_chat/fix-founding-bug-stream.upstream.sse")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=20)
        chunks = list(
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )  # type: ignore[arg-type]
        assert upstream.requests[-1]["json"]["stream_options"] == {"include_usage": True}
        assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == 'Hello — usage "counts".'
        time.sleep(0.3)
    finally:
        stop(proc)
    with flows.open("rb") as f:
        (fl,) = [x for x in mio.FlowReader(f).stream() if isinstance(x, http.HTTPFlow)]
    rec = fl.metadata["usagefix"]
    assert rec["stream_usage_added"] is True and rec["usage_after"]["input_total"] == 107208
    assert fl.response is not None and b'"usage"' not in (fl.response.content or b"")


def test_bad_profile_file_stops_mitmdump(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[[profile]]\nname = "x"\nprompt_cache_read = "excluded"\n')
    args = [str(MITMDUMP), "--set", f"confdir={tmp_path}", "--listen-host", "127.0.0.1", "-p", "0"]
    args += ["-s", str(ROOT / "addon" / "normalize_usage.py"), "--set", f"usage_profiles={bad}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "p.toml: profile.0.prompt_cache_read (line 3): Extra inputs are not permitted" in out
