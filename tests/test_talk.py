"""Tests for what the proxy says as it runs: the line per response, the summary at exit."""

from usagefix.record import UsageRecord
from usagefix.recordbuild import http_error_record, minimal_record
from usagefix.talk import Tally, live_line
from usagefix.usage import CanonicalUsage


def founding_bug() -> UsageRecord:
    return UsageRecord.model_validate(
        {
            "dialect": "openai_chat",
            "streamed": True,
            "status": "rewritten",
            "final_seen": True,
            "usage_before": {"input_total": 1678, "cache_read": 105530, "output_total": 370},
            "usage_after": {"input_total": 107208, "cache_read": 105530, "output_total": 370},
            "upstream_usage": {"prompt_tokens": 1678, "completion_tokens": 370, "total_tokens": 2048},
            "emitted_usage": {"prompt_tokens": 107208, "completion_tokens": 370, "total_tokens": 107578},
            "rules": [
                {"rule": "R1", "reason": "cache reads were left out of prompt_tokens"},
                {"rule": "I3", "reason": "total raised"},
                {"rule": "R1", "reason": "again"},
            ],
        }
    )


def test_one_line_per_response_leads_with_what_changed() -> None:
    assert live_line(founding_bug(), "gpt-4o", 200) == (
        "usagefix: openai_chat gpt-4o 200 rewritten prompt_tokens 1678→107208, total_tokens 2048→107578 (R1, I3)"
    )
    bare = founding_bug().model_copy(update={"rules": [], "upstream_usage": {"a": None}, "emitted_usage": {}})
    assert live_line(bare, None, None) == "usagefix: openai_chat rewritten a ∅→∅"
    unchanged = founding_bug().model_copy(update={"status": "unchanged"})
    assert live_line(unchanged, "m", 200) == "usagefix: openai_chat m 200 unchanged"
    unmeasured = founding_bug().model_copy(update={"status": "unmeasured"})
    assert (
        live_line(unmeasured, "m", 200) == "usagefix: openai_chat m 200 unmeasured: no usage in the response"
    )
    cut = unmeasured.model_copy(update={"error": "x" * 100})
    assert live_line(cut, "m", 200) == "usagefix: openai_chat m 200 unmeasured: " + "x" * 79 + "…"
    failed = minimal_record("anthropic", True, "boom")
    assert live_line(failed, "claude", 200) == "usagefix: anthropic claude 200 passthrough_error: boom"
    refused = http_error_record("openai_chat", None, 401, "Unauthorized", "the upstream")
    assert live_line(refused, "gpt-4o", 401) == "usagefix: openai_chat gpt-4o 401 http_error"


def test_the_summary_counts_responses_and_the_tokens_restored() -> None:
    tally = Tally()
    assert tally.summary() == "usagefix: 0 LLM responses: 0 rewritten, 0 unmeasured; 0 tokens restored"
    tally.add(founding_bug())
    assert tally.summary() == "usagefix: 1 LLM response: 1 rewritten, 0 unmeasured; 105,530 tokens restored"
    tally.add(founding_bug())
    tally.add(founding_bug().model_copy(update={"status": "unchanged"}))
    tally.add(founding_bug().model_copy(update={"usage_before": None}))  # unknown before: nothing counted
    tally.add(http_error_record("openai_chat", None, 500, "", "the upstream"))
    tally.add(
        founding_bug().model_copy(
            update={"status": "unmeasured", "usage_after": CanonicalUsage(input_total=1, output_total=1)}
        )
    )
    assert tally.summary() == (
        "usagefix: 6 LLM responses: 3 rewritten, 1 unmeasured, 1 http_error, 1 unchanged; 211,060 tokens restored"
    )
