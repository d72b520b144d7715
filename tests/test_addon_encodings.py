"""responseheaders through mitmproxy's harness: compressed streams decoded whatever the members,
an encoding we cannot decode streamed untouched and recorded, and no exception there leaves a
response unstreamed or unrecorded."""

from __future__ import annotations

import gzip
import importlib
import io
import zlib
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy import io as mio
from mitmproxy.test import taddons, tflow, tutils

import usagefix.addon
from test_addon import arm
from usagefix.addon import UsageFix

GOLDEN = Path(__file__).parent.parent / "flows" / "golden"
UPSTREAM_SSE = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
FIXED_SSE = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.client.sse").read_bytes()
EVENTS = [e + b"\n\n" for e in UPSTREAM_SSE.split(b"\n\n") if e]


def zstd_frame(data: bytes) -> bytes:
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return bytes(importlib.import_module(name).compress(data))
        except ImportError:
            pass
    zstandard: Any = importlib.import_module("zstandard")
    return bytes(zstandard.ZstdCompressor().compress(data))


def sse_flow(encoding: str | None, wire: bytes) -> http.HTTPFlow:
    req = tutils.treq(
        method=b"POST", path=b"/v1/chat/completions", headers=http.Headers(accept_encoding="gzip")
    )
    hdrs = http.Headers(content_type="text/event-stream", content_length=str(len(wire)))
    if encoding:
        hdrs["content-encoding"] = encoding
    f = tflow.tflow(req=req)
    f.response = tutils.tresp(headers=hdrs, content=b"")
    return f


def through(addon: UsageFix, f: http.HTTPFlow, chunks: list[bytes]) -> bytes:
    """What the client gets: the stream callable over each chunk, then b"", as mitmproxy does."""
    arm(addon, f)
    assert f.response is not None and callable(f.response.stream)
    out = b"".join(b"".join(f.response.stream(c)) for c in [*chunks, b""])
    addon.response(f)
    return out


def saved(f: http.HTTPFlow) -> dict[str, Any]:
    """The record as `-w` saves it."""
    buf = io.BytesIO()
    mio.FlowWriter(buf).add(f)
    buf.seek(0)
    (loaded,) = list(mio.FlowReader(buf).stream())
    rec = loaded.metadata["usagefix"]
    assert isinstance(rec, dict)
    return rec


@pytest.mark.parametrize(
    ("encoding", "members"),
    [
        ("gzip", [gzip.compress(e) for e in EVENTS]),
        ("zstd", [zstd_frame(e) for e in EVENTS]),
        ("deflate", [zlib.compress(e) for e in EVENTS]),
    ],
    ids=["gzip-members", "zstd-frames", "zlib-streams"],
)
def test_every_member_of_a_compressed_stream_reaches_the_client_fixed(
    encoding: str, members: list[bytes]
) -> None:
    # issue 10: only the first member was decoded; the client got 186 of 804 bytes, cleanly ended.
    addon = UsageFix()
    with taddons.context(addon):
        f = sse_flow(encoding, b"".join(members))
        assert through(addon, f, members) == FIXED_SSE
        assert f.response is not None and "content-encoding" not in f.response.headers
        rec = saved(f)
        assert (rec["status"], rec["content_encoding"], rec["events"]) == ("rewritten", encoding, 5)


def test_a_zstd_stream_is_decoded_with_what_mitmproxy_ships() -> None:
    # issue 7: on mitmproxy 12.3 `import zstandard` raised in responseheaders: no stream, no record.
    addon = UsageFix()
    with taddons.context(addon):
        wire = zstd_frame(UPSTREAM_SSE)
        f = sse_flow("zstd", wire)
        assert through(addon, f, [wire[:50], wire[50:]]) == FIXED_SSE
        assert saved(f)["status"] == "rewritten"


@pytest.mark.parametrize("encoding", ["x-custom", "gzip, br", "compress"])
def test_an_undecodable_encoding_streams_untouched_and_is_recorded(encoding: str) -> None:
    addon = UsageFix()
    with taddons.context(addon):
        f = sse_flow(encoding, b"opaque")
        arm(addon, f)
        assert f.response is not None
        assert f.response.stream is True  # mitmproxy streams it as it comes, as bare mitmdump would
        assert f.response.headers["content-encoding"] == encoding
        assert f.response.headers["content-length"] == "6"
        addon.response(f)
        rec = saved(f)
        assert rec["status"] == "undecodable_encoding" and rec["final_seen"] is False
        assert rec["anomalies"] == [f"undecodable_encoding:{encoding}"]
        assert repr(encoding) in rec["error"] and rec["events"] is None
        assert rec["dialect"] == "openai_chat" and rec["streamed"] is True
        assert encoding in f.comment and f.marked


@pytest.mark.parametrize("where", ["media_type", "framing_for", "make_decoder", "StreamRewriter"])
def test_an_exception_in_responseheaders_streams_untouched_and_is_recorded(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"planted in {where}")

    monkeypatch.setattr(usagefix.addon, where, boom)
    addon = UsageFix()
    with taddons.context(addon):
        wire = gzip.compress(UPSTREAM_SSE)
        f = sse_flow("gzip", wire)
        before = f.response.headers.copy() if f.response else None
        arm(addon, f)  # must not raise
        assert f.response is not None
        assert f.response.stream is True
        assert f.response.headers == before  # nothing half-changed: the client decodes it itself
        addon.response(f)
        rec = saved(f)
        assert rec["status"] == "passthrough_error"
        assert f"RuntimeError: planted in {where}" in rec["error"]
        assert f.marked
