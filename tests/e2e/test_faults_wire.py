"""End to end, faults on the wire: the upstream dying inside a UTF-8 sequence or between CR and LF,
a stall longer than the client's patience, the client hanging up mid-stream, an event over the
bound. Each compares the client's bytes through the addon with a bare streaming mitmdump's on the
same reply, in the same test, and checks that the record says what happened. (The end of the stream
with every line-ending combination is in test_faults.py.)"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from test_faults import FOUNDING, HEAD, RawUpstream, fetch

from conftest import ROOT, Proxy, start_mitmdump, stop
from usagefix.dialects import DIALECTS
from usagefix.rewriter import rewrite_stream

pytestmark = pytest.mark.e2e

CRLF = (ROOT / "flows" / "golden" / "openai_chat" / "fix-founding-bug-stream-crlf.upstream.sse").read_bytes()
FIXED = rewrite_stream(DIALECTS["openai_chat"], FOUNDING)[0]
CHUNKED = HEAD + b"transfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def died(prefix: bytes) -> bytes:
    """A chunked reply whose upstream dies after `prefix`: no last chunk."""
    return CHUNKED + chunk(prefix)


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    up = RawUpstream()
    yield up
    up.sock.close()


def _proxy(
    raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory, name: str, args: list[str]
) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp(name)
    flows = tmp / "flows.mitm"
    proc, port = start_mitmdump(["--mode", f"reverse:{raw.url}", "-w", str(flows), *args], tmp)
    yield Proxy(f"http://127.0.0.1:{port}", flows, tmp / "mitmdump.log")
    stop(proc)


ADDON = ["-s", str(ROOT / "addon" / "normalize_usage.py")]


@pytest.fixture(scope="module")
def addon_proxy(raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from _proxy(raw, tmp_path_factory, "mitm-addon", [*ADDON, "--set", "usage_max_event_bytes=4096"])


@pytest.fixture(scope="module")
def bare_proxy(raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from _proxy(raw, tmp_path_factory, "mitm-bare", ["--set", "stream_large_bodies=1"])


def last_record(proxy: Proxy, before: int) -> dict[str, object]:
    flows = proxy.wait_for_flows(before + 1)
    assert len(flows) == before + 1, proxy.log()
    rec: dict[str, object] = flows[-1].metadata["usagefix"]
    return rec


def count(proxy: Proxy) -> int:
    return len(proxy.wait_for_flows(0, timeout=0))


def both(raw: RawUpstream, addon: Proxy, bare: Proxy, reply: bytes) -> tuple[bytes, bytes, dict[str, object]]:
    """The bytes bare mitmdump gives, the bytes the addon gives, and the addon's record."""
    raw.reply = reply
    bare_got = fetch(bare)
    n = count(addon)
    got = fetch(addon)
    return bare_got, got, last_record(addon, n)


DASH = FOUNDING.index("—".encode())


@pytest.mark.parametrize("inside", [1, 2], ids=["after-1-of-3", "after-2-of-3"])
def test_upstream_dying_inside_a_utf8_sequence(
    raw: RawUpstream, addon_proxy: Proxy, bare_proxy: Proxy, inside: int
) -> None:
    cut = FOUNDING[: DASH + inside]
    bare, got, rec = both(raw, addon_proxy, bare_proxy, died(cut))
    assert bare == cut
    assert "cut_off" in rec["anomalies"] and rec["status"] == "unmeasured"  # type: ignore[operator]
    # Every complete event reached the client; the one cut in the middle of "—" is in the record.
    assert_conserved(got, rec, bare)


def assert_conserved(got: bytes, rec: dict[str, object], expected: bytes) -> None:
    """The client got a prefix of `expected`; the record holds the rest (`held_back`, shown as
    text: bytes that are not UTF-8 spelled `\\xNN`; then exactly in `held_back_base64`)."""
    assert expected.startswith(got), (got, expected)
    rest = expected[len(got) :]
    assert rest.decode("utf-8", "backslashreplace") == (rec["held_back"] or "")
    exact = rec.get("held_back_base64")
    assert (base64.b64decode(exact) if isinstance(exact, str) else rest.decode("utf-8").encode()) == rest


CRLF_AT = [i + 1 for i in range(len(CRLF) - 1) if CRLF[i : i + 2] == b"\r\n"]


