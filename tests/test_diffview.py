"""`usagefix diff`'s pure side: filters, the summary per model × upstream, the record's key order."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from usagefix.diffview import Filters, FlowRow, ordered_record, parse_since, summarize

NOW = 1_800_000_000.0


def row(
    status: str = "rewritten",
    *,
    model: str | None = "claude-sonnet-4-5",
    host: str = "127.0.0.1:8317",
    started: float | None = NOW,
    rules: tuple[str, ...] = ("R1", "I3"),
    **rec: Any,
) -> FlowRow:
    record = {
        "status": status,
        "final_seen": status != "unmeasured",
        "rules": [{"rule": r} for r in rules],
        **rec,
    }
    return FlowRow(
        "f.mitm", "id", "POST", "http://x/v1/chat/completions", host, model, started, 200, 12.5, "c", record
    )


def test_filters_match_model_host_rule_status_and_time() -> None:
    r = row()
    assert Filters().selects(r) and Filters().shows(r)
    assert Filters(models=("CLAUDE-*",)).selects(r) and not Filters(models=("gpt-*",)).selects(r)
    assert Filters(models=("*",)).selects(row(model=None)) and not Filters(models=("c*",)).selects(
        row(model=None)
    )
    assert Filters(hosts=("127.0.0.1",)).selects(r)  # host without its port
    assert Filters(hosts=("127.0.0.1:8317",)).selects(r) and not Filters(hosts=("api.*",)).selects(r)
    assert Filters(rules=("r1",)).selects(r) and not Filters(rules=("R4",)).selects(r)
    assert Filters(statuses=("rewritten",)).selects(r) and not Filters(statuses=("unmeasured",)).selects(r)
    assert Filters(since=NOW - 1).selects(r) and not Filters(since=NOW + 1).selects(r)
    assert not Filters(since=NOW).selects(row(started=None))
    odd = row(rules=())
    odd = FlowRow(
        *[
            getattr(odd, f)
            for f in (
                "file",
                "flow_id",
                "method",
                "url",
                "host",
                "model",
                "started",
                "http_status",
                "latency_ms",
                "comment",
            )
        ],
        {"rules": ["R1"]},
    )
    assert not Filters(rules=("R1",)).selects(odd) and odd.status == "?"


def test_unchanged_flows_are_selected_but_shown_only_when_asked() -> None:
    same = row("unchanged", rules=())
    assert Filters().selects(same) and not Filters().shows(same)
    assert Filters(everything=True).shows(same) and Filters(statuses=("unchanged",)).shows(same)
    assert not Filters(models=("gpt-*",)).shows(same)


def test_since_takes_relative_times_and_iso_dates() -> None:
    assert parse_since("30m", NOW) == NOW - 1800
    assert parse_since(" 2h", NOW) == NOW - 7200
    assert parse_since("1w", NOW) == NOW - 604800
    assert parse_since("2026-12-01", NOW) == dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
    assert (
        parse_since("2026-12-01T09:30+01:00", NOW)
        == dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC).timestamp()
    )
    with pytest.raises(ValueError, match="give 30m, 2h, 1d, 1w, or an ISO date"):
        parse_since("yesterday", NOW)


def test_the_summary_groups_by_model_and_upstream_and_never_counts_unknown_as_zero() -> None:
    founding = {"usage_before": {"total": 2048}, "usage_after": {"total": 107578}}
    rows = [
        row(**founding),
        row(**founding),
        row(
            "unchanged",
            model="gpt-4o",
            host="api.openai.com",
            usage_before={"total": 82},
            usage_after={"total": 82},
        ),
        row("unmeasured", model="gpt-4o", host="api.openai.com"),
        row("rewritten", model=None, usage_before=None, usage_after={"total": 5}),
    ]
    groups = summarize(rows)
    claude, gpt, unknown, total = groups
    assert (claude.model, claude.upstream, claude.responses, claude.rewritten, claude.unmeasured) == (
        "claude-sonnet-4-5",
        "127.0.0.1:8317",
        2,
        2,
        0,
    )
    assert str(claude.received) == "4,096" and str(claude.corrected) == "215,156"
    assert (gpt.responses, gpt.rewritten, gpt.unmeasured, str(gpt.received)) == (2, 0, 1, "82")
    assert unknown.model == "?" and str(unknown.received) == "—" and str(unknown.corrected) == "5"
    assert total.model == "total" and total.responses == 5 and total.unmeasured == 1
    assert str(total.received) == "4,178 (+1 unknown)" and str(total.corrected) == "215,243"
    assert summarize([])[0].responses == 0
    assert str(summarize([row(usage_before={"total": True}, usage_after={"total": 1})])[0].received) == "—"


def test_json_carries_the_flow_facts_and_the_record_in_schema_order() -> None:
    rec = {
        "extra_from_a_later_schema": 1,
        "rules": [{"changes": {}, "reason": "r", "rule": "R1"}, "odd"],
        "usage_after": {"total": 9, "output_total": 4, "input_total": 5},
        "status": "rewritten",
        "schema_version": 1,
        "usage_before": None,
    }
    r = FlowRow("f.mitm", "id", "POST", "u", "h", "m", NOW, 200, 12.5, "c", rec)
    out = r.as_json()
    assert list(out) == [
        "file",
        "flow_id",
        "method",
        "url",
        "host",
        "model",
        "time",
        "http_status",
        "latency_ms",
        "comment",
        "cost_usd",
        "session",
        "record",
    ]
    assert out["time"] == "2027-01-15T08:00:00.000+00:00" and out["latency_ms"] == 12.5
    assert list(out["record"]) == [
        "schema_version",
        "status",
        "usage_before",
        "usage_after",
        "rules",
        "extra_from_a_later_schema",
    ]
    assert list(out["record"]["usage_after"]) == ["input_total", "output_total", "total"]
    assert (
        list(out["record"]["rules"][0]) == ["rule", "reason", "changes"]
        and out["record"]["rules"][1] == "odd"
    )
    assert ordered_record({"rules": None}) == {"rules": None}
    assert FlowRow("f", "i", "GET", "u", "h", None, None, None, None, "", {}).as_json()["time"] is None


def test_a_total_the_upstream_reported_below_its_parts_is_what_was_received() -> None:
    # I3 alone: the canonical reading recomputes the total from the headlines, so the upstream's
    # own total (3) lives in the rule's `before`: the summary and the diff show it as received.
    from usagefix.dialects import DIALECTS
    from usagefix.recordbuild import build_record
    from usagefix.report import as_received, render_record
    from usagefix.rewriter import rewrite_body

    body = b'{"model":"m","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":3}}'
    rec = build_record(rewrite_body(DIALECTS["openai_chat"], body).result).model_dump(mode="json")
    assert [r["rule"] for r in rec["rules"]] == ["I3"] and rec["usage_before"]["total"] == 15
    assert as_received(rec) == {**rec["usage_before"], "total": 3}
    row = FlowRow("f", "i", "POST", "u", "h", "m", None, 200, None, "", rec)
    (group, total) = summarize([row])
    assert (str(group.received), str(group.corrected)) == ("3", "15")
    text = render_record(rec)
    assert any(line.split()[:3] == ["total", "3", "15"] for line in text.splitlines())
    assert as_received({"usage_before": None}) is None
