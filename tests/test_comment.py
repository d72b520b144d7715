"""The flow comment (mitmweb's Comment column, the log line): the numbers first, short, no prefix."""

from __future__ import annotations

from usagefix.comment import COMMENT_MAX, summary
from usagefix.dialects import DIALECTS
from usagefix.record import RuleRecord, UsageRecord
from usagefix.recordbuild import build_record
from usagefix.rewriter import rewrite_body

FOUNDING = (
    b'{"model":"claude-sonnet-4-5","usage":{"prompt_tokens":1678,"completion_tokens":370,'
    b'"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":105530}}}'
)


def rec(status: str, **kw: object) -> UsageRecord:
    return UsageRecord.model_validate(
        {
            "dialect": "openai_chat",
            "streamed": True,
            "status": status,
            "final_seen": status in ("rewritten", "unchanged"),
            **kw,
        }
    )


def test_the_founding_bug_leads_with_its_numbers_and_the_rule() -> None:
    text = summary(build_record(rewrite_body(DIALECTS["openai_chat"], FOUNDING).result))
    # The total changed too, as a consequence: counted, not spelled out; I3 left out beside R1.
    assert text == "prompt 1678→107208 · R1"


def test_a_total_alone_and_its_rule_are_shown() -> None:
    r = rec(
        "rewritten",
        upstream_usage={"total_tokens": 5, "prompt_tokens": 3, "completion_tokens": 4},
        emitted_usage={"total_tokens": 7, "prompt_tokens": 3, "completion_tokens": 4},
        rules=[RuleRecord(rule="I3", reason="total raised")],
    )
    assert summary(r) == "total 5→7 · I3"


def test_a_rewrite_without_a_usage_diff_or_rule_still_says_so() -> None:
    assert summary(rec("rewritten")) == "usage rewritten"
    dropped = rec(
        "rewritten",
        upstream_usage={"prompt_tokens": 1},
        rules=[RuleRecord(rule="R1", reason="x"), RuleRecord(rule="R1", reason="y")],
    )
    assert summary(dropped) == "prompt 1→∅ · R1"


def test_other_statuses_say_what_happened_in_a_few_words() -> None:
    assert summary(rec("unchanged")) == "usage correct"
    assert summary(rec("unmeasured")) == "unmeasured · no usage in the response"
    assert summary(rec("unmeasured", error="peer closed")) == "unmeasured · cut off (peer closed)"
    assert summary(rec("undecodable_encoding", error="compress")) == "untouched · compress"
    assert summary(rec("passthrough_error", error="boom")) == "passed through untouched · error: boom"


def test_a_long_comment_is_clipped_to_the_column() -> None:
    text = summary(rec("passthrough_error", error="x" * 500))
    assert len(text) == COMMENT_MAX and text.endswith("…") and not text.startswith("usagefix")


def test_field_names_are_shortened_to_a_word() -> None:
    gemini = rec(
        "rewritten",
        upstream_usage={"promptTokenCount": 3, "totalTokenCount": 4},
        emitted_usage={"promptTokenCount": 9, "totalTokenCount": 10},
    )
    assert summary(gemini) == "prompt 3→9"
    nested = rec(
        "rewritten",
        upstream_usage={"prompt_tokens_details": {"cache_write_tokens": None}, "cost": 1},
        emitted_usage={"prompt_tokens_details": {"cache_write_tokens": 5}, "cost": 1},
    )
    assert summary(nested) == "cache_write ∅→5"
    odd = rec("rewritten", upstream_usage={"cost": 1, "Tokens": 1}, emitted_usage={"cost": 2, "Tokens": 2})
    assert summary(odd) == "cost 1→2"
    assert (
        summary(rec("rewritten", upstream_usage={"Tokens": 1}, emitted_usage={"Tokens": 2})) == "Tokens 1→2"
    )


def test_a_saved_record_reads_back_into_its_line_and_anything_else_into_none() -> None:
    from usagefix.comment import saved_summary

    saved = build_record(rewrite_body(DIALECTS["openai_chat"], FOUNDING).result).model_dump(mode="json")
    assert saved["usage_after"]["total"] == 107578  # saved with the computed total
    assert saved_summary(saved) == "prompt 1678→107208 · R1"
    assert saved_summary({"status": 3}) == ""
