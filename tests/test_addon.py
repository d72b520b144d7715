"""Tests for the mitmproxy glue, through mitmproxy's own test harness (no sockets)."""

import gc
import gzip
import io
import json
import weakref
import zlib
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy import io as mio
from mitmproxy.test import taddons, tflow, tutils

from usagefix.addon import UsageFix
from usagefix.prior import rebuild_upstream
from usagefix.reclaim import Reclaimer
from usagefix.stream import stream_of

GOLDEN = Path(__file__).parent.parent / "flows" / "golden"
FOUNDING_JSON = (GOLDEN / "openai_chat" / "fix-founding-bug.upstream.json").read_bytes()
FOUNDING_SSE = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
FIXED_SSE = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.client.sse").read_bytes()


def llm_flow(
    body: bytes,
    content_type: str,
    *,
    path: str = "/v1/chat/completions",
    status: int = 200,
    headers: dict[str, str] | None = None,
    live: bool = True,
) -> http.HTTPFlow:
    req = tutils.treq(method=b"POST", path=path.encode(), headers=http.Headers(accept_encoding="gzip, br"))
    hdrs = http.Headers(content_type=content_type, content_length=str(len(body)), **(headers or {}))
    resp = tutils.tresp(status_code=status, headers=hdrs, content=b"")
    resp.raw_content = body
    f = tflow.tflow(req=req, live=live)
    f.response = resp
    return f


def roundtrip(f: http.HTTPFlow) -> http.HTTPFlow:
    """Write the flow as `-w` does and read it back: metadata must be tnetstring-safe."""
    buf = io.BytesIO()
    mio.FlowWriter(buf).add(f)
    buf.seek(0)
    (loaded,) = list(mio.FlowReader(buf).stream())
    assert isinstance(loaded, http.HTTPFlow)
    return loaded


def arm(addon: UsageFix, f: http.HTTPFlow) -> None:
    """The hooks mitmproxy runs before the first chunk of a response."""
    addon.requestheaders(f)
    addon.request(f)
    addon.responseheaders(f)


def run_stream(addon: UsageFix, f: http.HTTPFlow, chunks: list[bytes]) -> bytes:
    """Drive the hooks and the stream callable as mitmproxy's HTTP layer does."""
    assert f.response is not None
    body, f.response.raw_content = f.response.raw_content, None
    arm(addon, f)
    stream = f.response.stream
    assert callable(stream)
    out = b""
    for c in [*chunks, b""]:
        pieces = stream(c)
        assert isinstance(pieces, list) and all(pieces), "never an empty piece mid-stream"
        out += b"".join(pieces)
    addon.response(f)
    assert body is not None
    return out


def test_bad_option_stops_with_a_clear_message() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"usage_max_event_bytes: 10 is too small"):
            tctx.configure(addon, usage_max_event_bytes=10)
        tctx.configure(addon, usage_max_event_bytes=65536)
        assert addon.max_event_bytes == 65536


def test_requests_to_llm_endpoints_ask_for_identity_encoding() -> None:
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(b"", "application/json")
        addon.requestheaders(f)
        assert f.request.headers["accept-encoding"] == "identity"
        other = llm_flow(b"", "application/json", path="/v1/models")
        addon.requestheaders(other)
        assert other.request.headers["accept-encoding"] == "gzip, br"


async def test_json_body_with_the_founding_bug_is_fixed_and_recorded() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(FOUNDING_JSON, "application/json")
        await tctx.cycle(addon, f)
        assert f.response is not None
        usage = json.loads(f.response.content or b"")["usage"]
        assert usage["prompt_tokens"] == 107208
        assert usage["total_tokens"] == 107578
        assert f.response.headers["content-length"] == str(len(f.response.raw_content or b""))
        f = roundtrip(f)
        rec = f.metadata["usagefix"]
        assert rec["status"] == "rewritten"
        assert rec["dialect"] == "openai_chat"
        assert rec["usage_before"]["input_total"] == 1678
        assert rec["usage_after"]["input_total"] == 107208
        assert [r["rule"] for r in rec["rules"]] == ["R1", "I3"]
        # Only the span that differs is kept (prompt_tokens 1678 → 107208 … total 2048 → 107578).
        assert rec["changes"] == [
            {
                "index": 0,
                "offset": FOUNDING_JSON.index(b'678,"completion'),
                "original": '678,"completion_tokens":370,"total_tokens":204',
                "rewritten": '07208,"completion_tokens":370,"total_tokens":10757',
            }
        ]
        assert f.comment == "prompt 1678→107208 · R1"


