"""One exchange's money and session in words and JSON (the usage diff view, `usagefix diff`):
exact, unpriced never $0, and a view of one flow claims only the session its request names."""

from __future__ import annotations

from decimal import Decimal

from test_reporting import row
from usagefix.costview import cost_json, money_line, session_json, session_line
from usagefix.diffview import FlowRow, Money, summarize


def test_the_money_line_is_exact_and_may_be_negative() -> None:
    r = row(1, cost_before=Decimal("-0.274347"), cost_after=Decimal("0.042243"))
    assert money_line(r) == "cost -$0.2743 → $0.0422 (claude-sonnet-4-5, genai-prices 0.2.3)"
    assert cost_json(r) == {"before": "-0.274347", "after": "0.042243"}
    said = money_line(row(2, cost_provider=Decimal("0.05"), cost_flags=("cache_ttl_unknown", "other")))
    assert said.endswith("; the upstream reported $0.0500; cache writes priced at the 5m rate"
                         " (their TTL split was not reported)")  # fmt: skip


def test_unpriced_is_never_zero() -> None:
    r = row(1, cost_before=None, cost_after=None, price_model_id=None, model_reported="mystery-1")
    assert money_line(r) == "cost unpriced (no price for mystery-1)"
    assert cost_json(r) == {"before": None, "after": None}
    nameless = row(2, cost_before=None, cost_after=None, model_reported=None, model_requested=None)
    assert money_line(nameless) == "cost unpriced (no model named)"
    half = row(3, cost_before=None, cost_after=Decimal("0.01"), price_model_id=None)
    assert money_line(half) == "cost unpriced → $0.0100 (claude-sonnet-4-5-20250929, genai-prices 0.2.3)"
    cut = row(4, cost_before=None, cost_after=None, usage_before=None, usage_after=None)
    assert money_line(cut) == "cost unmeasured (no usage to price)"  # not "no price for" a priced model


def test_the_session_with_its_source_and_only_named_ones_for_a_single_flow() -> None:
    assert session_line(row(1)) == "session: claude:S1 (header)"
    assert session_json(row(1)) == {"key": "claude:S1", "source": "header"}
    sub = row(2, lane="agent-7")
    assert session_line(sub, named_only=True) == "session: claude:S1 (header, lane agent-7)"
    fp = row(3, session_key="fp:abc", session_source="fingerprint")
    assert session_line(fp) == "session: fp:abc (fingerprint, inferred)"
    assert session_line(fp, named_only=True) == "session: not named by this request"
    assert session_json(fp, named_only=True) == {"key": None, "source": None}
    assert session_line(row(4, session_key=None, session_source=None)) == "session: none"


def flow_row(i: int, **kw: object) -> FlowRow:
    rec = {
        "status": "rewritten",
        "final_seen": True,
        "usage_before": {"total": 1},
        "usage_after": {"total": 2},
    }
    return FlowRow("f.mitm", f"id{i}", "POST", "http://h/v1", "h", "m", None, 200, 1.0, "", rec, row(i, **kw))


def test_the_summary_sums_money_and_counts_the_unpriced() -> None:
    rows = [
        flow_row(1, cost_before=Decimal("-0.25"), cost_after=Decimal("0.04")),
        flow_row(2, cost_before=None, cost_after=None),
    ]
    (group, total) = summarize(rows)
    assert (
        str(group.cost_before) == "-$0.2500 (+1 unpriced)"
        and str(total.cost_after) == "$0.0400 (+1 unpriced)"
    )
    assert str(summarize([flow_row(3, cost_before=None)])[0].cost_before) == "unpriced"
    assert str(Money()) == "—"
    bare = FlowRow("f.mitm", "x", "POST", "u", "h", None, None, None, None, "", {"final_seen": True})
    assert str(summarize([bare])[0].cost_after) == "—"
    assert bare.as_json()["cost_usd"] == {"before": None, "after": None}
    assert bare.as_json()["session"] == {"key": None, "source": None}
    assert flow_row(4).as_json()["session"] == {"key": "claude:S1", "source": "header"}
