"""End to end, the end of a stream: whatever line endings it closes with and however the upstream
ends the body (cleanly or by dying), the client gets through the addon every byte a bare
streaming mitmdump gives it, the usage repaired."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import ROOT, Proxy, start_mitmdump, stop
from usagefix.dialects import DIALECTS
from usagefix.rewriter import rewrite_stream

pytestmark = pytest.mark.e2e

FOUNDING = (ROOT / "flows" / "golden" / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
# Everything up to the usage event's data line, which ends the stream in each case below.
USAGE_EVENT = FOUNDING[: FOUNDING.index(b"\n\ndata: [DONE]")]


class RawUpstream:
    """An upstream that answers every request with exact bytes, then closes the connection:
    status line, headers and body as given, so that a test decides how the body ends."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.reply = b""
        self.pauses: dict[int, float] = {}
        """Seconds to stall after sending the reply up to each offset."""
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            try:
                sent = 0
                for at, pause in sorted(self.pauses.items()):  # stall after these offsets
                    conn.sendall(self.reply[sent:at])
                    sent = at
                    time.sleep(pause)
                conn.sendall(self.reply[sent:])
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the proxy hung up (its client did)


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    up = RawUpstream()
    yield up
    up.sock.close()


def _proxy(
    raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory, name: str, script: str
) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp(name)
    flows = tmp / "flows.mitm"
    args = ["--mode", f"reverse:{raw.url}", "-w", str(flows)]
    if script:
        args += ["-s", script]
    else:
        args += ["--set", "stream_large_bodies=1"]  # bare mitmdump, streaming every body
    proc, port = start_mitmdump(args, tmp)
    yield Proxy(f"http://127.0.0.1:{port}", flows, tmp / "mitmdump.log")
    stop(proc)


@pytest.fixture(scope="module")
def addon_proxy(raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from _proxy(raw, tmp_path_factory, "mitm-addon", str(ROOT / "addon" / "normalize_usage.py"))


@pytest.fixture(scope="module")
def bare_proxy(raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from _proxy(raw, tmp_path_factory, "mitm-bare", "")


def fetch(proxy: Proxy) -> bytes:
    """The body as the client got it, up to the end or the error that ended it."""
    got = b""
    try:
        with httpx.Client(timeout=20) as c:
            with c.stream("POST", proxy.url + "/v1/chat/completions", json={"stream": True}) as r:
                for piece in r.iter_raw():
                    got += piece
    except httpx.RemoteProtocolError:
        pass
    return got


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"


def reply(body: bytes, ending: str) -> bytes:
    if ending == "content-length":
        return HEAD + b"content-length: %d\r\n\r\n" % len(body) + body
    if ending == "close":
        return HEAD + b"connection: close\r\n\r\n" + body
    chunked = HEAD + b"transfer-encoding: chunked\r\n\r\n"
    # The last event in a chunk of its own, split just before its very last byte.
    pieces = [body[: len(USAGE_EVENT) - 40], body[len(USAGE_EVENT) - 40 : -1], body[-1:]]
    chunked += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return chunked + (b"0\r\n\r\n" if ending == "chunked" else b"")  # "died": no last chunk


# Every way to end the last event that the spec calls complete (a blank line after its data).
COMPLETE = ["\n\n", "\r\n\r\n", "\r\r", "\r\n\r", "\n\r", "\r\n\n", "\n\r\n", "\r\r\n"]


@pytest.mark.parametrize("ending", ["chunked", "content-length", "close", "died"])
@pytest.mark.parametrize("terminator", COMPLETE, ids=[t.encode().hex() for t in COMPLETE])
def test_a_complete_last_event_reaches_the_client_however_the_stream_ends(
    addon_proxy: Proxy, bare_proxy: Proxy, raw: RawUpstream, ending: str, terminator: str
) -> None:
    body = USAGE_EVENT + terminator.encode()
    raw.reply = reply(body, ending)
    bare = fetch(bare_proxy)
    assert bare == body  # what a user without the addon gets
    fixed, _ = rewrite_stream(DIALECTS["openai_chat"], body)
    assert b'"prompt_tokens":107208' in fixed
    assert fetch(addon_proxy) == fixed  # all of it, the usage repaired


@pytest.mark.parametrize("terminator", ["\n", "\r\n", "\r", ""], ids=["lf", "crlf", "cr", "none"])
def test_a_last_event_without_its_blank_line_is_forwarded_at_a_clean_end_and_recorded_at_a_dirty_one(
    addon_proxy: Proxy, raw: RawUpstream, terminator: str
) -> None:
    body = USAGE_EVENT + terminator.encode()
    n = len(addon_proxy.wait_for_flows(0, timeout=0))
    raw.reply = reply(body, "chunked")
    assert fetch(addon_proxy) == rewrite_stream(DIALECTS["openai_chat"], body)[0]
    raw.reply = reply(body, "died")
    got = fetch(addon_proxy)
    flows = addon_proxy.wait_for_flows(n + 2)
    rec = flows[-1].metadata["usagefix"]
    # Not complete, the last event was held; the record keeps it, so nothing is unaccounted for.
    assert "cut_off" in rec["anomalies"]
    assert got + rec["held_back"].encode() == body