async def test_gzip_json_body_is_fixed_and_stays_gzip() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(gzip.compress(FOUNDING_JSON), "application/json", headers={"content_encoding": "gzip"})
        await tctx.cycle(addon, f)
        assert f.response is not None
        assert f.response.headers["content-encoding"] == "gzip"
        assert json.loads(gzip.decompress(f.response.raw_content or b""))["usage"]["prompt_tokens"] == 107208


async def test_correct_json_body_is_left_byte_for_byte() -> None:
    body = (GOLDEN / "openai_chat" / "ok-prompt-cache.upstream.json").read_bytes()
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(body, "application/json; charset=utf-8")
        await tctx.cycle(addon, f)
        assert f.response is not None and f.response.raw_content == body
        assert f.metadata["usagefix"]["status"] == "unchanged"


@pytest.mark.parametrize("status", [400, 429, 500])
async def test_error_responses_pass_untouched(status: int) -> None:
    body = b'{"error":{"message":"usage: prompt_tokens 1678","type":"invalid_request_error"}}'
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(body, "application/json", status=status)
        await tctx.cycle(addon, f)
        assert f.response is not None and f.response.raw_content == body
        rec = f.metadata["usagefix"]  # says what happened, claims nothing
        assert (rec["status"], rec["final_seen"], rec["usage_after"]) == ("http_error", False, None)
        assert rec["error"].startswith(f"the upstream answered HTTP {status} ")
        assert f.comment == rec["error"].removeprefix("the upstream answered ") and not f.marked


async def test_loaded_flows_are_renormalized_idempotently() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        # Recorded without the addon: the body is the upstream's; loading normalizes it.
        f = llm_flow(FOUNDING_SSE, "text/event-stream", live=False)
        await tctx.cycle(addon, f)
        assert f.response is not None and f.response.content == FIXED_SSE
        assert f.metadata["usagefix"]["status"] == "rewritten"
        state = roundtrip(f).get_state()
        # Loading the result again changes nothing.
        g = roundtrip(f)
        await tctx.cycle(addon, g)
        assert g.get_state() == state


async def test_loaded_flow_from_an_older_rule_is_redone_from_the_original() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(FOUNDING_SSE, "text/event-stream", live=False)
        await tctx.cycle(addon, f)
        # Pretend an older version of a rule had written 199999 where R1 now writes 107208 (the
        # record keeps only the span that differs: "07208…", after the common "1").
        assert f.response is not None and f.response.content is not None
        rec = f.metadata["usagefix"]
        assert rec["changes"][0]["rewritten"].startswith("07208")
        old_text = rec["changes"][0]["rewritten"].replace("07208", "99999")
        f.response.content = f.response.content.replace(b"107208", b"199999")
        rec["changes"][0]["rewritten"] = old_text
        await tctx.cycle(addon, f)
        assert f.response.content == FIXED_SSE
        assert f.metadata["usagefix"]["changes"][0]["rewritten"] != old_text


async def test_loaded_flow_without_body_is_left_alone() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(b"", "text/event-stream", live=False)
        assert f.response is not None
        f.response.raw_content = None  # "content missing": a stream saved without its body
        await tctx.cycle(addon, f)
        assert f.response.raw_content is None and "usagefix" not in f.metadata


def test_upstream_body_is_rebuilt_from_the_record() -> None:
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        out = run_stream(addon, f, [FOUNDING_SSE])
        assert rebuild_upstream(out, f.metadata["usagefix"]) == FOUNDING_SSE


