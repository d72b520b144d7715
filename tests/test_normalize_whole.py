"""Normalizing a whole response, without mitmproxy's harness: body + prior record in, body + record
out (usagefix.renormalize). The addon and end-to-end tests prove the same through the hooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from usagefix.dialects import DIALECTS, Context
from usagefix.prior import rebuild_upstream
from usagefix.profiles import Profile
from usagefix.record import METADATA_KEY
from usagefix.renormalize import WholeResponse, normalize_whole

GOLDEN = Path(__file__).parent.parent / "flows" / "golden" / "openai_chat"
JSON = (GOLDEN / "fix-founding-bug.upstream.json").read_bytes()
SSE = (GOLDEN / "fix-founding-bug-stream.upstream.sse").read_bytes()
CHAT = DIALECTS["openai_chat"]


def whole(body: bytes | None, media: str = "application/json", **kw: Any) -> WholeResponse:
    fields: dict[str, Any] = dict(
        dialect=CHAT,
        context=Context(),
        path="/v1/chat/completions",
        status_code=200,
        reason="OK",
        media_type=media,
        headers=(("content-type", media),),
        body=body,
        where="POST http://x/v1/chat/completions",
    )
    fields.update(kw)
    return WholeResponse(**fields)


def test_a_json_body_is_normalized_and_a_second_pass_over_its_record_changes_nothing() -> None:
    done = normalize_whole(whole(JSON), 1 << 20)
    assert done is not None and done.body is not None and done.body != JSON
    assert done.record.status == "rewritten" and done.record.streamed is False
    saved = done.record.model_dump(mode="json")
    assert rebuild_upstream(done.body, saved) == JSON
    again = normalize_whole(whole(done.body, metadata={METADATA_KEY: saved}), 1 << 20)
    assert again is not None and again.body is None  # the body as saved: idempotent
    assert again.record.model_dump(mode="json")["changes"] == saved["changes"]


def test_a_recorded_stream_is_normalized_anew_from_the_upstreams_original() -> None:
    first = normalize_whole(whole(SSE, "text/event-stream"), 1 << 20)
    assert first is not None and first.body is not None and first.record.streamed
    saved = first.record.model_dump(mode="json")
    again = normalize_whole(whole(first.body, "text/event-stream", metadata={METADATA_KEY: saved}), 1 << 20)
    assert again is not None and again.body is None and again.record.error is None


def test_a_stream_recorded_cut_off_stays_cut_off_by_the_same_error() -> None:
    body = SSE[: len(SSE) // 2]
    first = normalize_whole(whole(body, "text/event-stream"), 1 << 20)
    assert first is not None
    saved = {**first.record.model_dump(mode="json"), "error": "peer closed"}
    meta = {METADATA_KEY: saved}
    cut = normalize_whole(whole(body, "text/event-stream", metadata=meta, error="peer closed"), 1 << 20)
    assert cut is not None and cut.record.error == "peer closed"
    other = normalize_whole(whole(body, "text/event-stream", metadata=meta, error="another"), 1 << 20)
    assert other is not None and other.record.error != "another"


@pytest.mark.parametrize("by_replay, by", [(False, "the upstream"), (True, "server replay")])
def test_an_error_status_passes_untouched_and_the_record_says_who_answered(by_replay: bool, by: str) -> None:
    ctx = Context(profile=Profile(name="p", dialect="openai_chat"))
    done = normalize_whole(
        whole(b'{"error":{}}', status_code=429, reason="Too Many", context=ctx, by_replay=by_replay), 1
    )
    assert done is not None and done.body is None
    rec = done.record.model_dump(mode="json")
    assert rec["profile"] == "p" and rec["status"] == "http_error"
    assert rec["error"] == f"{by} answered HTTP 429 Too Many: no usage read"


def test_what_the_dialect_does_not_read_or_a_missing_body_is_left_alone() -> None:
    assert normalize_whole(whole(b"<html>", "text/html"), 1 << 20) is None
    assert normalize_whole(whole(None), 1 << 20) is None
    done = normalize_whole(whole(b'{"id":"x"}', "application/vnd.x+json"), 1 << 20)
    assert done is not None and done.body is None  # no usage: the body as saved


def test_an_unreadable_or_unusable_prior_record_is_logged_and_the_body_used_as_saved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        done = normalize_whole(whole(JSON, metadata={METADATA_KEY: "not a record"}), 1 << 20)
    assert done is not None and done.record.status == "rewritten"
    assert "unreadable record" in caplog.text
    first = normalize_whole(whole(JSON), 1 << 20)
    assert first is not None
    saved = first.record.model_dump(mode="json")
    with caplog.at_level(logging.WARNING):
        normalize_whole(whole(b"{}", metadata={METADATA_KEY: saved}), 1 << 20)
    assert "cannot rebuild the upstream body" in caplog.text
    assert normalize_whole(whole(JSON, metadata={"other": 1}), 1 << 20) is not None
