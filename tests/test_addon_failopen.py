"""Fail open in the mitmproxy glue: the stream callable, the response and error hooks, the record."""

from __future__ import annotations

import json
import logging
import zlib

import pytest
from mitmproxy.test import taddons, tflow

from test_addon import FIXED_SSE, FOUNDING_SSE, arm, llm_flow, roundtrip, run_stream
from usagefix.addon import UsageFix
from usagefix.prior import rebuild_upstream

USAGE_AT = FOUNDING_SSE.index(b'"choices":[],"usage":{')


def gzip_chunks(body: bytes, size: int = 100) -> list[bytes]:
    comp = zlib.compressobj(wbits=31)
    chunks = [
        comp.compress(body[i : i + size]) + comp.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(body), size)
    ]
    return [*chunks, comp.flush()]


def test_a_stream_that_cannot_be_decoded_forwards_every_byte_not_yet_forwarded() -> None:
    chunks = gzip_chunks(FOUNDING_SSE)
    bad = 3
    chunks[bad] = b"\xff" * len(chunks[bad])  # corrupt: zlib gives up on it
    decoded_before = zlib.decompressobj(wbits=31).decompress(b"".join(chunks[:bad]))
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(b"".join(chunks), "text/event-stream", headers={"content_encoding": "gzip"})
        out = run_stream(addon, f, chunks)  # asserts: never an empty piece
        # What was decoded went (complete events at once, the held tail at the failure), then
        # the chunks as they came: nothing lost, nothing repeated.
        assert out == decoded_before + b"".join(chunks[bad:])
        rec = f.metadata["usagefix"]
        assert rec["status"] == "passthrough_error" and rec["error"].startswith("cannot decode gzip")


class _FlushFails:
    """Decodes nothing (identity), and fails at the end of the stream."""

    def decode(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> bytes:
        raise EOFError("compressed stream ended early")


def test_a_failing_decoder_flush_still_hands_back_what_was_held(monkeypatch: pytest.MonkeyPatch) -> None:
    import usagefix.addon

    monkeypatch.setattr(usagefix.addon, "make_decoder", lambda _: _FlushFails())
    body = FOUNDING_SSE.replace(b"data: [DONE]\n\n", b'data: {"choices":[]')  # held to the end
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(body, "text/event-stream", headers={"content_encoding": "gzip"})
        out = run_stream(addon, f, [body[:400], body[400:]])
        assert out == FIXED_SSE.replace(b"data: [DONE]\n\n", b'data: {"choices":[]')
        rec = f.metadata["usagefix"]
        assert rec["status"] == "passthrough_error" and "EOFError" in rec["error"]


def test_a_record_that_cannot_be_built_is_still_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    import usagefix.recordbuild

    def broken(*_: object) -> None:
        raise TypeError("a bug in the record")

    monkeypatch.setattr(usagefix.recordbuild, "_full_record", broken)
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        out = run_stream(addon, f, [FOUNDING_SSE])
        assert out == FIXED_SSE
        f = roundtrip(f)
        rec = f.metadata["usagefix"]
        assert rec["status"] == "passthrough_error" and "TypeError: a bug in the record" in rec["error"]
        assert f.marked
        # The changes are kept: the upstream's body can still be rebuilt (and `-nr` redo it).
        assert f.response is not None and rebuild_upstream(f.response.raw_content or b"", rec) == FOUNDING_SSE


def test_a_usage_block_too_deep_to_save_still_saves_the_flow() -> None:
    # An 800-deep value in a usage block: verbatim in the record, it made the flow unsaveable.
    deep = "[" * 800 + "]" * 800
    body = FOUNDING_SSE.replace(
        b'{"cached_tokens":105530}', b'{"cached_tokens":105530,"x":' + deep.encode() + b"}"
    )
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(body, "text/event-stream")
        out = run_stream(addon, f, [body])
        assert b'"prompt_tokens":107208' in out
        f = roundtrip(f)
        rec = f.metadata["usagefix"]
        assert rec["status"] == "rewritten" and rec["upstream_usage"] is None
        assert any(a.startswith("usage_blocks_not_recorded:") for a in rec["anomalies"])
        assert rec["usage_after"]["input_total"] == 107208
        assert rebuild_upstream(out, rec) == body


def test_log_lines_name_the_flow(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from usagefix.dialects import openai_chat

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(openai_chat.DIALECT, "normalize_usage", boom)
    addon = UsageFix()
    with taddons.context(addon), caplog.at_level(logging.INFO):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        assert run_stream(addon, f, [FOUNDING_SSE]) == FOUNDING_SSE
    failed = [r.getMessage() for r in caplog.records if "rewriter failed" in r.getMessage()]
    assert failed and all(f.request.pretty_url in m for m in failed)
    assert f"usagefix: POST {f.request.pretty_url}: passed through untouched" in caplog.text


def test_an_event_ending_in_crlf_cr_reaches_the_client_though_the_upstream_dies_after_it() -> None:
    # Issue 10: the client got 564 of 793 bytes; bare mitmdump passes all of them.
    body = FOUNDING_SSE[: FOUNDING_SSE.index(b"data: [DONE]")].replace(b"\n\n", b"\r\n\r")
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(body, "text/event-stream")
        arm(addon, f)
        assert f.response is not None and callable(f.response.stream)
        sent = b"".join(b"".join(f.response.stream(c)) for c in (body[:-1], body[-1:]))
        f.error = tflow.terr("peer closed connection without sending complete message body")
        addon.error(f)  # no end of stream: mitmproxy never calls the callable with b""
        assert sent.endswith(b"}}}\r\n\r") and b'"prompt_tokens":107208' in sent
        rec = f.metadata["usagefix"]
        assert rec["held_back"] is None and "cut_off" in rec["anomalies"]
        assert rec["final_seen"] is True and rec["status"] == "rewritten"
        assert rebuild_upstream(sent, rec) == body


def test_a_client_hanging_up_after_done_in_a_text_delta_is_a_cut() -> None:
    text = json.dumps({"choices": [{"delta": {"content": "print('[DONE]')"}}], "usage": None})
    body = FOUNDING_SSE[: FOUNDING_SSE.index(b"\n\n") + 2] + f"data: {text}\n\n".encode()
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(body, "text/event-stream")
        arm(addon, f)
        assert f.response is not None and callable(f.response.stream)
        f.response.stream(body)
        f.error = tflow.terr("Client disconnected.")
        addon.error(f)
        assert "cut_off" in f.metadata["usagefix"]["anomalies"]
