"""`usagefix report`'s pure half: sums over steps, context from the last main-lane step, unpriced
never $0, the JSON shape, the CSV, the terminal table, and the command's wiring."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from usagefix import cli
from usagefix.exchange import ExchangeRow
from usagefix.reporting import build_report, money, print_report, render_html, report_json, rows_csv
from usagefix.reporting.aggregate import Context
from usagefix.reporting.export import CSV_COLUMNS
from usagefix.reporting.terminal import context_cell, dollars

DAY = 1_780_000_000.0  # 2026-05-28


def usage(
    inp: int, out: int, read: int | None = None, write: int | None = None, reasoning: int | None = None
) -> dict[str, Any]:
    return {"input_total": inp, "cache_read": read, "cache_write": write, "cache_write_5m": None, "cache_write_1h": write,
            "output_total": out, "reasoning": reasoning, "unattributed": None}  # fmt: skip


def row(i: int, **kw: Any) -> ExchangeRow:
    base: dict[str, Any] = dict(
        id=f"ex{i:03d}", ts_start=DAY + i, ts_end=DAY + i + 0.5, client="claude-code", user_agent="claude-cli/2.1.90",
        upstream_host="api.anthropic.com", path="/v1/messages", dialect="anthropic",
        model_requested="claude-sonnet-4-5", model_reported="claude-sonnet-4-5-20250929", status_code=200,
        streamed=True, final_seen=True, usagefix_status="unchanged", rules=(), anomalies=(),
        usage_before=usage(100, 10), usage_after=usage(100, 10), session_key="claude:S1", session_source="header",
        lane="main", parent_lane=None, parent_exchange_id=None, response_id=f"msg_{i}", previous_response_id=None,
        cost_before=Decimal("0.001"), cost_after=Decimal("0.001"), cost_provider=None, price_match="url",
        price_model_id="claude-sonnet-4-5", price_source="genai-prices 0.2.3", context_window=200_000,
    )  # fmt: skip
    base.update(kw)
    return ExchangeRow(**base)


# A Claude Code loop: 3 main steps (1h cache writes, then reads) and one subagent step; a
# founding-bug chat session whose "before" cost is negative; an unpriced model; an unmeasured step.
LOOP = [
    row(
        1,
        usage_after=usage(12_000, 300, read=0, write=11_000),
        cost_after=Decimal("0.0462"),
        cost_before=Decimal("0.0462"),
    ),
    row(
        2,
        usage_after=usage(12_800, 250, read=11_000, write=700),
        cost_after=Decimal("0.0112"),
        cost_before=Decimal("0.0112"),
    ),
    row(
        3,
        lane="agent-1",
        parent_lane="main",
        usage_after=usage(90_000, 900),
        cost_after=Decimal("0.2835"),
        cost_before=Decimal("0.2835"),
    ),
    row(
        4,
        usage_after=usage(13_500, 400, read=12_500, write=500, reasoning=120),
        cost_after=Decimal("0.0117"),
        cost_before=Decimal("0.0117"),
    ),
]
FOUNDING = row(
    10, session_key="fp:abc", session_source="tool_call", client=None, dialect="openai_chat", upstream_host="cliproxy.local",
    model_requested="claude-sonnet-4-5", model_reported=None, usagefix_status="rewritten", rules=("R1",),
    usage_before=usage(1678, 370, read=105_530), usage_after=usage(107_208, 370, read=105_530),
    cost_before=Decimal("-0.2850684"), cost_after=Decimal("0.0421134"), context_window=None,
)  # fmt: skip
UNPRICED = row(20, session_key="codex:T", session_source="header", client="codex", model_reported="mystery-1",
               usage_after=usage(50, 5), cost_before=None, cost_after=None, context_window=None)  # fmt: skip
UNMEASURED = row(21, session_key="codex:T", client="codex", usage_before=None, usage_after=None, cost_before=None, cost_after=None,
                 status_code=502, usagefix_status="unmeasured", lane="main")  # fmt: skip
ALL = [*LOOP, FOUNDING, UNPRICED, UNMEASURED]


def test_session_cost_is_the_sum_and_context_is_the_last_main_step() -> None:
    report = build_report(ALL)
    claude = next(g for g in report.groups if g.key == "claude:S1")
    assert claude.steps == 4 and claude.lanes == ("main", "agent-1")
    assert claude.cost_after == Decimal("0.0462") + Decimal("0.0112") + Decimal("0.2835") + Decimal("0.0117")
    assert claude.tokens == {
        "input": 128_300,
        "cache_read": 23_500,
        "cache_write": 12_200,
        "output": 1_850,
        "reasoning": 120,
    }
    # The last main-lane step, not the subagent's bigger input, not the sum; peak is separate.
    assert claude.context == Context(13_500, 200_000, "claude-sonnet-4-5-20250929", 13_500)
    assert claude.context.percent == pytest.approx(6.75)


def test_the_founding_bug_shows_a_negative_before_cost_and_no_guessed_window() -> None:
    fp = next(g for g in build_report(ALL).groups if g.key == "fp:abc")
    assert fp.cost_before == Decimal("-0.2850684") and fp.cost_after == Decimal("0.0421134")
    assert fp.tokens_before["input"] == 1678 and fp.tokens["input"] == 107_208
    assert fp.context.window is None and fp.context.percent is None
    assert context_cell(fp.context) == "107,208 (window unknown)"
    assert fp.source == "tool_call" and fp.models == ("claude-sonnet-4-5",)


def test_unpriced_is_null_never_zero_and_unmeasured_steps_are_not_summed() -> None:
    codex = next(g for g in build_report(ALL).groups if g.key == "codex:T")
    assert codex.steps == 2 and codex.unpriced_steps == 1 and codex.unmeasured_steps == 1
    assert codex.cost_after is None and codex.cost_before is None
    assert codex.tokens["input"] == 50 and codex.tokens["cache_read"] is None
    # One unpriced step makes the total unpriced too: a partial sum is no total.
    assert build_report(ALL).totals.cost_after is None
    assert build_report([UNMEASURED]).totals.cost_after is None
    assert build_report([]).totals.tokens == dict.fromkeys(
        ("input", "cache_read", "cache_write", "output", "reasoning")
    )


# A session whose steps did not all measure every kind: an Anthropic step with its cache counts, a
# step through a proxy whose dialect left the cache counts out (None: not reported, never 0), and
# a stream cut off before its usage (R8: no usage at all, unmeasured).
PARTIAL = [
    row(40, session_key="claude:P", usage_after=usage(1000, 10, read=800, write=100)),
    row(41, session_key="claude:P", dialect="openai_chat", upstream_host="cliproxy.local", usage_after=usage(1200, 20)),
    row(42, session_key="claude:P", usage_before=None, usage_after=None, cost_before=None, cost_after=None,
        final_seen=False, usagefix_status="unmeasured", error="peer closed connection"),
]  # fmt: skip


def test_a_sum_over_some_of_the_steps_is_kept_and_says_how_many_it_covers() -> None:
    from usagefix.reporting.aggregate import Coverage

    (group,) = build_report(PARTIAL).groups
    # The sums stay what they are: a true lower bound, over the steps that measured the kind.
    assert group.tokens == {
        "input": 2200,
        "cache_read": 800,
        "cache_write": 100,
        "output": 30,
        "reasoning": None,
    }
    # Input and output: every step with usage has them; the cut-off step has no usage at all.
    assert group.coverage["input"] == Coverage(measured=2, unreported=0, unmeasured=1)
    assert group.coverage["output"].partial and group.coverage["input"].steps == 3
    # Cache reads: one step reported them, one step's dialect left them out, one had no usage.
    assert group.coverage["cache_read"] == Coverage(measured=1, unreported=1, unmeasured=1)
    assert group.coverage["cache_read"].partial and group.coverage["cache_write"].partial
    # No step measured reasoning: unmeasured (None), not partial, never 0.
    assert group.coverage["reasoning"] == Coverage(measured=0, unreported=2, unmeasured=1)
    assert not group.coverage["reasoning"].partial
    assert group.coverage_before["input"] == Coverage(measured=2, unreported=0, unmeasured=1)
    # Every step measured it: the whole sum, not partial.
    whole = build_report(PARTIAL[:1]).groups[0]
    assert not any(c.partial for c in whole.coverage.values() if c.measured)


def test_an_error_step_and_a_gemini_step_without_a_count_leave_a_sum_whole() -> None:
    from usagefix.reporting.aggregate import Coverage

    ok = row(1, usage_after=usage(1000, 10, read=400))
    # An HTTP error (a 429 retry) or no response at all used no tokens: not a step of the sums.
    refused = row(2, status_code=429, usage_after=None, usagefix_status="http_error")
    lost = row(3, status_code=None, usage_after=None, usagefix_status="unmeasured")
    # Gemini's JSON leaves a zero count out (proto3): no cache read there is 0 cache reads.
    gemini = row(4, dialect="gemini", path="/v1beta/models/gemini-2.5-pro:generateContent",
                 usage_after=usage(500, 5, reasoning=3))  # fmt: skip
    (group,) = build_report([ok, refused, lost, gemini]).groups
    assert group.coverage["input"] == Coverage(measured=2, unreported=0, unmeasured=0)
    assert group.coverage["cache_read"] == Coverage(measured=2, unreported=0, unmeasured=0)
    assert group.tokens["cache_read"] == 400 and not group.coverage["cache_read"].partial
    # Reasoning: Gemini's counted, the Anthropic step's is unreported: a lower bound still.
    assert group.coverage["reasoning"] == Coverage(measured=1, unreported=1, unmeasured=0)
    assert group.coverage["reasoning"].partial


_COUNT = st.none() | st.integers(0, 10**6)


@given(st.lists(st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**5), _COUNT, _COUNT, _COUNT),
                min_size=1, max_size=12))  # fmt: skip
def test_a_partial_sum_is_the_sum_of_what_was_reported_and_every_step_is_accounted_for(
    steps: list[tuple[int, int, int | None, int | None, int | None] | None],
) -> None:
    rows = [
        row(i, usage_after=None if s is None else usage(s[0], s[1], s[2], s[3], s[4]))
        for i, s in enumerate(steps)
    ]
    (group,) = build_report(rows).groups
    for kind, at in (("input", 0), ("output", 1), ("cache_read", 2), ("cache_write", 3), ("reasoning", 4)):
        reported = [s[at] for s in steps if s is not None and s[at] is not None]
        c = group.coverage[kind]
        assert c.steps == len(steps) and c.measured == len(reported)
        assert c.unmeasured == steps.count(None) == group.unmeasured_steps
        # None only when no step reported it (never 0); partial exactly when some did and some not.
        assert group.tokens[kind] == (sum(reported) if reported else None)
        assert c.partial == (0 < len(reported) < len(steps))


def test_the_json_export_says_which_sums_are_partial() -> None:
    out = report_json(build_report(PARTIAL))
    (session,) = out["sessions"]
    assert session["tokens"] == {
        "input": 2200,
        "cache_read": 800,
        "cache_write": 100,
        "output": 30,
        "reasoning": None,
    }
    assert session["tokens_partial"] == {
        "input": {"measured_steps": 2, "steps": 3, "unreported_steps": 0, "unmeasured_steps": 1},
        "cache_read": {"measured_steps": 1, "steps": 3, "unreported_steps": 1, "unmeasured_steps": 1},
        "cache_write": {"measured_steps": 1, "steps": 3, "unreported_steps": 1, "unmeasured_steps": 1},
        "output": {"measured_steps": 2, "steps": 3, "unreported_steps": 0, "unmeasured_steps": 1},
    }
    assert out["totals"]["tokens_partial"] == session["tokens_partial"]
    # A sum over every step is not listed; neither is a kind no step measured (null in tokens).
    assert report_json(build_report(PARTIAL[:1]))["sessions"][0]["tokens_partial"] == {}
    assert report_json(build_report(PARTIAL, by="host"))["groups"][0]["tokens_partial"]["cache_read"] == {
        "measured_steps": 1, "steps": 2, "unreported_steps": 0, "unmeasured_steps": 1}  # fmt: skip


def test_the_terminal_marks_a_partial_sum_as_a_lower_bound() -> None:
    text = render(build_report(PARTIAL))
    line = next(ln for ln in text.splitlines() if ln.lstrip("│ ").startswith("claude:P"))
    for cell in ("≥2,200", "≥800", "≥100", "≥30"):
        assert cell in line, cell
    assert "≥: a lower bound" in text
    said = " ".join(text.split("≥: a lower bound", 1)[1].split())  # the legend, unwrapped
    assert (
        "In the total: input before 2 of 3, input after 2 of 3, cache read 1 of 3, cache write 1 of 3,"
        in said
    )
    # Nothing partial: no mark, no legend line.
    whole = render(build_report(PARTIAL[:1]))
    assert "≥" not in whole and "lower bound" not in whole


def test_the_html_marks_a_partial_sum_and_says_how_many_steps_it_covers() -> None:
    page = render_html(build_report(PARTIAL))
    # The cell sorts by its number and says which steps are not in it.
    assert (
        '<td class="n partial" data-v="800" title="a lower bound: 1 of 3 steps reported it '
        '(1 without this count, 1 without usage)">≥800</td>'
    ) in page
    assert 'data-v="2200" title="a lower bound: 2 of 3 steps reported it (1 without usage)">≥2,200<' in page
    assert (
        "<dt>Tokens: cache read</dt><dd>≥800</dd>" in page and '<p id="partial-note">≥: a lower bound' in page
    )
    whole = render_html(build_report(PARTIAL[:1]))
    assert "≥" not in whole and "partial-note" not in whole and "<dd>800</dd>" in whole


def test_json_has_exactly_the_issue_keys_and_decimal_strings() -> None:
    out = report_json(build_report(ALL))
    assert set(out) == {"sessions", "totals"} and set(out["totals"]) == {
        "tokens",
        "tokens_partial",
        "cost_usd",
    }
    keys = {"session", "source", "client", "steps", "lanes", "models", "tokens", "tokens_partial", "cost_usd",
            "context"}  # fmt: skip
    assert all(set(s) == keys for s in out["sessions"])
    claude = out["sessions"][0]
    assert (
        claude["session"] == "claude:S1" and claude["steps"] == 4 and claude["lanes"] == ["main", "agent-1"]
    )
    assert claude["cost_usd"] == {"before": "0.3526", "after": "0.3526", "provider": None}
    assert claude["context"] == {"tokens": 13_500, "window": 200_000, "model": "claude-sonnet-4-5-20250929"}
    assert set(claude["tokens"]) == {"input", "cache_read", "cache_write", "output", "reasoning"}
    # The subagent step reported no cache counts and only the last step reported reasoning.
    assert claude["tokens_partial"]["cache_read"] == {
        "measured_steps": 3, "steps": 4, "unreported_steps": 1, "unmeasured_steps": 0}  # fmt: skip
    assert set(claude["tokens_partial"]) == {"cache_read", "cache_write", "reasoning"}
    assert out["sessions"][1]["cost_usd"]["before"] == "-0.2850684"
    assert out["totals"]["cost_usd"] == {"before": None, "after": None, "provider": None}
    assert json.loads(json.dumps(out)) == out  # plain JSON
    priced = report_json(build_report(LOOP))
    assert priced["totals"]["cost_usd"]["after"] == "0.3526"


def test_provider_cost_is_summed_beside_ours_and_money_is_never_in_exponent_form() -> None:
    rows = [row(1, cost_provider=Decimal("0.0000001")), row(2, cost_provider=Decimal("0.25"))]
    assert report_json(build_report(rows))["totals"]["cost_usd"]["provider"] == "0.2500001"
    assert money(Decimal("1E-7")) == "0.0000001" and money(None) is None


@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**5), st.booleans()), min_size=1, max_size=12)
)
def test_sum_over_steps_and_last_step_context_for_any_loop(steps: list[tuple[int, int, bool]]) -> None:
    rows = [row(i, usage_after=usage(inp, out), lane="main" if main else "sub", cost_after=Decimal(inp) / 10**6)
            for i, (inp, out, main) in enumerate(steps)]  # fmt: skip
    (group,) = build_report(rows).groups
    assert group.tokens["input"] == sum(s[0] for s in steps) and group.tokens["output"] == sum(
        s[1] for s in steps
    )
    assert group.cost_after == sum((Decimal(s[0]) / 10**6 for s in steps), Decimal(0))
    mains = [s[0] for s in steps if s[2]]
    assert group.context.tokens == (mains[-1] if mains else None)
    assert group.context.peak == (max(mains) if mains else None)


def test_grouping_by_model_host_and_day_and_the_filters() -> None:
    by_model = report_json(build_report(ALL, by="model"))
    assert by_model["by"] == "model" and {g["key"] for g in by_model["groups"]} == {
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
        "mystery-1",
    }
    by_host = build_report(ALL, by="host")
    assert [g.key for g in by_host.groups] == ["api.anthropic.com", "cliproxy.local"] and by_host.groups[
        0
    ].sessions == 2
    assert [g.key for g in build_report(ALL, by="day").groups] == ["2026-05-28"]
    assert build_report(ALL, since=DAY + 10).totals.steps == 3
    assert build_report(ALL, model="MYSTERY").totals.steps == 1
    assert build_report(ALL, host="cliproxy").totals.steps == 1
    # An exchange without a session is a group of its own.
    lone = [row(1, session_key=None, session_source=None), row(2, session_key=None, session_source=None)]
    assert [g.key for g in build_report(lone).groups] == [None, None]
    assert report_json(build_report(lone))["sessions"][0]["source"] is None


def test_csv_has_one_row_per_exchange_with_otel_names() -> None:
    text = rows_csv(ALL)
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == len(ALL) and tuple(table[0]) == CSV_COLUMNS
    for name in (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.conversation.id",
    ):
        assert name in CSV_COLUMNS
    founding = next(r for r in table if r["usagefix.exchange.id"] == "ex010")
    assert (
        founding["gen_ai.usage.input_tokens"] == "107208"
        and founding["usagefix.before.gen_ai.usage.input_tokens"] == "1678"
    )
    assert (
        founding["usagefix.cost.before_usd"] == "-0.2850684"
        and founding["gen_ai.conversation.id"] == "fp:abc"
    )
    unmeasured = next(r for r in table if r["usagefix.exchange.id"] == "ex021")
    assert unmeasured["gen_ai.usage.input_tokens"] == "" and unmeasured["usagefix.cost.after_usd"] == ""


def render(report: Any) -> str:
    console = Console(file=io.StringIO(), width=400, color_system=None)
    print_report(report, console)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def test_terminal_table_has_before_after_columns_a_total_row_and_unpriced() -> None:
    text = render(build_report(ALL))
    for needle in ("Cost before", "Cost after", "Input before", "Input after", "Total", "unpriced", "-$0.2851",
                   "tool_call (inferred)", "13,500 / 200,000", "(6.8%)", "claude-sonnet-4-5-20250929", "1 step(s) unpriced", "1 step(s) without usage"):  # fmt: skip
        assert needle in text, needle
    other = render(build_report([*ALL, row(30, model_reported=None, model_requested=None)], by="model"))
    assert "(unknown)" in other
    other = render(build_report(ALL, by="host"))
    assert "api.anthropic.com" in other and "Context" not in other
    assert "(no session)" in render(build_report([row(1, session_key=None, session_source=None)]))
    assert dollars(Decimal("12.34567")) == "$12.3457" and dollars(Decimal("0.0000004")) == "$0.000000"


def test_html_is_self_contained() -> None:
    page = render_html(build_report(ALL))
    assert (
        page.startswith("<!doctype html>") and 'id="cost-chart"' in page and 'class="context-chart"' in page
    )
    assert "http://" not in page and "https://" not in page and "<link" not in page and "src=" not in page
    assert "window unknown" in page and "window 200,000" in page and 'class="n unpriced"' in page
    assert "No sessions." in render_html(build_report([]))
    lone = render_html(build_report([row(1, session_key=None, usage_after=None, cost_after=None)]))
    assert "No main-lane steps with usage." in lone and "(no session) ex001" in lone


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def fake_sources(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Stand-ins for the sources (`read_rows(target)`, `rows_from_flows(paths, pipeline)`): the
    rows they give are the subject here; the sources have tests of their own (test_ledger*)."""
    from usagefix import cmd_report

    calls: dict[str, list[Any]] = {"ledger": [], "flows": []}
    monkeypatch.setattr(cmd_report, "read_rows", lambda target: calls["ledger"].append(target) or LOOP)
    monkeypatch.setattr(
        cmd_report,
        "rows_from_flows",
        lambda paths, pipeline: calls["flows"].append(list(paths)) or [*LOOP, FOUNDING],
    )
    return calls


