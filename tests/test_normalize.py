"""Normalization, rule by rule and invariant by invariant (usage-semantics §8.2, §8.4).

The tables drive the pure functions of `usagefix.normalize` over every rule (R1–R6, R8) and
invariant (I1–I4), with nulls, cut streams, declarations the numbers contradict, and the
coincidences that must not pass for proof. The wire tests below them prove each promise of the
README on real-shaped bodies, through the dialects: nothing invented, nothing lost, nothing
wrongly final.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagefix.dialects import DIALECTS, Context
from usagefix.normalize import (
    Declared,
    ExclusiveReport,
    GeminiReport,
    InclusiveReport,
    Reader,
    UsageShapeError,
    normalize_exclusive,
    normalize_gemini,
    normalize_inclusive,
)
from usagefix.profiles import BUILTIN_PROFILES, Profile, ProfileSet
from usagefix.record import UsageRecord
from usagefix.recordbuild import build_record
from usagefix.rewriter import rewrite_body, rewrite_stream

# -- the pure rules, as tables ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    report: InclusiveReport
    rules: list[str]
    after: dict[str, Any]
    """Canonical fields of `after` to check (others are not asserted)."""
    anomalies: list[str] = field(default_factory=list)
    declared: Declared = Declared()
    gemini: bool = False


EXCLUDED_READS = Declared(cache_reads="excluded")
INCLUDED_READS = Declared(cache_reads="included")
EXCLUDED_REASONING = Declared(reasoning="excluded")
INCLUDED_REASONING = Declared(reasoning="included")

INCLUSIVE: dict[str, Case] = {
    "correct block: nothing fires": Case(
        InclusiveReport(4020, 4, cache_read=4012, cache_write=0, reasoning=0, total=4024),
        [],
        {"input_total": 4020, "output_total": 4, "total": 4024, "unattributed": None},
    ),
    "R1 proof: more cache reads than prompt (the founding bug)": Case(
        InclusiveReport(1678, 370, cache_read=105530, total=2048),
        ["R1", "I3"],
        {"input_total": 107208, "total": 107578},
        ["exclusive_prompt_repaired"],
    ),
    "R1 declared: reads that fit, from a profile that says excluded": Case(
        InclusiveReport(1678, 370, cache_read=1500, total=2048),
        ["R1", "I3"],
        {"input_total": 3178, "total": 3548},
        ["exclusive_prompt_repaired"],
        declared=EXCLUDED_READS,
    ),
    "R1 tell: total counts the reads beside the prompt": Case(
        InclusiveReport(30, 40, cache_read=20, total=90),
        ["R1"],
        {"input_total": 50, "total": 90},
        ["exclusive_prompt_repaired"],
    ),
    "R1 tell declared away: the reads are included, the gap stays": Case(
        InclusiveReport(30, 40, cache_read=20, total=90),
        [],
        {"input_total": 30, "unattributed": 20, "total": 90},
        ["total_exceeds_parts"],
        declared=INCLUDED_READS,
    ),
    "coincidence: cache reads == reasoning, the tell proves nothing": Case(
        InclusiveReport(100, 50, cache_read=30, reasoning=30, total=180),
        [],
        {"input_total": 100, "output_total": 50, "unattributed": 30, "total": 180},
        ["ambiguous_total_gap"],
    ),
    "coincidence settled by a profile: reasoning included, so R1": Case(
        InclusiveReport(100, 50, cache_read=30, reasoning=30, total=180),
        ["R1"],
        {"input_total": 130, "output_total": 50, "total": 180},
        ["exclusive_prompt_repaired"],
        declared=INCLUDED_REASONING,
    ),
    "coincidence settled by a profile: reasoning excluded, so R5": Case(
        InclusiveReport(100, 50, cache_read=30, reasoning=30, total=180),
        ["R5"],
        {"input_total": 100, "output_total": 80, "total": 180},
        declared=EXCLUDED_REASONING,
    ),
    "coincidence settled by a profile: reads included, so R5": Case(
        InclusiveReport(100, 50, cache_read=30, reasoning=30, total=180),
        ["R5"],
        {"input_total": 100, "output_total": 80},
        declared=INCLUDED_READS,
    ),
    "coincidence for Gemini: reads == reasoning + tool-use prompt": Case(
        InclusiveReport(100, 50, cache_read=30, reasoning=20, total=180),
        [],
        {"input_total": 100, "output_total": 50, "unattributed": 30, "total": 180},
        ["ambiguous_total_gap"],
        gemini=True,
    ),
    "coincidence for Gemini: unreported thinking == cache reads": Case(
        InclusiveReport(1000, 50, cache_read=200, total=1250),
        [],
        {"input_total": 1000, "output_total": 50, "unattributed": 200},
        ["ambiguous_total_gap"],
        gemini=True,
    ),
    "no coincidence off Gemini: reads > reasoning, the tell holds": Case(
        InclusiveReport(100, 50, cache_read=30, reasoning=20, total=180),
        ["R1"],
        {"input_total": 130, "output_total": 50, "total": 180},
        ["exclusive_prompt_repaired"],
    ),
    "coincidence with more reasoning than completion: R5 explains the gap": Case(
        InclusiveReport(100, 20, cache_read=30, reasoning=30, total=150),
        ["R5"],
        {"input_total": 100, "output_total": 50, "total": 150, "unattributed": None},
    ),
    "R2 proof: reads fit, reads + writes do not": Case(
        InclusiveReport(30946, 89, cache_read=30940, cache_write=460, total=31035),
        ["R2", "I3"],
        {"input_total": 31406, "total": 31495},
    ),
    "R2 declared": Case(
        InclusiveReport(500, 10, cache_read=0, cache_write=100, total=510),
        ["R2", "I3"],
        {"input_total": 600, "total": 610},
        declared=Declared(cache_writes="excluded"),
    ),
    "R3: Gemini translated, thoughts and tool-use prompt only in the total": Case(
        InclusiveReport(17, 201, reasoning=213, total=550),
        ["R3", "R3"],
        {"input_total": 136, "output_total": 414, "total": 550},
        gemini=True,
    ),
    "R3: Gemini's OpenAI endpoint bills thinking it reports only in the total": Case(
        InclusiveReport(35, 12, total=109),
        ["R3"],
        {"input_total": 35, "output_total": 74, "reasoning": None, "total": 109},
        gemini=True,
    ),
    "R3: completion 0, reasoning only in details (CLIProxyAPI #5733)": Case(
        InclusiveReport(21, 0, reasoning=60, total=81),
        ["R3"],
        {"output_total": 60, "total": 81},
        gemini=True,
    ),
    "R5 proof: the total counts reasoning beside completion (xAI chat)": Case(
        InclusiveReport(125, 48, cache_read=98, reasoning=305, total=478),
        ["R5"],
        {"input_total": 125, "output_total": 353, "total": 478},
    ),
    "R5 proof wins over a profile the total contradicts": Case(
        InclusiveReport(125, 48, reasoning=305, total=478),
        ["R5"],
        {"output_total": 353},
        ["declaration_contradicted:completion_reasoning"],
        declared=INCLUDED_REASONING,
    ),
    "R5 by subset: more reasoning than completion, no total": Case(
        InclusiveReport(10, 5, reasoning=20),
        ["R5"],
        {"output_total": 25, "total": 35},
    ),
    "R5 declared, no total to say otherwise": Case(
        InclusiveReport(10, 50, reasoning=20),
        ["R5"],
        {"output_total": 70},
        declared=EXCLUDED_REASONING,
    ),
    "R5 declared, contradicted by total = prompt + completion": Case(
        InclusiveReport(10, 50, reasoning=20, total=60),
        [],
        {"output_total": 50, "total": 60},
        ["declaration_contradicted:completion_reasoning"],
        declared=EXCLUDED_REASONING,
    ),
    "no R5 against the upstream's arithmetic (OpenRouter: reasoning 11 > completion 10)": Case(
        InclusiveReport(43, 10, reasoning=11, total=53),
        [],
        {"output_total": 10, "reasoning": 11, "total": 53},
        ["reasoning_exceeds_completion"],
    ),
    "no R5 against a profile that says included (OpenRouter's)": Case(
        InclusiveReport(43, 10, reasoning=11),
        [],
        {"output_total": 10, "reasoning": 11},
        ["reasoning_exceeds_completion"],
        declared=INCLUDED_REASONING,
    ),
    "a gap only the total shows, off Gemini: kept and flagged, never dropped": Case(
        InclusiveReport(35, 12, total=109),
        [],
        {"input_total": 35, "output_total": 12, "unattributed": 62, "total": 109},
        ["total_exceeds_parts"],
    ),
    "I3: a total below its parts is raised": Case(
        InclusiveReport(100, 50, total=120),
        ["I3"],
        {"total": 150},
    ),
    "no total: none to repair (I3 silent)": Case(
        InclusiveReport(100, 50, cache_read=20),
        [],
        {"total": 150},
    ),
    "unknown sub-counts stay unknown": Case(
        InclusiveReport(1678, 370, cache_read=105530, cache_write=None, reasoning=None, total=2048),
        ["R1", "I3"],
        {"cache_write": None, "reasoning": None, "cache_read": 105530},
        ["exclusive_prompt_repaired"],
    ),
    "reported zeros stay zeros": Case(
        InclusiveReport(10, 5, cache_read=0, cache_write=0, reasoning=0, total=15),
        [],
        {"cache_read": 0, "cache_write": 0, "reasoning": 0},
    ),
}


@pytest.mark.parametrize("case", INCLUSIVE.values(), ids=INCLUSIVE.keys())
def test_inclusive_rules(case: Case) -> None:
    out = normalize_inclusive(case.report, declared=case.declared, from_gemini=case.gemini)
    assert [f.rule for f in out.fired] == case.rules
    assert sorted(out.anomalies) == sorted(case.anomalies)
    for name, value in case.after.items():
        assert getattr(out.after, name) == value, name
    if case.report.total is not None:
        assert out.after.total >= case.report.total  # never lower a total
    assert out.before.input_total == case.report.prompt and out.before.output_total == case.report.completion


@dataclass(frozen=True)
class GCase:
    report: GeminiReport
    rules: list[str]
    after: dict[str, Any]
    anomalies: list[str] = field(default_factory=list)


GEMINI: dict[str, GCase] = {
    "correct, with tool-use prompt and thoughts beside": GCase(
        GeminiReport(17, 201, thoughts=213, tool_use=119, total=550),
        [],
        {"input_total": 136, "output_total": 414, "reasoning": 213, "cache_read": None},
    ),
    "I3: total without thoughts is raised": GCase(
        GeminiReport(1106, 778, thoughts=1089, total=1884), ["I3"], {"total": 2973}
    ),
    "R1: cache left out of promptTokenCount": GCase(
        GeminiReport(100, 10, cached=500, total=110),
        ["R1", "I3"],
        {"input_total": 600, "cache_read": 500, "total": 610},
        ["exclusive_prompt_repaired"],
    ),
    "a total above its parts is kept and flagged": GCase(
        GeminiReport(100, 10, total=150),
        [],
        {"unattributed": 40, "total": 150},
        ["total_exceeds_parts"],
    ),
    "no total: nothing to check": GCase(GeminiReport(100, 10), [], {"total": 110}),
}


@pytest.mark.parametrize("case", GEMINI.values(), ids=GEMINI.keys())
def test_gemini_rules(case: GCase) -> None:
    out = normalize_gemini(case.report)
    assert [f.rule for f in out.fired] == case.rules
    assert sorted(out.anomalies) == sorted(case.anomalies)
    for name, value in case.after.items():
        assert getattr(out.after, name) == value, name


EXCLUSIVE: dict[str, tuple[ExclusiveReport, dict[str, Any], list[str]]] = {
    "disjoint parts add up": (
        ExclusiveReport(3, 1944, cache_read=9511, cache_write=0),
        {"input_total": 9514, "cache_read": 9511, "cache_write": 0, "reasoning": None},
        [],
    ),
    "unreported cache counts are unknown, not 0": (
        ExclusiveReport(11, 6),
        {"input_total": 11, "cache_read": None, "cache_write": None},
        [],
    ),
    "a TTL split that does not add up is flagged": (
        ExclusiveReport(3, 10, cache_write=1500, cache_write_5m=1200, cache_write_1h=0),
        {"cache_write": 1500, "cache_write_5m": 1200},
        ["cache_creation_split_mismatch"],
    ),
    "more thinking than output is flagged": (
        ExclusiveReport(3, 10, reasoning=20),
        {"reasoning": 20},
        ["reasoning_exceeds_output"],
    ),
}


@pytest.mark.parametrize(("report", "after", "anomalies"), EXCLUSIVE.values(), ids=EXCLUSIVE.keys())
def test_exclusive_reading(report: ExclusiveReport, after: dict[str, Any], anomalies: list[str]) -> None:
    out = normalize_exclusive(report)
    assert out.fired == () and out.before == out.after
    assert list(out.anomalies) == anomalies
    for name, value in after.items():
        assert getattr(out.after, name) == value, name


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (7, 7), (7.0, 7), (0, 0)],
)
def test_reader_reads_counts_and_keeps_unknown_unknown(value: Any, expected: int | None) -> None:
    assert Reader().count({"k": value}, "k") == expected
    assert Reader().count({}, "k") is None and Reader().count(None, "k") is None


def test_reader_clamps_negatives_i4_and_rejects_non_counts() -> None:
    rd = Reader()
    assert rd.count({"k": -3}, "k", "usage.") == 0
    assert [f.rule for f in rd.fired] == ["I4"] and rd.anomalies == ["negative_count:usage.k"]
    for bad in ("3", True, 1.5, [1]):
        with pytest.raises(UsageShapeError):
            Reader().count({"k": bad}, "k")
    with pytest.raises(UsageShapeError):
        Reader.block({"d": 3}, "d")


counts = st.integers(min_value=0, max_value=10**6)
maybe = st.none() | counts


@given(
    prompt=counts,
    completion=counts,
    cache_read=maybe,
    cache_write=maybe,
    reasoning=maybe,
    total=maybe,
    gemini=st.booleans(),
    declared=st.builds(
        Declared,
        st.sampled_from([None, "included", "excluded"]),
        st.sampled_from([None, "included", "excluded"]),
        st.sampled_from([None, "included", "excluded"]),
    ),
)
def test_no_rule_ever_lowers_a_count_or_invents_one(
    prompt: int,
    completion: int,
    cache_read: int | None,
    cache_write: int | None,
    reasoning: int | None,
    total: int | None,
    gemini: bool,
    declared: Declared,
) -> None:
    r = InclusiveReport(prompt, completion, cache_read, cache_write, reasoning, total)
    out = normalize_inclusive(r, declared=declared, from_gemini=gemini)
    after = out.after
    assert after.input_total >= prompt and after.output_total >= completion
    if total is not None:
        assert after.total >= total  # never lower a total
    # Unknown stays unknown; known sub-counts are never changed.
    assert (after.cache_read, after.cache_write, after.reasoning) == (cache_read, cache_write, reasoning)
    assert "I1" not in after.violations()
    if "I2" in after.violations():
        assert "reasoning_exceeds_completion" in out.anomalies
    # What the total counts beyond the headlines is attributed or kept, and then flagged.
    if after.unattributed:
        assert {"total_exceeds_parts", "ambiguous_total_gap"} & set(out.anomalies)


# -- on the wire: every promise, through the dialects -------------------------------------------


def chat_chunk(usage: dict[str, Any] | None, *, finish: str | None = None, choices: bool = True) -> bytes:
    obj: dict[str, Any] = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "model": "m"}
    obj["choices"] = [{"index": 0, "delta": {"content": "x"}, "finish_reason": finish}] if choices else []
    obj["usage"] = usage
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chat_stream(body: bytes, ctx: Context | None = None) -> tuple[bytes, UsageRecord]:
    out, rw = rewrite_stream(DIALECTS["openai_chat"], body, ctx=ctx or Context())
    return out, build_record(rw.result)


def body_of(dialect: str, body: bytes, ctx: Context | None = None) -> tuple[bytes, UsageRecord]:
    result = rewrite_body(DIALECTS[dialect], body, ctx or Context())
    return (body if result.body is None else result.body), build_record(result.result)


def usage_out(body: bytes) -> dict[str, Any]:
    usage: dict[str, Any] = json.loads(body)["usage"]
    return usage


def continuous(n: int) -> list[bytes]:
    """vLLM with `continuous_usage_stats`: a cumulative snapshot on every chunk."""
    return [
        chat_chunk({"prompt_tokens": 20, "completion_tokens": i, "total_tokens": 20 + i})
        for i in range(1, n + 1)
    ]


def test_a_stream_cut_mid_way_with_usage_on_every_chunk_is_unmeasured() -> None:
    # R8: a partial snapshot is not the final one; the last partial is kept for information only.
    _, rec = chat_stream(b"".join(continuous(3)))
    assert rec.status == "unmeasured" and rec.final_seen is False
    assert "no_final_usage" in rec.anomalies
    assert rec.usage_after is not None and rec.usage_after.output_total == 3  # the last partial, kept


def test_a_stream_with_usage_on_every_chunk_is_measured_once_it_finishes() -> None:
    finished = chat_chunk({"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}, finish="stop")
    out, rec = chat_stream(b"".join([*continuous(3), finished, b"data: [DONE]\n\n"]))
    assert rec.status == "unchanged" and rec.final_seen is True and rec.usage_after is not None
    assert rec.usage_after.output_total == 4
    usage_only = chat_chunk({"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}, choices=False)
    _, rec = chat_stream(b"".join([*continuous(3), usage_only]))
    assert rec.final_seen is True


def test_a_usage_chunk_with_an_unfinished_choice_is_final_once_done_follows() -> None:
    # LiteLLM's synthetic usage chunk (#28735), MLX servers: non-empty choices, no finish_reason.
    last = (
        b'data: {"id":"chatcmpl-t","object":"chat.completion.chunk","choices":[{"index":0,"delta":{}}],'
        b'"usage":{"prompt_tokens":65,"completion_tokens":251,"total_tokens":316}}\n\n'
    )
    finished = chat_chunk(None, finish="stop").replace(b',"usage":null', b"")
    _, rec = chat_stream(finished + last + b"data: [DONE]\n\n")
    assert rec.status == "unchanged" and rec.final_seen is True
    _, rec = chat_stream(finished + last)  # cut before [DONE]: nothing says it was the last
    assert rec.status == "unmeasured" and rec.final_seen is False


def test_an_empty_usage_block_is_no_snapshot_not_an_invalid_one() -> None:
    _, rec = chat_stream(chat_chunk({}) + chat_chunk({"prompt_tokens": None, "completion_tokens": None}))
    assert rec.status == "unmeasured" and rec.anomalies == ["no_final_usage"]


def test_a_gemini_chunk_without_candidates_ends_the_response() -> None:
    blocked = b'data: {"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}\n\n'
    _, rw = rewrite_stream(DIALECTS["gemini"], blocked)
    rec = build_record(rw.result)
    assert rec.status == "unchanged" and rec.final_seen


def test_null_details_stay_null_on_the_wire_and_unknown_in_the_record() -> None:
    correct = (
        b'{"model":"m","usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,'
        b'"prompt_tokens_details":{"cached_tokens":null},"completion_tokens_details":{"reasoning_tokens":null}}}'
    )
    out, rec = body_of("openai_chat", correct)
    assert out == correct and rec.status == "unchanged"
    assert (
        rec.usage_after is not None
        and rec.usage_after.cache_read is None
        and rec.usage_after.reasoning is None
    )
    # Even when the block is rewritten for another reason, the nulls stay nulls.
    low_total = correct.replace(b'"total_tokens":150', b'"total_tokens":120')
    out, rec = body_of("openai_chat", low_total)
    usage = usage_out(out)
    assert usage["total_tokens"] == 150 and rec.rules[0].rule == "I3"
    assert usage["prompt_tokens_details"] == {"cached_tokens": None}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": None}


def anthropic_stream(start_usage: dict[str, Any], delta_usage: dict[str, Any]) -> bytes:
    start = {"type": "message_start", "message": {"id": "msg_t", "model": "claude-t", "usage": start_usage}}
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta_usage}
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n".encode()
        for e in (start, delta, {"type": "message_stop"})
    )


def anthropic_through(body: bytes) -> tuple[dict[str, Any], UsageRecord]:
    out, rw = rewrite_stream(DIALECTS["anthropic"], body)
    delta = next(json.loads(line[6:]) for line in out.splitlines() if b'"message_delta"' in line)
    return delta["usage"], build_record(rw.result)


def test_a_null_in_message_delta_never_overwrites_message_starts_count() -> None:
    body = anthropic_stream(
        {
            "input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 9511,
            "output_tokens": 1,
        },
        {
            "input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": None,
            "output_tokens": 50,
        },
    )
    usage, rec = anthropic_through(body)
    assert usage["cache_read_input_tokens"] == 9511  # the client gets the count, not the null
    assert rec.usage_after is not None and rec.usage_after.cache_read == 9511
    assert rec.usage_after.input_total == 9514 and [r.rule for r in rec.rules] == ["R4"]


def test_a_count_nobody_reported_is_not_filled_with_zero() -> None:
    usage, rec = anthropic_through(
        anthropic_stream({"input_tokens": 11, "output_tokens": 1}, {"output_tokens": 6})
    )
    assert usage == {"input_tokens": 11, "output_tokens": 6}
    assert rec.usage_after is not None and rec.usage_after.cache_read is None


def test_a_new_cache_creation_without_its_split_drops_the_stale_split() -> None:
    split = {"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 0}
    start = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 1200,
        "cache_read_input_tokens": 0,
        "cache_creation": split,
        "output_tokens": 1,
    }
    full = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 0,
        "output_tokens": 9,
    }
    _, rec = anthropic_through(anthropic_stream(start, full))
    assert "cache_creation_split_mismatch" not in rec.anomalies and rec.status == "unchanged"
    assert rec.usage_after is not None and rec.usage_after.cache_write == 1500
    assert (rec.usage_after.cache_write_5m, rec.usage_after.cache_write_1h) == (None, None)
    # A delta that must be completed carries no stale split either.
    usage, rec = anthropic_through(
        anthropic_stream(start, {"cache_creation_input_tokens": 1500, "output_tokens": 9})
    )
    assert "cache_creation" not in usage and usage["cache_creation_input_tokens"] == 1500
    assert "cache_creation_split_mismatch" not in rec.anomalies
    # An unchanged count keeps its split, carried with the snapshot.
    usage, _ = anthropic_through(anthropic_stream(start, {"output_tokens": 9}))
    assert usage["cache_creation"] == split


def test_no_total_is_added_to_a_block_that_had_none() -> None:
    body = b'{"model":"claude-x","usage":{"prompt_tokens":13,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":22000}}}'
    out, rec = body_of("openai_chat", body)
    usage = usage_out(out)
    assert usage == {
        "prompt_tokens": 22013,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 22000},
    }
    assert [r.rule for r in rec.rules] == ["R1"]
    gemini = (
        b'{"usageMetadata":{"promptTokenCount":100,"candidatesTokenCount":10,"cachedContentTokenCount":500}}'
    )
    out, _ = body_of("gemini", gemini)
    assert json.loads(out)["usageMetadata"] == {
        "promptTokenCount": 600,
        "candidatesTokenCount": 10,
        "cachedContentTokenCount": 500,
    }


def test_a_correct_responses_block_without_details_passes_byte_for_byte() -> None:
    body = b'{"object":"response","model":"grok-4","usage":{"input_tokens":50,"output_tokens":7,"total_tokens":57}}'
    out, rec = body_of("openai_responses", body)
    assert out == body and rec.status == "unchanged" and rec.rules == []
    # A repaired one keeps the upstream's keys plus what the rule names: no zero details.
    broken = b'{"object":"response","usage":{"input_tokens":13,"input_tokens_details":{"cached_tokens":22000},"output_tokens":40,"total_tokens":53}}'
    out, _ = body_of("openai_responses", broken)
    assert usage_out(out) == {
        "input_tokens": 22013,
        "input_tokens_details": {"cached_tokens": 22000},
        "output_tokens": 40,
        "total_tokens": 22053,
    }


def test_gemini_thinking_billed_only_in_the_total_is_not_lost() -> None:
    body = b'{"model":"gemini-2.5-flash","choices":[],"usage":{"prompt_tokens":35,"completion_tokens":12,"total_tokens":109}}'
    out, rec = body_of("openai_chat", body)
    assert usage_out(out) == {"prompt_tokens": 35, "completion_tokens": 74, "total_tokens": 109}
    assert [r.rule for r in rec.rules] == ["R3"]
    # Off Gemini, nothing says where the gap goes: the total is kept and the gap flagged.
    out, rec = body_of("openai_chat", body.replace(b"gemini-2.5-flash", b"some-model"))
    assert out == body.replace(b"gemini-2.5-flash", b"some-model") and "total_exceeds_parts" in rec.anomalies
    assert rec.usage_after is not None and rec.usage_after.total == 109


def test_openrouters_reasoning_over_completion_is_not_repaired_against_its_total() -> None:
    body = b'{"model":"x-ai/grok-3-mini","usage":{"prompt_tokens":43,"completion_tokens":10,"total_tokens":53,"completion_tokens_details":{"reasoning_tokens":11}}}'
    profile = ProfileSet().match("openrouter.ai", 443, "/api/v1/chat/completions", "x-ai/grok-3-mini")
    for ctx in (Context(), Context(profile=profile)):
        out, rec = body_of("openai_chat", body, ctx)
        assert out == body and rec.rules == [] and "reasoning_exceeds_completion" in rec.anomalies


def test_xais_responses_api_is_not_repaired_with_its_chat_profile() -> None:
    body = b'{"object":"response","model":"grok-4","usage":{"input_tokens":180,"output_tokens":350,"output_tokens_details":{"reasoning_tokens":323},"total_tokens":530}}'
    for profile in (ProfileSet().match("api.x.ai", 443, "/v1/responses", "grok-4"), BUILTIN_PROFILES[0]):
        out, rec = body_of("openai_responses", body, Context(profile=profile))
        assert out == body and rec.rules == []


def gemini_chunk(total_parts: tuple[int, int], *, finish: bool = False) -> bytes:
    prompt, candidates = total_parts
    cand: dict[str, Any] = {"content": {"parts": [{"text": "x"}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = "STOP"
    um = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
    }
    return b"data: " + json.dumps({"candidates": [cand], "usageMetadata": um}).encode() + b"\n\n"


def gemini_flags(*chunks: bytes) -> list[str]:
    _, rw = rewrite_stream(DIALECTS["gemini"], b"".join(chunks))
    return build_record(rw.result).anomalies


def test_gemini_snapshots_that_dip_between_tool_turns_are_not_flagged() -> None:
    # Gemini 3 with code execution: the snapshot dips between tool turns; the final covers all.
    assert "snapshot_decreased" not in gemini_flags(
        gemini_chunk((300, 200)), gemini_chunk((120, 30)), gemini_chunk((800, 250), finish=True)
    )
    assert "snapshot_decreased" in gemini_flags(
        gemini_chunk((300, 200)), gemini_chunk((300, 100), finish=True)
    )


GROQ_LAST = (
    b'data: {"id":"chatcmpl-g","object":"chat.completion.chunk","created":1716131679,"model":"llama3-8b-8192",'
    b'"system_fingerprint":"fp_179b0f92c9","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],'
    b'"x_groq":{"id":"req_01hy8ppkajfqk987jv2vx88m9r","usage":{"queue_time":0.07535312,"prompt_tokens":23,'
    b'"prompt_time":0.006,"completion_tokens":19,"completion_time":0.022,"total_tokens":42,'
    b'"total_time":0.027999999999999997}}}\n\n'
)


def test_groq_usage_in_x_groq_is_measured() -> None:
    first = chat_chunk(None).replace(b',"usage":null', b"")
    body = first + GROQ_LAST + b"data: [DONE]\n\n"
    out, rec = chat_stream(body)
    assert out == body and rec.status == "unchanged" and rec.final_seen
    assert rec.usage_after is not None and (rec.usage_after.input_total, rec.usage_after.total) == (23, 42)
    # A repair lands in x_groq.usage, every other leaf spelled as Groq spelled it.
    low = GROQ_LAST.replace(b'"total_tokens":42', b'"total_tokens":40')
    out, rec = chat_stream(first + low)
    assert [r.rule for r in rec.rules] == ["I3"]
    assert out == first + GROQ_LAST


def test_moonshot_usage_in_the_finishing_choice_is_measured() -> None:
    last = (
        b'data: {"id":"chatcmpl-k","object":"chat.completion.chunk","created":1733299889,"model":"kimi-k2-0905-preview",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop","usage":{"prompt_tokens":10,"completion_tokens":79,'
        b'"total_tokens":89,"cached_tokens":0}}],"system_fingerprint":"fpv0_c26222aa"}\n\n'
    )
    out, rec = chat_stream(last + b"data: [DONE]\n\n")
    assert out == last + b"data: [DONE]\n\n" and rec.status == "unchanged" and rec.final_seen
    assert rec.usage_after is not None and rec.usage_after.total == 89
    low = last.replace(b'"total_tokens":89', b'"total_tokens":80')
    out, rec = chat_stream(low)
    assert out == last and [r.rule for r in rec.rules] == ["I3"]


def test_an_unchanged_leaf_keeps_its_spelling() -> None:
    body = b'{"model":"claude-x","usage":{"prompt_tokens":13,"completion_tokens":40,"total_tokens":53,"cost":0.00001,"prompt_tokens_details":{"cached_tokens":22000,"audio_tokens":0}}}'
    out, _ = body_of("openai_chat", body)
    assert b'"cost":0.00001' in out and b"1e-05" not in out
    assert out == body.replace(b'"prompt_tokens":13', b'"prompt_tokens":22013').replace(
        b'"total_tokens":53', b'"total_tokens":22053'
    )


def test_the_r1_tell_does_not_pre_empt_r5_when_cache_reads_equal_reasoning() -> None:
    body = b'{"model":"m","usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":180,"prompt_tokens_details":{"cached_tokens":30},"completion_tokens_details":{"reasoning_tokens":30}}}'
    out, rec = body_of("openai_chat", body)
    assert out == body and rec.rules == [] and "ambiguous_total_gap" in rec.anomalies
    assert rec.usage_after is not None and rec.usage_after.total == 180
    settled = Profile(name="p", completion_reasoning="excluded")
    out, rec = body_of("openai_chat", body, Context(profile=settled))
    assert [r.rule for r in rec.rules] == ["R5"] and usage_out(out)["completion_tokens"] == 80


CLAUDE_ON_BEDROCK = (
    b'{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",'
    b'"content":[{"type":"text","text":"42"}],"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":30,"cache_creation_input_tokens":0,"cache_read_input_tokens":1200,"output_tokens":265}}'
)


def test_bedrock_invoke_model_with_a_claude_body_is_measured() -> None:
    out, rec = body_of("bedrock", CLAUDE_ON_BEDROCK)
    assert out == CLAUDE_ON_BEDROCK and rec.status == "unchanged" and rec.final_seen
    assert rec.usage_after is not None and (rec.usage_after.input_total, rec.usage_after.total) == (
        1230,
        1495,
    )


def test_bedrock_invoke_model_token_count_headers_are_measured() -> None:
    llama = b'{"generation":"42","prompt_token_count":14,"generation_token_count":36,"stop_reason":"stop"}'
    headers = (("x-amzn-bedrock-input-token-count", "14"), ("x-amzn-bedrock-output-token-count", "36"))
    out, rec = body_of("bedrock", llama, Context(response_headers=headers))
    assert out == llama and rec.status == "unchanged" and rec.final_seen
    assert rec.usage_after is not None and rec.usage_after.total == 50
    _, rec = body_of("bedrock", llama)
    assert rec.status == "unmeasured"  # no headers, no body usage: unknown, not 0


# -- invariants on the wire, in every dialect ---------------------------------------------------

I4_CASES = {
    "openai_chat": (
        b'{"usage":{"prompt_tokens":-5,"completion_tokens":3,"total_tokens":-2}}',
        {"prompt_tokens": 0, "completion_tokens": 3, "total_tokens": 3},
    ),
    "gemini": (
        b'{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":2,"cachedContentTokenCount":-4,"totalTokenCount":12}}',
        {
            "promptTokenCount": 10,
            "candidatesTokenCount": 2,
            "cachedContentTokenCount": 0,
            "totalTokenCount": 12,
        },
    ),
    "anthropic": (
        b'{"usage":{"input_tokens":-3,"cache_read_input_tokens":5,"output_tokens":2}}',
        {"input_tokens": 0, "cache_read_input_tokens": 5, "output_tokens": 2},
    ),
}


@pytest.mark.parametrize("dialect", I4_CASES)
def test_i4_no_negative_count_reaches_the_client(dialect: str) -> None:
    body, expected = I4_CASES[dialect]
    out, rec = body_of(dialect, body)
    key = "usageMetadata" if dialect == "gemini" else "usage"
    assert json.loads(out)[key] == expected
    assert "I4" in [r.rule for r in rec.rules] and any(a.startswith("negative_count:") for a in rec.anomalies)


def test_i4_in_an_anthropic_stream_and_observe_only_says_what_it_would_do() -> None:
    body = anthropic_stream({"input_tokens": -3, "output_tokens": 1}, {"output_tokens": 6})
    usage, rec = anthropic_through(body)
    assert usage == {"input_tokens": 0, "output_tokens": 6}
    assert {"I4", "R4"} <= {r.rule for r in rec.rules}
    watch = Context(profile=Profile(name="watch", observe_only=True))
    out, rw = rewrite_stream(DIALECTS["anthropic"], body, ctx=watch)
    rec = build_record(rw.result)
    assert out == body and rec.rules == [] and "would_repair:R4" in rec.anomalies


def test_i1_cache_reads_and_writes_fit_in_the_prompt_after_repair() -> None:
    body = b'{"usage":{"prompt_tokens":30946,"completion_tokens":89,"total_tokens":31035,"prompt_tokens_details":{"cached_tokens":30940,"cache_write_tokens":460}}}'
    out, rec = body_of("openai_chat", body)
    assert rec.usage_before is not None and rec.usage_before.violations() == ["I1"]
    assert rec.usage_after is not None and rec.usage_after.violations() == []
    assert rec.usage_after.input_uncached == 6 and usage_out(out)["prompt_tokens"] == 31406


def test_deepseek_hit_plus_miss_is_checked_never_subtracted() -> None:
    body = b'{"usage":{"prompt_tokens":563,"completion_tokens":5,"total_tokens":568,"prompt_cache_hit_tokens":512,"prompt_cache_miss_tokens":40,"prompt_tokens_details":{"cached_tokens":512}}}'
    out, rec = body_of("openai_chat", body)
    assert out == body and "deepseek_hit_plus_miss_is_not_prompt" in rec.anomalies


def test_both_cache_write_names_become_one() -> None:
    body = b'{"usage":{"prompt_tokens":50,"completion_tokens":5,"total_tokens":55,"prompt_tokens_details":{"cache_write_tokens":40,"cached_creation_tokens":40}}}'
    out, rec = body_of("openai_chat", body)
    assert usage_out(out)["prompt_tokens_details"] == {"cache_write_tokens": 40}
    assert [r.rule for r in rec.rules] == ["rename"]


# What a repaired (or clamped) block's details say: usage in → usage out, and the rules recorded.
DETAILS_ON_THE_WIRE: dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]] = {
    "a negative cached_tokens is clamped (I4), not taken for an alias of the cache reads": (
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "prompt_tokens_details": {"cached_tokens": -5},
        },
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
        ["I4"],
    ),
    "a top-level cache read that fits the prompt is not copied into the details": (
        {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 100, "cache_read_input_tokens": 60},
        {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110, "cache_read_input_tokens": 60},
        ["I3"],
    ),
    "R2 with zero details beside LiteLLM's top-level counts (#11364): the details get the counts": (
        {
            "prompt_tokens": 30946,
            "completion_tokens": 89,
            "total_tokens": 31035,
            "cache_read_input_tokens": 30940,
            "cache_creation_input_tokens": 460,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        },
        {
            "prompt_tokens": 31406,
            "completion_tokens": 89,
            "total_tokens": 31495,
            "cache_read_input_tokens": 30940,
            "cache_creation_input_tokens": 460,
            "prompt_tokens_details": {"cached_tokens": 30940, "cache_write_tokens": 460},
        },
        ["R2", "I3", "alias", "alias"],  # one for the reads, one for the writes
    ),
    "zero cache writes beside LiteLLM's top-level count: the change is named (alias)": (
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "cache_creation_input_tokens": 4,
            "prompt_tokens_details": {"cache_write_tokens": 0},
        },
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "cache_creation_input_tokens": 4,
            "prompt_tokens_details": {"cache_write_tokens": 4},
        },
        ["alias"],
    ),
    "a negative count the rules do not rewrite still reaches the client as 0 (I4)": (
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "cache_read_input_tokens": -5,
            "prompt_cache_miss_tokens": -1,
            "cost": -0.5,
        },
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "cache_read_input_tokens": 0,
            "prompt_cache_miss_tokens": 0,
            "cost": -0.5,
        },
        ["I4", "I4"],
    ),
    "a negative detail count beside a clamped one is clamped too (I4: no negative count goes out)": (
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "cache_read_input_tokens": -5,
            "completion_tokens_details": {"rejected_prediction_tokens": -1},
        },
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "cache_read_input_tokens": 0,
            "completion_tokens_details": {"rejected_prediction_tokens": 0},
        },
        ["I4"],
    ),
}


@pytest.mark.parametrize(
    ("usage", "expected", "rules"), DETAILS_ON_THE_WIRE.values(), ids=DETAILS_ON_THE_WIRE.keys()
)
def test_the_details_of_a_rewritten_block_say_what_the_rules_found(
    usage: dict[str, Any], expected: dict[str, Any], rules: list[str]
) -> None:
    out, rec = body_of("openai_chat", json.dumps({"model": "m", "usage": usage}).encode())
    assert usage_out(out) == expected
    assert [r.rule for r in rec.rules] == rules and rec.status == "rewritten"


def test_bedrock_headers_that_are_not_counts_are_flagged_not_read() -> None:
    headers = (("x-amzn-bedrock-input-token-count", "many"), ("x-amzn-bedrock-output-token-count", "36"))
    _, rec = body_of("bedrock", b'{"generation":"x"}', Context(response_headers=headers))
    assert (
        rec.status == "unmeasured"
        and "bedrock_header_not_a_count:x-amzn-bedrock-input-token-count" in rec.anomalies
    )
    nova = b'{"output":{},"usage":{"inputTokens":22,"outputTokens":13,"totalTokens":2527,"cacheWriteInputTokenCount":2492}}'
    _, rec = body_of("bedrock", nova)
    assert rec.usage_after is not None and rec.usage_after.cache_write == 2492 and rec.anomalies == []


@pytest.mark.parametrize(
    ("dialect", "body", "would"),
    [
        (
            "gemini",
            b'{"usageMetadata":{"promptTokenCount":1106,"candidatesTokenCount":778,"thoughtsTokenCount":1089,"totalTokenCount":1884}}',
            "I3",
        ),
        ("anthropic", b'{"usage":{"input_tokens":-3,"output_tokens":2}}', "I4"),
        (
            "openai_chat",
            b'{"usage":{"prompt_tokens":1678,"completion_tokens":370,"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":105530}}}',
            "R1",
        ),
    ],
)
def test_observe_only_records_what_would_be_repaired_and_repairs_nothing(
    dialect: str, body: bytes, would: str
) -> None:
    out, rec = body_of(dialect, body, Context(profile=Profile(name="watch", observe_only=True)))
    assert out == body and rec.status == "unchanged" and rec.rules == []
    assert f"would_repair:{would}" in rec.anomalies and rec.usage_after == rec.usage_before


def test_bedrock_is_observe_only_even_for_a_negative_count() -> None:
    out, rec = body_of("bedrock", b'{"usage":{"inputTokens":-1,"outputTokens":3,"totalTokens":2}}')
    assert rec.rules == [] and "would_repair:I4" in rec.anomalies
