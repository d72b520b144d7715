"""End to end: compressed streams from an upstream that ignores `accept-encoding: identity`.

Each coding mitmproxy decodes (and several members of one), compressed and flushed chunk by chunk
as a streaming upstream does, through a real mitmdump: the client gets the stream decoded, fixed,
and as it arrives. A coding we cannot decode reaches the client byte for byte, as it arrives too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from upstream import Scenario, Upstream, awkward_cuts

from conftest import Proxy

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).resolve().parents[2] / "flows" / "golden"
UPSTREAM_SSE = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
CLIENT_SSE = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.client.sse").read_bytes()
DELAY = 0.2
"""The upstream pauses this long after each event: 5 events, so it finishes after 1 s."""
REQUEST = {"model": "claude-sonnet-4-5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def stream(
    proxy: Proxy, upstream: Upstream, compress: str
) -> tuple[httpx.Response, list[tuple[float, bytes]]]:
    """POST through the proxy; the upstream sends the founding bug stream compressed with
    `compress`. Returns the response and each piece the client read, with its arrival time."""
    upstream.scenario = Scenario(
        body=UPSTREAM_SSE,
        content_type="text/event-stream",
        chunks=awkward_cuts(UPSTREAM_SSE),
        delay=DELAY,
        compress=compress,
    )
    pieces: list[tuple[float, bytes]] = []
    start = time.monotonic()
    with httpx.Client(timeout=20) as c:
        with c.stream("POST", proxy.url + "/v1/chat/completions", json=REQUEST) as r:
            for piece in r.iter_raw():
                pieces.append((time.monotonic() - start, piece))
    assert upstream.requests[-1]["headers"]["Accept-Encoding"] == "identity"  # asked, and ignored
    return r, pieces


def first_event_time(pieces: list[tuple[float, bytes]]) -> float:
    seen = b""
    for t, p in pieces:
        seen += p
        if b"\n\n" in seen:
            return t
    raise AssertionError("no complete event")


def usage_of(sse: bytes) -> dict[str, object]:
    (usage,) = [
        json.loads(line[6:])["usage"]
        for line in sse.splitlines()
        if line.startswith(b"data: {") and json.loads(line[6:])["usage"]
    ]
    assert isinstance(usage, dict)
    return usage


@pytest.mark.parametrize(
    "compress",
    ["gzip", "deflate", "deflate-raw", "br", "zstd", "gzip-members", "zstd-frames", "deflate-streams"],
)
def test_a_compressed_stream_is_decoded_fixed_and_streamed(
    proxy: Proxy, upstream: Upstream, compress: str
) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    r, pieces = stream(proxy, upstream, compress)
    got = b"".join(p for _, p in pieces)
    assert "content-encoding" not in r.headers  # decoded for the client
    assert got == CLIENT_SSE  # every member, every byte, the usage fixed
    assert usage_of(got)["prompt_tokens"] == 107208
    # As it arrives: the first event long before the upstream's last (not buffered to the end).
    assert first_event_time(pieces) < pieces[-1][0] - 2 * DELAY
    flows = proxy.wait_for_flows(n + 1)
    rec = flows[-1].metadata["usagefix"]
    assert (rec["status"], rec["content_encoding"]) == ("rewritten", upstream_coding(compress))


def upstream_coding(compress: str) -> str:
    return compress.split("-")[0]


def test_the_openai_sdk_gets_a_zstd_stream_fixed_as_it_arrives(proxy: Proxy, upstream: Upstream) -> None:
    # issue 7: on mitmproxy 12.3 this stream arrived all at once at the end, unfixed and unrecorded.
    upstream.scenario = Scenario(
        body=UPSTREAM_SSE,
        content_type="text/event-stream",
        chunks=awkward_cuts(UPSTREAM_SSE),
        delay=DELAY,
        compress="zstd",
    )
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)
    start = time.monotonic()
    arrivals, usage = [], None
    for chunk in client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        arrivals.append(time.monotonic() - start)
        usage = chunk.usage or usage
    assert usage is not None and (usage.prompt_tokens, usage.total_tokens) == (107208, 107578)
    assert arrivals[0] < arrivals[-1] - 2 * DELAY


def test_an_undecodable_encoding_passes_byte_for_byte_as_it_arrives_and_is_recorded(
    proxy: Proxy, upstream: Upstream
) -> None:
    n = len(proxy.wait_for_flows(0, timeout=0))
    r, pieces = stream(proxy, upstream, "br,gzip")  # a stack: not decoded (see make_decoder)
    assert r.headers["content-encoding"] == "br, gzip"
    assert b"".join(p for _, p in pieces) == upstream.sent  # byte for byte
    assert len(pieces) > 1 and pieces[0][0] < pieces[-1][0] - 2 * DELAY  # streamed, not buffered
    flows = proxy.wait_for_flows(n + 1)
    rec = flows[-1].metadata["usagefix"]
    assert rec["status"] == "undecodable_encoding"
    assert rec["anomalies"] == ["undecodable_encoding:br, gzip"]
    assert "'br, gzip'" in rec["error"]
