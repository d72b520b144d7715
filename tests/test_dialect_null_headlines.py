"""A headline count sent as `null` is unknown, never 0, in every dialect.

Where a dialect reads an *absent* headline as 0 (`absent_headline="zero"`: Gemini's proto3 JSON
omits zero counts; an Anthropic `message_delta` without input counts keeps `message_start`'s, R4),
an explicit `null` is still no number: when nothing else in the response reports that count, the
response is unmeasured (`unreported:KEY`, no total, no cost) and its usage block passes untouched.
Bedrock's counts are required (`TokenUsage.inputTokens`, Required: Yes), so an absent one is
unknown too. A `null` in a snapshot that is not the response's last word (Anthropic's
`message_start`, a Gemini chunk before the finishing one) is not flagged: a later one may say it.
In an Anthropic stream a `null` input or cache count in `message_delta` keeps `message_start`'s
(the SDK's accumulator replaces those only when not None), while its `output_tokens` is replaced
unconditionally: a `null` there leaves the output unknown, never `message_start`'s partial count.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from test_dialect_wire import chunk, frame, sse, through
from usagefix.dialects import DIALECTS, Context, Tally
from usagefix.recordbuild import build_record
from usagefix.rewriter import rewrite_body

CLAUDE = {"id": "msg_t", "type": "message", "role": "assistant", "model": "claude-t", "content": []}

# (dialect, whole body, the headline left unknown)
NULL_IN_A_BODY: dict[str, tuple[str, dict[str, Any], str]] = {
    "anthropic: input_tokens null beside cache reads": (
        "anthropic",
        {**CLAUDE, "usage": {"input_tokens": None, "cache_read_input_tokens": 1200, "output_tokens": 5}},
        "input_tokens",
    ),
    "anthropic: output_tokens null": (
        "anthropic",
        {**CLAUDE, "usage": {"input_tokens": 30, "output_tokens": None}},
        "output_tokens",
    ),
    "gemini: promptTokenCount null beside cached content (R1 would write 500)": (
        "gemini",
        {
            "candidates": [{"finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": None,
                "candidatesTokenCount": 10,
                "cachedContentTokenCount": 500,
                "totalTokenCount": 510,
            },
        },
        "promptTokenCount",
    ),
    "gemini: candidatesTokenCount null": (
        "gemini",
        {
            "candidates": [{"finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": None, "totalTokenCount": 7},
        },
        "candidatesTokenCount",
    ),
    "bedrock: Converse inputTokens null": (
        "bedrock",
        {"output": {}, "usage": {"inputTokens": None, "outputTokens": 13, "totalTokens": 13}},
        "inputTokens",
    ),
    "bedrock: a Claude body through InvokeModel with input_tokens null": (
        "bedrock",
        {**CLAUDE, "usage": {"input_tokens": None, "cache_read_input_tokens": 1200, "output_tokens": 265}},
        "input_tokens",
    ),
    "bedrock: invocation metrics without inputTokenCount": (
        "bedrock",
        {"amazon-bedrock-invocationMetrics": {"outputTokenCount": 6, "invocationLatency": 500}},
        "inputTokens",
    ),
}


@pytest.mark.parametrize(("dialect", "body", "key"), NULL_IN_A_BODY.values(), ids=NULL_IN_A_BODY.keys())
def test_a_null_headline_in_a_body_is_unknown_not_zero(dialect: str, body: dict[str, Any], key: str) -> None:
    tally = Tally()
    assert DIALECTS[dialect].normalize_body(json.dumps(body), tally, Context()) is None  # untouched
    assert f"unreported:{key}" in tally.anomalies
    assert tally.final_seen is False and tally.before is None and tally.after is None


@pytest.mark.parametrize(("dialect", "body", "key"), NULL_IN_A_BODY.values(), ids=NULL_IN_A_BODY.keys())
def test_through_the_rewriter_a_null_headline_leaves_the_response_unmeasured(
    dialect: str, body: dict[str, Any], key: str
) -> None:
    result = rewrite_body(DIALECTS[dialect], json.dumps(body).encode())
    rec = build_record(result.result)
    assert result.body is None and rec.status == "unmeasured"  # no 0 written, no total, no cost
    assert rec.usage_before is None and rec.usage_after is None and rec.rules == []
    assert f"unreported:{key}" in rec.anomalies


def test_an_absent_gemini_headline_still_reads_as_zero() -> None:
    # proto3 JSON omits zero counts: a blocked prompt has no candidatesTokenCount at all.
    body = b'{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}'
    rec = build_record(rewrite_body(DIALECTS["gemini"], body).result)
    assert rec.status == "unchanged" and rec.usage_after is not None and rec.usage_after.total == 7


def start(usage: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message_start", "message": {**CLAUDE, "usage": usage}}


def delta(usage: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}


def anthropic_events(*events: dict[str, Any]) -> bytes:
    """The events, then `message_stop`."""
    return b"".join(
        sse((e["type"], json.dumps(e, separators=(",", ":")))) for e in (*events, {"type": "message_stop"})
    )


def delta_usage(out: bytes) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(out.split(b"data: ")[2].split(b"\n")[0])["usage"]
    return found


def test_anthropic_a_null_input_nobody_corrects_leaves_the_stream_unmeasured() -> None:
    body = anthropic_events(
        start({"input_tokens": None, "cache_read_input_tokens": 9511, "output_tokens": 1}),
        delta({"output_tokens": 20}),
    )
    out, rec, ended = through("anthropic", body)
    assert out == body and ended  # no R4 fill-in: the block passes as it came
    assert rec.status == "unmeasured" and rec.usage_after is None and rec.rules == []
    assert "unreported:input_tokens" in rec.anomalies


def test_anthropic_a_null_input_in_message_start_is_not_the_last_word() -> None:
    body = anthropic_events(
        start({"input_tokens": None, "output_tokens": 1}),
        delta({"input_tokens": 11, "output_tokens": 20}),
    )
    out, rec, _ = through("anthropic", body)
    assert out == body and rec.status == "unchanged"
    assert rec.usage_after is not None and (rec.usage_after.input_total, rec.usage_after.total) == (11, 31)
    assert not any(a.startswith("unreported:") for a in rec.anomalies)


def test_anthropic_a_null_input_in_message_delta_keeps_message_starts() -> None:
    # The SDK's accumulator: `if event.usage.input_tokens is not None: … = event.usage.input_tokens`.
    body = anthropic_events(
        start({"input_tokens": 11, "output_tokens": 1}),
        delta({"input_tokens": None, "output_tokens": 20}),
    )
    out, rec, _ = through("anthropic", body)
    assert delta_usage(out) == {"input_tokens": 11, "output_tokens": 20}  # R4, as before
    assert rec.status == "rewritten" and [r.rule for r in rec.rules] == ["R4"]
    assert rec.usage_after is not None and rec.usage_after.total == 31


def test_anthropic_a_null_output_in_message_delta_is_unknown_not_message_starts_partial() -> None:
    # The SDK assigns `output_tokens` from every message_delta, None included: message_start's
    # count (1, before anything was generated) is not the response's.
    body = anthropic_events(
        start({"input_tokens": 11, "output_tokens": 1}),
        delta({"input_tokens": 11, "output_tokens": None}),
    )
    out, rec, _ = through("anthropic", body)
    assert out == body and rec.status == "unmeasured" and rec.rules == []
    assert "unreported:output_tokens" in rec.anomalies
    # A later delta that reports it measures the response again.
    body = anthropic_events(
        start({"input_tokens": 11, "output_tokens": 1}),
        delta({"input_tokens": 11, "output_tokens": None}),
        delta({"output_tokens": 25}),
    )
    _, rec = through("anthropic", body)[:2]
    assert rec.status == "rewritten" and rec.usage_after is not None and rec.usage_after.total == 36
    assert not any(a.startswith("unreported:") for a in rec.anomalies)  # known now: not unreported


def test_anthropic_a_last_delta_that_leaves_the_output_unknown_unmeasures_an_earlier_one() -> None:
    # Several message_deltas (server tools): the last is the last word, and it says null.
    body = anthropic_events(
        start({"input_tokens": 11, "output_tokens": 1}),
        delta({"input_tokens": 11, "output_tokens": 20}),
        delta({"input_tokens": 11, "output_tokens": None}),
    )
    out, rec, _ = through("anthropic", body)
    assert out == body and rec.status == "unmeasured" and rec.final_seen is False
    assert "unreported:output_tokens" in rec.anomalies
    assert rec.emitted_usage == {"input_tokens": 11, "output_tokens": None}  # as it came


def gemini_chunk(usage: dict[str, Any], *, finish: bool) -> bytes:
    cand: dict[str, Any] = {"content": {"parts": [{"text": "x"}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = "STOP"
    return sse((None, json.dumps({"candidates": [cand], "usageMetadata": usage})))


def test_gemini_a_null_headline_on_the_finishing_chunk_leaves_the_stream_unmeasured() -> None:
    first = gemini_chunk(
        {"promptTokenCount": 7, "candidatesTokenCount": 1, "totalTokenCount": 8}, finish=False
    )
    last = gemini_chunk(
        {"promptTokenCount": None, "candidatesTokenCount": 9, "totalTokenCount": 16}, finish=True
    )
    out, rec, _ = through("gemini", first + last)
    assert out == first + last and rec.status == "unmeasured"
    assert "unreported:promptTokenCount" in rec.anomalies


def test_gemini_a_null_headline_before_the_finishing_chunk_is_not_flagged() -> None:
    first = gemini_chunk({"promptTokenCount": None, "candidatesTokenCount": 1}, finish=False)
    last = gemini_chunk(
        {"promptTokenCount": 7, "candidatesTokenCount": 9, "totalTokenCount": 16}, finish=True
    )
    out, rec, _ = through("gemini", first + last)
    assert out == first + last and rec.status == "unchanged" and rec.anomalies == []
    assert rec.usage_after is not None and rec.usage_after.total == 16


def test_bedrock_a_metadata_event_without_an_input_count_is_unmeasured() -> None:
    for usage in ({"inputTokens": None, "outputTokens": 13, "totalTokens": 13}, {"outputTokens": 13}):
        body = frame("metadata", json.dumps({"usage": usage, "metrics": {"latencyMs": 9}}).encode())
        out, rec, ended = through("bedrock", body, "eventstream")
        assert out == body and ended and rec.status == "unmeasured" and rec.usage_after is None
        assert "unreported:inputTokens" in rec.anomalies


def test_bedrock_invocation_metrics_without_an_input_count_are_unmeasured() -> None:
    inner = {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"outputTokenCount": 6}}
    body = chunk(json.dumps(inner).encode())
    out, rec, ended = through("bedrock", body, "eventstream")
    assert out == body and ended and rec.status == "unmeasured" and rec.usage_after is None
    assert "unreported:inputTokens" in rec.anomalies