async def test_secrets_are_redacted_in_what_is_saved() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(FOUNDING_JSON, "application/json")
        f.request.headers["authorization"] = "Bearer sk-live-PLANTED"
        f.request.headers["x-api-key"] = "sk-ant-PLANTED"
        f.request.headers["cookie"] = "session=PLANTED"
        f.request.query["key"] = "AIzaPLANTED"
        assert f.response is not None
        f.response.headers["set-cookie"] = "a=PLANTED"
        await tctx.cycle(addon, f)
        assert f.request.headers["authorization"] == "Bearer <redacted>"
        assert f.request.headers["x-api-key"] == "<redacted>"
        assert f.request.query["key"] == "<redacted>"
        buf = io.BytesIO()
        mio.FlowWriter(buf).add(f)
        assert b"PLANTED" not in buf.getvalue()


async def test_redaction_can_be_turned_off() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, usage_redact_secrets=False)
        f = llm_flow(FOUNDING_JSON, "application/json")
        f.request.headers["authorization"] = "Bearer sk-live-PLANTED"
        await tctx.cycle(addon, f)
        assert f.request.headers["authorization"] == "Bearer sk-live-PLANTED"


def test_stream_is_rewritten_in_flight_and_saved() -> None:
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        cuts = [FOUNDING_SSE[i : i + 37] for i in range(0, len(FOUNDING_SSE), 37)]
        out = run_stream(addon, f, cuts)
        assert out == FIXED_SSE
        assert f.response is not None
        assert "content-length" not in f.response.headers
        assert f.response.headers["transfer-encoding"] == "chunked"
        f = roundtrip(f)
        assert f.response is not None and f.response.raw_content == FIXED_SSE
        rec = f.metadata["usagefix"]
        assert rec["status"] == "rewritten" and rec["final_seen"] is True and rec["streamed"] is True
        assert rec["events"] == 5
        (change,) = rec["changes"]
        assert change["index"] == 3
        assert FIXED_SSE[change["offset"] :].startswith(change["rewritten"].encode())


def test_client_hanging_up_after_the_end_does_not_make_it_cut_off() -> None:
    # mitmproxy fires `error` ("Client disconnected.") after `response` when the client closes.
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        run_stream(addon, f, [FOUNDING_SSE])
        f.error = tflow.terr("Client disconnected.")
        addon.error(f)
        rec = f.metadata["usagefix"]
        assert rec["status"] == "rewritten" and "cut_off" not in rec["anomalies"] and rec["error"] is None


def test_client_hanging_up_after_done_before_the_upstream_ends_is_complete() -> None:
    # The OpenAI SDK closes on `[DONE]`; the upstream's end of body may not have come yet.
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        arm(addon, f)
        assert f.response is not None and callable(f.response.stream)
        f.response.stream(FOUNDING_SSE)
        f.error = tflow.terr("Client disconnected.")
        addon.error(f)
        rec = f.metadata["usagefix"]
        assert rec["status"] == "rewritten" and "cut_off" not in rec["anomalies"]


def test_gzip_stream_is_decoded_for_the_client() -> None:
    comp = zlib.compressobj(wbits=31)
    chunks = [
        comp.compress(FOUNDING_SSE[i : i + 100]) + comp.flush(zlib.Z_SYNC_FLUSH)
        for i in range(0, len(FOUNDING_SSE), 100)
    ]
    chunks.append(comp.flush())
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(b"".join(chunks), "text/event-stream", headers={"content_encoding": "gzip"})
        out = run_stream(addon, f, chunks)
        assert out == FIXED_SSE
        assert f.response is not None and "content-encoding" not in f.response.headers
        assert f.metadata["usagefix"]["content_encoding"] == "gzip"


def test_unknown_encoding_streams_untouched() -> None:
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(b"whatever", "text/event-stream", headers={"content_encoding": "compress"})
        arm(addon, f)
        assert f.response is not None and f.response.stream is True


def test_a_bug_in_the_rewriter_forwards_the_original_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from usagefix.dialects import openai_chat

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(openai_chat.DIALECT, "normalize_usage", boom)
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        out = run_stream(addon, f, [FOUNDING_SSE[:300], FOUNDING_SSE[300:]])
        assert out == FOUNDING_SSE
        rec = f.metadata["usagefix"]
        assert rec["status"] == "passthrough_error"
        assert "boom" in rec["error"]
        assert f.marked


