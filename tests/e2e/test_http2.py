"""End to end over HTTP/2 on both sides: the client speaks h2 to a real mitmdump with the addon, which
speaks h2 to an h2-only upstream (tests/e2e/h2upstream.py). An upstream reset (RST_STREAM) is
recorded and the client gets what a bare streaming mitmdump gives it; a sibling stream on the same
connection survives the other's reset; the openai SDK over h2 gets the fixed usage. Upgraded
connections that are not LLM traffic (WebSocket) pass untouched.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from h2upstream import H2Upstream, private_ca
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from conftest import ROOT, Proxy, start_mitmdump, stop
from usagefix.dialects import DIALECTS
from usagefix.rewriter import rewrite_stream

pytestmark = pytest.mark.e2e

GOLDEN = ROOT / "flows" / "golden" / "openai_chat"
FOUNDING = (GOLDEN / "fix-founding-bug-stream.upstream.sse").read_bytes()
FIXED = rewrite_stream(DIALECTS["openai_chat"], FOUNDING)[0]
ADDON = str(ROOT / "addon" / "normalize_usage.py")


@pytest.fixture(scope="module")
def h2_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[H2Upstream, Path]]:
    ca, ctx = private_ca(tmp_path_factory.mktemp("h2-ca"), "127.0.0.1")
    up = H2Upstream(ctx, FOUNDING)
    yield up, ca
    up.close()


def _proxy(up: tuple[H2Upstream, Path], tmp: Path, script: bool) -> Iterator[Proxy]:
    flows = tmp / "flows.mitm"
    args = [
        "--mode",
        f"reverse:{up[0].url}",
        "--set",
        f"ssl_verify_upstream_trusted_ca={up[1]}",
        "-w",
        str(flows),
    ]
    args += ["-s", ADDON] if script else ["--set", "stream_large_bodies=1"]  # bare: streams every body
    proc, port = start_mitmdump(args, tmp)
    yield Proxy(f"https://127.0.0.1:{port}", flows, tmp / "mitmdump.log")
    stop(proc)


@pytest.fixture(scope="module")
def addon_h2(
    h2_upstream: tuple[H2Upstream, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    yield from _proxy(h2_upstream, tmp_path_factory.mktemp("mitm-h2-addon"), True)


@pytest.fixture(scope="module")
def bare_h2(
    h2_upstream: tuple[H2Upstream, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    yield from _proxy(h2_upstream, tmp_path_factory.mktemp("mitm-h2-bare"), False)


def ca_of(proxy: Proxy) -> str:
    return str(proxy.flows_file.parent / "conf" / "mitmproxy-ca-cert.pem")


def h2_client(proxy: Proxy) -> httpx.Client:
    return httpx.Client(http2=True, http1=False, verify=ca_of(proxy), trust_env=False, timeout=20)


def fetch(proxy: Proxy, path: str) -> tuple[bytes, str | None, str]:
    """The body as the client got it over h2, the error that ended it if any, the HTTP version."""
    got, err = b"", None
    with h2_client(proxy) as c:
        with c.stream("POST", proxy.url + path, json={"stream": True}) as r:
            version = r.http_version
            try:
                for piece in r.iter_raw():
                    got += piece
            except httpx.HTTPError as e:
                err = type(e).__name__
    return got, err, version


def test_the_openai_sdk_over_http2_gets_the_fixed_usage(
    addon_h2: Proxy, h2_upstream: tuple[H2Upstream, Path]
) -> None:
    n = len(addon_h2.wait_for_flows(0, timeout=0))
    usage = None
    with h2_client(addon_h2) as http_client:
        client = openai.OpenAI(
            base_url=addon_h2.url + "/v1", api_key="sk-test", max_retries=0, http_client=http_client
        )
        for chunk in client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            usage = chunk.usage or usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (107208, 370, 107578)
    (*_, f) = addon_h2.wait_for_flows(n + 1)
    assert f.request.http_version == "HTTP/2.0" and f.response is not None
    assert f.response.http_version == "HTTP/2.0"  # h2 upstream too: it speaks nothing else
    assert f.metadata["usagefix"]["status"] == "rewritten"


def test_an_upstream_reset_is_recorded_and_the_client_gets_what_bare_mitmdump_gives(
    addon_h2: Proxy, bare_h2: Proxy
) -> None:
    n = len(addon_h2.wait_for_flows(0, timeout=0))
    bare, bare_err, version = fetch(bare_h2, "/reset/v1/chat/completions")
    assert version == "HTTP/2" and bare_err is not None and bare == FOUNDING[: len(FOUNDING) // 2]
    got, err, _ = fetch(addon_h2, "/reset/v1/chat/completions")
    assert err == bare_err
    (*_, f) = addon_h2.wait_for_flows(n + 1)
    rec = f.metadata["usagefix"]
    assert f.error is not None and "cut_off" in rec["anomalies"] and rec["status"] == "unmeasured"
    # Every complete event reached the client; the one the reset cut is in the record.
    assert got + rec["held_back"].encode() == bare


def test_a_sibling_stream_survives_the_others_reset(
    addon_h2: Proxy, h2_upstream: tuple[H2Upstream, Path]
) -> None:
    n = len(addon_h2.wait_for_flows(0, timeout=0))

    async def both() -> list[bytes | BaseException]:
        async with httpx.AsyncClient(http2=True, http1=False, verify=ca_of(addon_h2), trust_env=False) as c:

            async def one(path: str) -> bytes:
                async with c.stream("POST", addon_h2.url + path, json={"stream": True}) as r:
                    return b"".join([p async for p in r.aiter_raw()])

            return await asyncio.gather(
                one("/reset/v1/chat/completions"), one("/v1/chat/completions"), return_exceptions=True
            )

    reset, sibling = asyncio.run(both())
    assert isinstance(reset, httpx.HTTPError)
    assert sibling == FIXED  # every byte, the usage repaired
    flows = addon_h2.wait_for_flows(n + 2)[n:]
    statuses = sorted(f.metadata["usagefix"]["status"] for f in flows)
    assert statuses == ["rewritten", "unmeasured"]
    # Both streams went over one upstream connection: the reset was the stream's, not the connection's.
    up = h2_upstream[0]
    assert up.requests[-1]["connection"] == up.requests[-2]["connection"]


def test_a_websocket_that_is_not_llm_traffic_passes_untouched(tmp_path: Path) -> None:
    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    flows = tmp_path / "flows.mitm"
    proc, port = start_mitmdump(
        [
            "--mode",
            f"reverse:http://127.0.0.1:{server.socket.getsockname()[1]}",
            "-s",
            ADDON,
            "-w",
            str(flows),
        ],
        tmp_path,
    )
    usage_like = json.dumps(
        {"usage": {"prompt_tokens": 1678, "prompt_tokens_details": {"cached_tokens": 105530}}}
    )
    messages: list[str | bytes] = [usage_like, "data: " + usage_like + "\n\n", bytes(range(256)), "ünïcödé"]
    try:
        with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
            for m in messages:
                ws.send(m)
                assert ws.recv() == m
    finally:
        stop(proc)
        server.shutdown()
    (f,) = Proxy("", flows, tmp_path / "mitmdump.log").flows()
    assert f.websocket is not None and [m.content for m in f.websocket.messages[::2]] == [
        m.encode() if isinstance(m, str) else m for m in messages
    ]
    assert "usagefix" not in f.metadata
