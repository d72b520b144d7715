"""A report as a terminal table (rich), with a total row and before/after columns. Pure: it writes
to the console it is given (rich honours NO_COLOR and plain output when not a terminal).

A token sum over only some of its group's steps is shown `≥12,345` (a lower bound), with a legend
line saying what the mark means and, for the total row, how many steps each such sum covers."""

from __future__ import annotations

import textwrap
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from usagefix.reporting.aggregate import Context, Coverage, Group, Report

__all__ = ["INFERRED", "PARTIAL", "PARTIAL_NOTE", "count", "dollars", "print_report", "tokens_cell"]

INFERRED = ("chain", "tool_call", "fingerprint", "connection")
"""Session sources that are inferred rather than named by the client."""


def dollars(value: Decimal | None) -> str:
    """`$0.0123`, `-$0.2948`; small amounts keep their digits; None is "unpriced", never $0."""
    if value is None:
        return "unpriced"
    places = Decimal("0.000001") if abs(value) < Decimal("0.01") else Decimal("0.0001")
    text = f"${abs(value).quantize(places):,f}"
    return f"-{text}" if value < 0 else text


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


PARTIAL = "≥"
"""Marks a token sum over only some of its group's steps: a lower bound, never the whole."""
PARTIAL_NOTE = (
    f"{PARTIAL}: a lower bound, the sum over only the steps that reported that kind; a step without"
    " usage, or whose upstream left the kind out, is left out of the sum, not counted as 0"
)


def tokens_cell(value: int | None, coverage: Coverage) -> str:
    """`12,345`; `≥12,345` when only some steps measured the kind; `—` when none did."""
    if coverage.partial and value is not None:
        return f"{PARTIAL}{value:,}"
    return count(value)


def context_cell(context: Context) -> str:
    if context.tokens is None:
        return "—"
    if context.percent is None:
        return f"{context.tokens:,} (window unknown)"
    return f"{context.tokens:,} / {context.window:,} ({context.percent:.1f}%)"


def _label(report: Report, group: Group) -> str:
    if report.by != "session":
        return group.key or "(unknown)"
    if group.key is None:
        return f"(no session) {group.rows[0].id[:8]}"
    return group.key


def _source(group: Group) -> str:
    if group.source is None:
        return "—"
    return f"{group.source} (inferred)" if group.source in INFERRED else group.source


def _money_cells(group: Group) -> list[str]:
    delta = None
    if group.cost_before is not None and group.cost_after is not None:
        delta = group.cost_after - group.cost_before
    provider = dollars(group.cost_provider) if group.cost_provider is not None else "—"
    return [
        dollars(group.cost_before),
        dollars(group.cost_after),
        dollars(delta) if delta is not None else "—",
        provider,
    ]


# The token columns: heading, whether the sum is of the upstream's reading (before) or the
# corrected usage (after), and the kind.
_TOKENS = (
    ("Input before", True, "input"),
    ("Input after", False, "input"),
    ("Cache read", False, "cache_read"),
    ("Cache write", False, "cache_write"),
    ("Output before", True, "output"),
    ("Output after", False, "output"),
)


def _tokens(group: Group, before: bool, kind: str) -> tuple[int | None, Coverage]:
    if before:
        return group.tokens_before[kind], group.coverage_before[kind]
    return group.tokens[kind], group.coverage[kind]


def _token_cells(group: Group) -> list[str]:
    return [tokens_cell(*_tokens(group, before, kind)) for _, before, kind in _TOKENS]


def _partial_note(total: Group) -> list[str]:
    """The legend of `≥`, with how many steps each partial sum of the total row covers; none
    when no sum is partial (a partial group sum makes the total's partial too)."""
    covered = [
        (name.lower(), c) for name, before, kind in _TOKENS if (c := _tokens(total, before, kind)[1]).partial
    ]
    if not covered:
        return []
    said = ", ".join(f"{name} {c.measured} of {c.steps}" for name, c in covered)
    return textwrap.wrap(f"{PARTIAL_NOTE}. In the total: {said} steps.", 96, break_on_hyphens=False)


def print_report(report: Report, console: Console) -> None:
    sessions = report.by == "session"
    table = Table(title=f"usagefix report by {report.by}", show_footer=False, header_style="bold")
    table.add_column(report.by.capitalize(), overflow="fold")
    if sessions:
        table.add_column("Client")
        table.add_column("Source", no_wrap=True)
        table.add_column("Lanes", overflow="fold")
    table.add_column("Steps", justify="right")
    table.add_column("Models", overflow="fold")
    for name, _, _ in _TOKENS:
        table.add_column(name, justify="right")
    for name in ("Cost before", "Cost after", "Δ", "Provider"):
        table.add_column(name, justify="right")
    if sessions:
        table.add_column("Context (last step)", justify="right")
        table.add_column("Peak input", justify="right")
    for group in report.groups:
        cells = [_label(report, group)]
        if sessions:
            cells += [group.client or "—", _source(group), ", ".join(group.lanes)]
        cells += [
            str(group.steps),
            ", ".join(group.models) or "—",
            *_token_cells(group),
            *_money_cells(group),
        ]
        if sessions:
            cells += [context_cell(group.context), count(group.context.peak)]
        table.add_row(*cells)
    total = report.totals
    cells = ["Total"] + (["", "", ""] if sessions else [])
    cells += [str(total.steps), "", *_token_cells(total), *_money_cells(total)] + (
        ["", ""] if sessions else []
    )
    table.add_section()
    table.add_row(*cells, style="bold")
    console.print(table)
    notes = [
        "Cost: the sum over every step of every lane, cache writes included; before = what a standard",
        "consumer computes from the upstream's block, after = the corrected usage.",
    ]
    if sessions:
        notes.append("Context: the last main-lane step's full input (not cumulative); peak: its largest.")
    if total.unpriced_steps:
        notes.append(f"{total.unpriced_steps} step(s) unpriced (unknown model): their groups show no total.")
    if total.unmeasured_steps:
        notes.append(f"{total.unmeasured_steps} step(s) without usage (unmeasured): not in the sums.")
    notes += _partial_note(total)
    console.print("\n".join(notes), style="dim", highlight=False)