def test_a_cut_off_stream_is_recorded_unmeasured() -> None:
    addon = UsageFix()
    with taddons.context(addon):
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        arm(addon, f)
        assert f.response is not None and callable(f.response.stream)
        cut = FOUNDING_SSE.index(b"data: {", 300) + 20
        sent = b"".join(f.response.stream(FOUNDING_SSE[:cut]))
        f.error = tflow.terr("peer closed connection without sending complete message body")
        addon.error(f)
        f = roundtrip(f)
        assert f.response is not None and f.response.raw_content == sent
        assert sent == FOUNDING_SSE[: FOUNDING_SSE.rindex(b"\n\n", 0, cut) + 2]
        rec = f.metadata["usagefix"]
        assert rec["status"] == "unmeasured" and rec["final_seen"] is False
        assert "cut_off" in rec["anomalies"]
        assert "peer closed" in rec["error"]


async def test_server_replayed_stream_is_rewritten_in_response() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        f.is_replay = "response"
        await tctx.cycle(addon, f)
        assert f.response is not None and f.response.content == FIXED_SSE
        assert f.metadata["usagefix"]["status"] == "rewritten"


def test_script_exports_the_addon() -> None:
    with taddons.context() as tctx:
        module = tctx.script(str(Path(__file__).parent.parent / "addon" / "normalize_usage.py"))
        assert [type(a).__name__ for a in module.addons] == ["UsageFix", "CommentColumn"]


# -- re-normalizing a saved flow (`mitmdump -nr IN -s addon -w OUT`) changes nothing -------------

PROFILES = """
[[profile]]
name = "watch-only"
host = "watch.example"
observe_only = true

[[profile]]
name = "cliproxy-claude"
model = "claude-*"
prompt_cache_reads = "excluded"
"""
AMBIGUOUS_JSON = (
    b'{"model":"claude-sonnet-4-5","choices":[],"usage":{"prompt_tokens":1678,"completion_tokens":370,'
    b'"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":1500}}}'
)


def sse_chunk(choices: list[Any], usage: dict[str, Any] | None, **extra: Any) -> bytes:
    obj = {"id": "chatcmpl-synthetic-9", "object": "chat.completion.chunk", "model": "claude-sonnet-4-5"}
    obj |= {"choices": choices, "usage": usage, **extra}
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


# A gateway that sends the usage chunk before the finish chunk: with `usage_request_stream_usage`
# the dropped usage chunk shares its offset with the change after it.
USAGE_BEFORE_FINISH = (
    sse_chunk([{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], None)
    + sse_chunk([], json.loads(FOUNDING_JSON)["usage"])
    + sse_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], None)
    + b"data: [DONE]\n\n"
)


def gzip_chunks(body: bytes) -> list[bytes]:
    comp = zlib.compressobj(wbits=31)
    chunks = [
        comp.compress(body[i : i + 100]) + comp.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(body), 100)
    ]
    return [*chunks, comp.flush()]


def capture(addon: UsageFix, case: str) -> http.HTTPFlow:
    """One live exchange through the addon, as `-w` saves it."""
    oversize = sse_chunk([{"index": 0, "delta": {"content": "x" * 6000}}], None) + FOUNDING_SSE
    body, chunks, media, headers = FOUNDING_SSE, None, "text/event-stream", {}
    if case == "stream usage requested":
        body = USAGE_BEFORE_FINISH
    elif case == "oversize event":
        body = oversize
    elif case == "gzip stream":
        chunks = gzip_chunks(FOUNDING_SSE)
        body, headers = b"".join(chunks), {"content_encoding": "gzip"}
    elif case == "declared repair":
        body, media = AMBIGUOUS_JSON, "application/json"
    elif case == "gzip body":
        body, media, headers = gzip.compress(FOUNDING_JSON), "application/json", {"content_encoding": "gzip"}
    elif case == "body with secrets kept":
        body, media = FOUNDING_JSON, "application/json"
    f = llm_flow(body, media, headers=headers)
    f.request.headers["authorization"] = "Bearer sk-live-PLANTED"
    f.request.content = json.dumps(
        {"model": "claude-sonnet-4-5", "stream": media != "application/json"}
    ).encode()
    if case == "observe-only profile":
        f.request.host = "watch.example"
    if case == "cut-off stream":
        arm(addon, f)
        assert f.response is not None and callable(f.response.stream)
        f.response.stream(FOUNDING_SSE[: FOUNDING_SSE.index(b"data: {", 300) + 20])
        f.error = tflow.terr("peer closed connection without sending complete message body")
        addon.error(f)
    elif media == "text/event-stream":
        run_stream(addon, f, chunks or [body[i : i + 57] for i in range(0, len(body), 57)])
    else:
        arm(addon, f)
        addon.response(f)
    return roundtrip(f)