@pytest.mark.parametrize(
    "where",
    [CRLF_AT[0], CRLF_AT[1], CRLF_AT[-3], CRLF_AT[-1]],
    ids=["first-line", "first-blank-line", "usage-line", "last-blank-line"],
)
@pytest.mark.parametrize("end", ["died", "clean"])
def test_upstream_ending_between_cr_and_lf(
    raw: RawUpstream, addon_proxy: Proxy, bare_proxy: Proxy, where: int, end: str
) -> None:
    body = CRLF[:where]  # ends with the CR of a CRLF
    reply = died(body) if end == "died" else CHUNKED + chunk(body) + b"0\r\n\r\n"
    bare, got, rec = both(raw, addon_proxy, bare_proxy, reply)
    assert bare == body
    fixed = rewrite_stream(DIALECTS["openai_chat"], body)[0]  # what the addon makes of what it got
    if end == "clean" or body.endswith(b"data: [DONE]\r\n\r"):
        # A clean end; or a dirty one after `[DONE]`'s blank line (CR alone ends it): complete.
        assert got == fixed and "cut_off" not in rec["anomalies"]  # type: ignore[operator]
    else:
        assert "cut_off" in rec["anomalies"]  # type: ignore[operator]
        assert_conserved(got, rec, fixed if b'"prompt_tokens":107208' in got else body)


def _events(body: bytes) -> list[bytes]:
    return [e + b"\n\n" for e in body.split(b"\n\n") if e]


def test_a_stall_longer_than_the_clients_patience(
    raw: RawUpstream, addon_proxy: Proxy, bare_proxy: Proxy
) -> None:
    events = _events(FOUNDING)
    first = b"".join(events[:2])
    raw.reply = CHUNKED + chunk(first) + b"".join(chunk(e) for e in events[2:]) + b"0\r\n\r\n"
    raw.pauses = {len(CHUNKED + chunk(first)): 2.5}  # the client gives up after 1 s of silence

    def impatient(proxy: Proxy) -> tuple[bytes, str]:
        got = b""
        with httpx.Client(timeout=httpx.Timeout(10, read=1.0)) as c:
            with c.stream("POST", proxy.url + "/v1/chat/completions", json={"stream": True}) as r:
                try:
                    for piece in r.iter_raw():
                        got += piece
                except httpx.ReadTimeout as e:
                    return got, type(e).__name__
        return got, "no timeout"

    try:
        bare = impatient(bare_proxy)
        n = count(addon_proxy)
        got = impatient(addon_proxy)
    finally:
        raw.pauses = {}
    assert bare == (first, "ReadTimeout") and got == bare
    rec = last_record(addon_proxy, n)
    assert "cut_off" in rec["anomalies"] and rec["status"] == "unmeasured"  # type: ignore[operator]


def test_the_client_hanging_up_mid_stream(raw: RawUpstream, addon_proxy: Proxy, bare_proxy: Proxy) -> None:
    events = _events(FOUNDING)
    raw.reply = CHUNKED + b"".join(chunk(e) for e in events) + b"0\r\n\r\n"
    offsets = [len(CHUNKED + b"".join(chunk(e) for e in events[: i + 1])) for i in range(len(events) - 1)]
    raw.pauses = dict.fromkeys(offsets, 0.3)

    def hang_up(proxy: Proxy) -> bytes:
        with httpx.Client(timeout=10) as c:
            with c.stream("POST", proxy.url + "/v1/chat/completions", json={"stream": True}) as r:
                got = b""
                for piece in r.iter_raw():
                    got += piece
                    if got.count(b"\n\n") >= 2:
                        return got  # leaving the block closes the connection mid-stream
        return got

    try:
        bare = hang_up(bare_proxy)
        n = count(addon_proxy)
        got = hang_up(addon_proxy)
        rec = last_record(addon_proxy, n)
    finally:
        raw.pauses = {}
    assert got == bare == b"".join(events[:2])
    assert "cut_off" in rec["anomalies"] and rec["status"] == "unmeasured"  # type: ignore[operator]
    # The proxy goes on serving: the next stream is whole and repaired.
    raw.reply = CHUNKED + chunk(FOUNDING) + b"0\r\n\r\n"
    assert fetch(addon_proxy) == FIXED


def test_an_event_over_the_bound_passes_untouched_and_flagged(
    raw: RawUpstream, addon_proxy: Proxy, bare_proxy: Proxy
) -> None:
    big = {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "é" * 6000}}],
    }
    event = b"data: " + json.dumps(big, ensure_ascii=False).encode() + b"\n\n"
    assert len(event) > 4096  # the bound this proxy runs with
    body = event + FOUNDING
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    bare, got, rec = both(
        raw, addon_proxy, bare_proxy, CHUNKED + b"".join(chunk(p) for p in pieces) + b"0\r\n\r\n"
    )
    assert bare == body
    assert got == event + FIXED  # the big event byte for byte, the usage after it still repaired
    assert "oversize_events:1" in rec["anomalies"] and rec["status"] == "rewritten"  # type: ignore[operator]
