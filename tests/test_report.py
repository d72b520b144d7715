"""The text rendering of a record (`usagefix diff`, the "usage diff" view), from stored records.

Each record here is built by the same code the addon runs and stored as the addon stores it
(`model_dump(mode="json")`): what a flow file holds.
"""

from __future__ import annotations

import json
from typing import Any

from usagefix.dialects import DIALECTS
from usagefix.record import build_record, minimal_record
from usagefix.report import render_record
from usagefix.rewriter import rewrite_body, rewrite_stream


def chat_chunk(usage: dict[str, Any] | None, finish: str | None = None) -> bytes:
    obj = {
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": finish}],
        "usage": usage,
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def stored(body: bytes, *, cut_off: str | None = None) -> dict[str, Any]:
    _, rw = rewrite_stream(DIALECTS["openai_chat"], body, complete=cut_off is None)
    return build_record(rw.outcome, cut_off=cut_off).model_dump(mode="json")


def test_a_cut_stream_shows_its_last_partial_snapshot_never_as_the_usage() -> None:
    # vLLM's continuous usage, cut before the final chunk (R8): the numbers are not the response's.
    partial = [{"prompt_tokens": 20, "completion_tokens": n, "total_tokens": 20 + n} for n in (1, 2)]
    text = render_record(stored(b"".join(map(chat_chunk, partial)), cut_off="peer closed connection"))
    lines = text.splitlines()
    assert lines[:2] == ["usagefix: unmeasured (openai_chat, streamed)", "  error: peer closed connection"]
    assert any(line.split() == ["completion_tokens", "2", "2"] for line in lines)
    assert any(line.startswith("  last partial snapshot (not final)") for line in lines)
    assert not any(line.startswith("  canonical") for line in lines)
    assert lines[-1] == "final usage not seen: the numbers are unknown (unmeasured), not zero"
    # The same stream, finished: its canonical usage, and nothing said about unknown numbers.
    done = stored(b"".join(map(chat_chunk, partial)) + chat_chunk(partial[-1], "stop") + b"data: [DONE]\n\n")
    text = render_record(done)
    assert "  canonical" in text and "not final" not in text and "final usage not seen" not in text


def test_a_stream_without_usage_shows_no_usage_tables_and_says_unknown() -> None:
    text = render_record(stored(chat_chunk(None, "stop") + b"data: [DONE]\n\n"))
    assert text == (
        "usagefix: unmeasured (openai_chat, streamed)\n"
        "\n"
        "anomalies:\n"
        "  no_final_usage\n"
        "\n"
        "final usage not seen: the numbers are unknown (unmeasured), not zero\n"
    )


def test_a_passthrough_error_says_why_and_claims_nothing() -> None:
    rec = minimal_record("anthropic", True, "the record could not be built: RecursionError: too deep")
    assert render_record(rec.model_dump(mode="json")) == (
        "usagefix: passthrough_error (anthropic, streamed)\n"
        "  error: the record could not be built: RecursionError: too deep\n"
        "\n"
        "final usage not seen: the numbers are unknown (unmeasured), not zero\n"
    )


def test_a_record_missing_every_key_still_renders() -> None:
    # Records written by another version of the addon: whatever is absent is not shown.
    assert render_record({}) == "usagefix: ? (?, JSON body)\n"


def test_a_rewritten_body_shows_each_changed_field_and_the_rule_with_its_change() -> None:
    body = (
        b'{"model":"claude-sonnet-4-5","usage":{"prompt_tokens":1678,"completion_tokens":370,'
        b'"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":105530}}}'
    )
    rec = build_record(rewrite_body(DIALECTS["openai_chat"], body).outcome).model_dump(mode="json")
    rows = [line.split() for line in render_record(rec).splitlines()]
    assert rows[0] == ["usagefix:", "rewritten", "(openai_chat,", "JSON", "body)"]
    assert ["prompt_tokens", "1678", "107208", "◀", "changed"] in rows
    assert ["prompt_tokens_details.cached_tokens", "105530", "105530"] in rows  # nested, unchanged
    assert ["input_total", "1678", "107208", "◀", "changed"] in rows
    assert "R1: cache reads were left out of prompt_tokens (input_total 1678→107208)" in render_record(rec)