EVERY_OPTION = {
    "usage_request_stream_usage": True,
    "usage_profiles": "PROFILES",
    "usage_redact_secrets": False,
    "usage_max_event_bytes": 4096,
}


@pytest.mark.parametrize("combined", [False, True], ids=["its own option", "every option at once"])
@pytest.mark.parametrize(
    ("case", "options", "status"),
    [
        ("stream", {}, "rewritten"),
        ("stream usage requested", {"usage_request_stream_usage": True}, "rewritten"),
        ("declared repair", {"usage_profiles": "PROFILES"}, "rewritten"),
        ("observe-only profile", {"usage_profiles": "PROFILES"}, "unchanged"),
        ("body with secrets kept", {"usage_redact_secrets": False}, "rewritten"),
        ("gzip stream", {}, "rewritten"),
        ("gzip body", {}, "rewritten"),
        ("cut-off stream", {}, "unmeasured"),
        ("oversize event", {"usage_max_event_bytes": 4096}, "rewritten"),
    ],
)
async def test_renormalizing_a_saved_flow_changes_nothing(
    case: str, options: dict[str, Any], status: str, combined: bool, tmp_path: Path
) -> None:
    options = EVERY_OPTION if combined else options
    if options.get("usage_profiles"):
        (tmp_path / "profiles.toml").write_text(PROFILES)
        options = {**options, "usage_profiles": str(tmp_path / "profiles.toml")}
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, **options)
        saved = capture(addon, case)
        if not combined:
            assert saved.metadata["usagefix"]["status"] == status
        kept = options.get("usage_redact_secrets") is False
        assert (
            saved.request.headers["authorization"] == f"Bearer {'sk-live-PLANTED' if kept else '<redacted>'}"
        )
        once = roundtrip(saved)
        await tctx.cycle(addon, once)
        twice = roundtrip(once)
        await tctx.cycle(addon, twice)
        assert roundtrip(once).get_state() == saved.get_state()
        assert roundtrip(twice).get_state() == saved.get_state()


# -- an old, tampered or foreign record never raises out of the addon ------------------------------

TAMPERED: dict[str, Any] = {
    "an offset as text": lambda r: r["changes"][0].update(offset=str(r["changes"][0]["offset"])),
    "changes not a list": lambda r: r.update(changes="all of them"),
    "a change without its original": lambda r: r["changes"][0].pop("original"),
    "content_encoding a number": lambda r: r.update(content_encoding=5),
    "stream_usage_added as text": lambda r: r.update(stream_usage_added="yes"),
    "held_back a number": lambda r: r.update(held_back=3),
    "error a list": lambda r: r.update(error=["cut off"]),
    "a later schema's change spans": lambda r: r["changes"][0].update(offset={"start": 0, "end": 9}),
    "not a record at all": lambda r: r.clear(),
}


