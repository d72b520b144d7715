"""The text rendering of a record (`usagefix diff`, the "usage diff" view), from stored records.

Each record here is built by the same code the addon runs and stored as the addon stores it
(`model_dump(mode="json")`): what a flow file holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from usagefix.dialects import DIALECTS
from usagefix.legend import describe
from usagefix.recordbuild import build_record, minimal_record
from usagefix.report import WIDTH, impact, render_record
from usagefix.rewriter import rewrite_body, rewrite_stream

GOLDEN = Path(__file__).resolve().parents[1] / "flows" / "golden"


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
    return build_record(rw.result, cut_off=cut_off).model_dump(mode="json")


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
        "anomalies (⚠ marks such a flow in the list):\n"
        "  no_final_usage — the stream ended without its final usage: unmeasured\n"
        "\n"
        "final usage not seen: the numbers are unknown (unmeasured), not zero\n"
    )


def test_a_passthrough_error_says_why_and_claims_nothing() -> None:
    rec = minimal_record("anthropic", True, "the record could not be built: RecursionError: too deep")
    assert render_record(rec.model_dump(mode="json")) == (
        "usagefix: passthrough_error (anthropic, streamed)\n"
        "  error: the record could not be built: RecursionError: too deep\n"
        "  passed through untouched: ⚠ marks such a flow in the list\n"
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
    rec = build_record(rewrite_body(DIALECTS["openai_chat"], body).result).model_dump(mode="json")
    rows = [line.split() for line in render_record(rec).splitlines()]
    assert rows[0] == ["usagefix:", "rewritten", "(openai_chat,", "JSON", "body)"]
    assert ["prompt_tokens", "1678", "107208", "◀", "changed"] in rows
    assert ["prompt_tokens_details.cached_tokens", "105530", "105530"] in rows  # nested, unchanged
    assert ["input_total", "1678", "107208", "◀", "changed"] in rows
    assert "R1: cache reads were left out of prompt_tokens (input_total 1678→107208)" in render_record(rec)


def anthropic_stored(case: str) -> dict[str, Any]:
    body = (GOLDEN / "anthropic" / f"{case}.upstream.sse").read_bytes()
    _, rw = rewrite_stream(DIALECTS["anthropic"], body, complete=True)
    return build_record(rw.result).model_dump(mode="json")


FOUNDING = (
    b'{"model":"claude-sonnet-4-5","usage":{"prompt_tokens":1678,"completion_tokens":370,'
    b'"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":105530}}}'
)


def test_the_impact_line_comes_first_in_tokens_and_says_negative() -> None:
    rec = build_record(rewrite_body(DIALECTS["openai_chat"], FOUNDING).result).model_dump(mode="json")
    said = impact(rec)
    assert said == (
        "impact (tokens a standard consumer computes, upstream → client): input 1678 → 107208, "
        "uncached input −103852 → 1678, total 2048 → 107578 (negative: a negative cost downstream)"
    )
    lines = render_record(rec).splitlines()
    assert lines[1].startswith("  impact (tokens") and all(len(ln) <= WIDTH for ln in lines)
    # Money, when the pricing work has it, and notes (the session) join the top, worded by them.
    priced = render_record(rec, money="cost $-0.31 → $0.03", notes=["session: s-1 (client header)"])
    top = " ".join(priced.split("\n\n")[0].split())
    assert top.endswith("downstream); cost $-0.31 → $0.03 session: s-1 (client header)")


def test_no_impact_is_claimed_without_final_usage_and_none_when_nothing_changed() -> None:
    assert (
        impact({"usage_after": {"input_total": 1, "output_total": 1, "total": 2}, "final_seen": False})
        is None
    )
    assert impact({}) is None
    same = {
        "usage_before": {"input_total": 5, "output_total": 1},
        "usage_after": {"input_total": 5, "output_total": 1},
    }
    assert impact(same) == "impact: none: a standard consumer computes the same tokens from both blocks"
    # Counts the upstream did not give: shown as unknown, never as 0.
    assert impact({"usage_before": {}, "usage_after": {"output_total": 4}}) == (
        "impact (tokens a standard consumer computes, upstream → client): output — → 4"
    )


def test_anthropic_r4_shows_what_message_start_said_in_the_upstream_column() -> None:
    # The last message_delta said only output_tokens; message_start said the rest. Showing "—"
    # there made the client's numbers look invented (×6.5 the bill, a user concluded).
    text = render_record(anthropic_stored("fix-cached-delta-crlf"))
    rows = [line.split() for line in text.splitlines()]
    assert ["input_tokens", "3", "(start)", "3", "◀", "carried"] in rows
    assert ["cache_read_input_tokens", "9511", "(start)", "9511", "◀", "carried"] in rows
    assert "(start): the upstream's last usage block left the count out" in text
    assert ["output_tokens", "1944", "1944"] in rows
    assert "impact: none for a consumer that merges message_start" in text
    # The whole reason of the rule is there, wrapped, not clipped.
    assert "cache_read_input_tokens (absent or null); carried over from message_start" in " ".join(
        text.split()
    )
    assert all(len(line) <= WIDTH for line in text.splitlines())


def test_an_r4_count_the_start_did_not_give_is_unknown_and_a_changed_one_is_marked() -> None:
    rec = anthropic_stored("fix-old-style-delta")
    rows = [line.split() for line in render_record(rec).splitlines()]
    assert ["input_tokens", "11", "(start)", "11", "◀", "carried"] in rows
    # A client count that differs from what the stream said (another rule moved it) is a change.
    rec["emitted_usage"]["input_tokens"] = 12
    rows = [line.split() for line in render_record(rec).splitlines()]
    assert ["input_tokens", "11", "(start)", "12", "◀", "changed"] in rows
    # Without a canonical input the start's input is not guessed.
    rec["usage_before"] = {"output_total": 6}
    rows = [line.split() for line in render_record(rec).splitlines()]
    assert ["input_tokens", "—", "12", "◀", "changed"] in rows


def test_every_anomaly_is_explained_in_words_and_unknown_codes_are_shown_as_they_are() -> None:
    text = render_record(
        {
            "status": "rewritten",
            "anomalies": ["negative_count:prompt_tokens", "oversize_events:2", "brand_new"],
        }
    )
    assert "anomalies (⚠ marks such a flow in the list):" in text
    assert "  negative_count:prompt_tokens — a negative count (raised to 0, I4)" in text
    assert "  oversize_events:2 — events over usage_max_event_bytes" in text
    assert "\n  brand_new\n" in text
    assert describe("invalid_usage: 'x' is not a number").startswith("invalid_usage: 'x' is not a number — ")


def test_money_is_shown_even_without_final_usage_to_compare() -> None:
    rec = {"status": "unmeasured", "final_seen": False, "usage_after": {"input_total": 1}}
    assert "  cost unpriced (no model named)" in render_record(rec, money="cost unpriced (no model named)")