def test_report_command_reads_each_kind_of_path(
    tmp_path: Path, fake_sources: dict[str, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "usagefix.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    flow = tmp_path / "run.mitm"
    flow.write_bytes(b"5:hello,")
    (tmp_path / "notes.txt").write_text("x")
    assert cli.main(["report", "--json", str(db), str(flow), str(tmp_path), "postgresql://u@h/db"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["session"] for s in out["sessions"]] == ["claude:S1", "fp:abc"]  # each exchange once
    assert fake_sources["ledger"] == [str(db), "postgresql://u@h/db"]
    assert fake_sources["flows"] == [[flow], [flow]]
    assert cli.main(["report", "--csv", "--since", "2026-05-28T00:00:00", str(flow)]) == 0
    assert capsys.readouterr().out.count("\n") == 1 + 5
    html = tmp_path / "r.html"
    assert cli.main(["report", "--by", "model", "--html", str(html), str(flow)]) == 0
    assert 'id="cost-chart"' in html.read_text() and "2 sessions" in capsys.readouterr().err
    assert cli.main(["report", str(flow)]) == 0 and "Total" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "missing.sqlite")]) == 2
    assert capsys.readouterr().err == f"usagefix: {tmp_path / 'missing.sqlite'}: no such file or directory\n"
    # A bad target is named, and the others are still reported (as usagefix diff does): exit 2.
    assert cli.main(["report", str(tmp_path / "missing.sqlite"), str(flow)]) == 2
    out = capsys.readouterr()
    assert "missing.sqlite: no such file or directory" in out.err and "Total" in out.out
    with pytest.raises(SystemExit):
        cli.main(["report", "--since", "yesterday", str(flow)])


def test_a_row_type_stays_what_the_ledger_gives() -> None:
    assert {f.name for f in dataclasses.fields(ExchangeRow)} >= {
        "session_key",
        "lane",
        "cost_after",
        "context_window",
    }


def test_report_names_what_it_cannot_read_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "README.md"
    text.write_text("# not flows\n")
    assert cli.main(["report", str(text)]) == 2
    assert capsys.readouterr().err == f"usagefix: {text}: not a mitmproxy flow file\n"
    assert cli.main(["report", "postgresql://nobody@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usagefix: cannot read the ledger: ") and err.count("\n") == 1
    assert cli.main(["report", str(tmp_path)]) == 2  # a directory without flow files, as diff says
    assert "no flow files (*.mitm, *.flows, *.flow) in this directory" in capsys.readouterr().err
    (tmp_path / "empty.mitm").write_bytes(b"")
    assert cli.main(["report", "--since", "2h", "--json", str(tmp_path)]) == 0  # as diff --since