@pytest.mark.parametrize("tamper", list(TAMPERED))
async def test_an_unreadable_record_is_no_record_and_is_logged(
    tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        run_stream(addon, f, [FOUNDING_SSE])
        f = roundtrip(f)
        TAMPERED[tamper](f.metadata["usagefix"])
        if tamper == "not a record at all":
            f.metadata["usagefix"] = "garbage"
        await tctx.cycle(addon, f)  # raises nothing
        # Normalized from the body as saved (the client's, already fixed): nothing left to repair.
        assert f.response is not None and f.response.content == FIXED_SSE
        rec = f.metadata["usagefix"]
        assert rec["status"] == "unchanged" and rec["changes"] == [] and rec["content_encoding"] is None
        assert f"{f.request.pretty_url}: unreadable record" in caplog.text


async def test_a_later_schema_with_more_keys_is_still_read() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        run_stream(addon, f, [FOUNDING_SSE])
        f = roundtrip(f)
        rec = f.metadata["usagefix"]
        rec["schema_version"] += 1
        rec["costs"] = {"before": -0.3}
        rec["changes"][0]["span"] = [0, 9]
        await tctx.cycle(addon, f)
        assert f.metadata["usagefix"]["status"] == "rewritten"  # rebuilt from the upstream's original
        assert f.response is not None and f.response.content == FIXED_SSE


async def test_a_stream_over_the_saved_body_bound_is_saved_without_it_and_memory_stays_bounded() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, usage_max_saved_body_bytes=len(FIXED_SSE) - 1)
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        out = run_stream(addon, f, [FOUNDING_SSE[:100], FOUNDING_SSE[100:]])
        assert out == FIXED_SSE  # the client's stream is the same: only what is saved changes
        assert f.response is not None and f.response.raw_content is None
        assert (st := stream_of(f.response.stream)) is not None and not st.sent
        saved = roundtrip(f)
        rec = saved.metadata["usagefix"]
        assert rec["status"] == "rewritten" and rec["body_saved"] is False
        assert f"body_not_saved:{len(FIXED_SSE)}" in rec["anomalies"]
        # Re-normalizing the saved flow leaves it, and its record, as they are.
        saved.live = False
        state = saved.get_state()
        await tctx.cycle(addon, saved)
        assert saved.get_state() == state

        # Within the bound the body is kept, and released from the stream once saved.
        tctx.configure(addon, usage_max_saved_body_bytes=len(FIXED_SSE))
        g = llm_flow(FOUNDING_SSE, "text/event-stream")
        assert run_stream(addon, g, [FOUNDING_SSE]) == FIXED_SSE
        assert g.response is not None and g.response.raw_content == FIXED_SSE
        assert (st := stream_of(g.response.stream)) is not None and not st.sent
        assert g.metadata["usagefix"]["body_saved"] is True


async def test_a_request_body_nested_past_what_python_parses_still_gets_its_response_fixed() -> None:
    # json.loads raises RecursionError on it: the request side fails open (no model read from it).
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = llm_flow(FOUNDING_JSON, "application/json")
        f.request.content = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        await tctx.cycle(addon, f)
        assert f.response is not None and b'"prompt_tokens":107208' in (f.response.content or b"")
        assert f.metadata["usagefix"]["status"] == "rewritten"


def test_finished_streamed_flows_held_in_a_cycle_are_freed_once_their_bodies_reach_the_budget() -> None:
    """mitmproxy's HTTP layer holds each flow in a reference cycle, so a finished flow (with the
    body the addon keeps for it) waits for CPython's full collection; the addon runs one once the
    bodies it handed to finished flows reach its budget (usagefix.reclaim)."""

    def finished_flow_in_a_cycle(addon: UsageFix) -> weakref.ref[http.HTTPFlow]:
        f = llm_flow(FOUNDING_SSE, "text/event-stream")
        layer: dict[str, object] = {"flow": f}
        layer["self"] = layer  # as HttpStream's state, bound methods of itself
        assert run_stream(addon, f, [FOUNDING_SSE]) == FIXED_SSE
        assert f.response is not None and f.response.raw_content == FIXED_SSE
        return weakref.ref(f)

    addon = UsageFix()
    addon.reclaim = Reclaimer(budget=2 * len(FIXED_SSE))
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic collection: only the addon's
    try:
        with taddons.context(addon):
            gc.collect()
            first = finished_flow_in_a_cycle(addon)
            assert first() is not None, "garbage in a cycle: reference counting does not free it"
            second = finished_flow_in_a_cycle(addon)  # the budget is reached: collected
            assert first() is None
            assert second() is not None and addon.reclaim.pending == 0
    finally:
        if was_enabled:
            gc.enable()
