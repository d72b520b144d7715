"""End to end: the real openai and anthropic SDKs, through a real mitmdump, to the emulator."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from upstream import Scenario, Upstream, awkward_cuts

from conftest import Proxy

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).resolve().parents[2] / "flows" / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def oai(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)


def claude(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0, timeout=20)


MESSAGES = [{"role": "user", "content": "hi"}]


def last_flow(proxy: Proxy, count_before: int):  # type: ignore[no-untyped-def]
    flows = proxy.wait_for_flows(count_before + 1)
    assert len(flows) == count_before + 1, proxy.log()
    return flows[-1]


def test_openai_json_founding_bug_is_fixed(proxy: Proxy, upstream: Upstream) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    upstream.scenario = Scenario(body=golden("openai_chat/fix-founding-bug.upstream.json"))
    r = oai(proxy).chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (107208, 370, 107578)
    assert r.usage.prompt_tokens_details is not None and r.usage.prompt_tokens_details.cached_tokens == 105530
    assert upstream.requests[-1]["headers"]["Accept-Encoding"] == "identity"
    f = last_flow(proxy, n)
    assert f.metadata["usagefix"]["status"] == "rewritten"
    assert f.response is not None and f.response.content == golden("openai_chat/fix-founding-bug.client.json")
    assert f.comment == "prompt 1678→107208 · R1"


def test_openai_stream_is_fixed_and_arrives_incrementally(proxy: Proxy, upstream: Upstream) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    body = golden("openai_chat/fix-founding-bug-stream-crlf.upstream.sse")
    upstream.scenario = Scenario(
        body=body, content_type="text/event-stream", chunks=awkward_cuts(body), delay=0.3
    )
    start = time.monotonic()
    arrivals: list[float] = []
    usage = None
    text = ""
    stream = oai(proxy).chat.completions.create(
        model="claude-sonnet-4-5",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        arrivals.append(time.monotonic() - start)
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.total_tokens) == (107208, 107578)
    assert text == 'Hello — usage "counts".'
    # Four chunks, 0.3 s apart upstream: the first must not wait for the last.
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] > 0.6, arrivals
    f = last_flow(proxy, n)
    assert f.response is not None
    client = golden("openai_chat/fix-founding-bug-stream-crlf.client.sse")
    assert client.endswith(b"[DONE]\r\n\r\n")
    # The saved body is what the client was sent. The last chunk upstream is the LF of the final
    # CRLF, cut from its CR, and the SDK hangs up on `[DONE]` as soon as the CR ends it: on a
    # busy machine the hang-up wins the race and that LF is never sent, as with bare mitmdump.
    assert f.response.content in (client, client[:-1])
    rec = f.metadata["usagefix"]
    assert rec["status"] == "rewritten" and rec["final_seen"] is True and "cut_off" not in rec["anomalies"]
    # A client that reads to the end of the body gets every byte, that LF included.
    with httpx.Client(timeout=20) as c:
        r = c.post(
            proxy.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}
        )
    assert r.content == client
    f = last_flow(proxy, n + 1)
    assert f.response is not None and f.response.content == client


def test_anthropic_stream_gets_the_full_snapshot(proxy: Proxy, upstream: Upstream) -> None:
    body = golden("anthropic/fix-cached-delta-crlf.upstream.sse")
    upstream.scenario = Scenario(
        body=body, content_type="text/event-stream", chunks=awkward_cuts(body), delay=0.05
    )
    deltas = []
    with claude(proxy).messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES) as s:  # type: ignore[arg-type]
        for event in s:
            if event.type == "message_delta":
                deltas.append(event.usage)
        final = s.get_final_message()
    (delta,) = deltas
    assert (delta.input_tokens, delta.cache_creation_input_tokens, delta.cache_read_input_tokens) == (
        3,
        1200,
        9511,
    )
    assert delta.output_tokens == 1944
    u = final.usage
    assert (u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens, u.output_tokens) == (
        3,
        1200,
        9511,
        1944,
    )


def test_correct_anthropic_responses_are_byte_identical(proxy: Proxy, upstream: Upstream) -> None:
    for name, ctype in (
        ("ok-full-delta.upstream.sse", "text/event-stream"),
        ("ok-message.upstream.json", "application/json"),
    ):
        body = golden(f"anthropic/{name}")
        chunks = awkward_cuts(body) if ctype == "text/event-stream" else None
        upstream.scenario = Scenario(body=body, content_type=ctype, chunks=chunks)
        with httpx.Client(timeout=20) as c:
            r = c.post(
                proxy.url + "/v1/messages", json={"model": "m", "messages": MESSAGES, "stream": bool(chunks)}
            )
        assert r.content == body
        # The SDK reads it as the upstream meant it.
    msg = claude(proxy).messages.create(model="m", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert msg.usage.cache_read_input_tokens == 9511


def test_correct_openai_stream_is_byte_identical(proxy: Proxy, upstream: Upstream) -> None:
    body = golden("openai_chat/ok-azure-first-chunk.upstream.sse")
    upstream.scenario = Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body))
    with httpx.Client(timeout=20) as c:
        r = c.post(
            proxy.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}
        )
    assert r.content == body


def test_cut_off_upstream_leaves_complete_events_and_a_record(proxy: Proxy, upstream: Upstream) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    body = golden("openai_chat/fix-founding-bug-stream.upstream.sse")
    chunks = awkward_cuts(body)
    cut_after = 12
    upstream.scenario = Scenario(
        body=body, content_type="text/event-stream", chunks=chunks, cut_after=cut_after
    )
    got = b""
    with httpx.Client(timeout=20) as c, pytest.raises(httpx.RemoteProtocolError):
        with c.stream("POST", proxy.url + "/v1/chat/completions", json={"stream": True}) as r:
            for piece in r.iter_raw():
                got += piece
    sent = b"".join(chunks[:cut_after])
    complete = sent[: sent.rindex(b"\n\n") + 2]
    assert got == complete
    f = last_flow(proxy, n)
    rec = f.metadata["usagefix"]
    assert rec["status"] == "unmeasured" and rec["final_seen"] is False
    assert "cut_off" in rec["anomalies"]
    assert f.response is not None and f.response.content == complete


def test_error_body_passes_untouched(proxy: Proxy, upstream: Upstream) -> None:
    body = (
        b'{"error":{"message":"prompt is too long: usage 1678","type":"invalid_request_error","code":null}}'
    )
    upstream.scenario = Scenario(body=body, status=400)
    with httpx.Client(timeout=20) as c:
        r = c.post(proxy.url + "/v1/chat/completions", json={"model": "m"})
    assert (r.status_code, r.content) == (400, body)
    with pytest.raises(openai.BadRequestError, match="prompt is too long"):
        oai(proxy).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]


def test_gzip_json_with_the_bug_is_fixed(proxy: Proxy, upstream: Upstream) -> None:
    upstream.scenario = Scenario(body=golden("openai_chat/fix-founding-bug.upstream.json"), gzip=True)
    with httpx.Client(timeout=20) as c:
        r = c.post(proxy.url + "/v1/chat/completions", json={"model": "m"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.json()["usage"]["prompt_tokens"] == 107208


def test_gzip_stream_with_the_bug_is_fixed(proxy: Proxy, upstream: Upstream) -> None:
    import zlib

    body = golden("openai_chat/fix-founding-bug-stream.upstream.sse")
    comp = zlib.compressobj(wbits=31)
    chunks = [comp.compress(c) + comp.flush(zlib.Z_SYNC_FLUSH) for c in awkward_cuts(body)] + [comp.flush()]
    upstream.scenario = Scenario(
        body=body, content_type="text/event-stream", chunks=chunks, headers={"content-encoding": "gzip"}
    )
    with httpx.Client(timeout=20) as c:
        r = c.post(proxy.url + "/v1/chat/completions", json={"stream": True})
    assert "content-encoding" not in r.headers
    assert r.content == golden("openai_chat/fix-founding-bug-stream.client.sse")
