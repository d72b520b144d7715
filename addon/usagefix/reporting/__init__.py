"""`usagefix report`'s pure half: exchange rows grouped into sessions (or models, hosts, days),
summed and priced, then written as a terminal table, JSON, CSV or one self-contained HTML file."""

from __future__ import annotations

from usagefix.reporting.aggregate import By, Context, Coverage, Group, Report, build_report
from usagefix.reporting.export import money, report_json, rows_csv
from usagefix.reporting.html import render_html
from usagefix.reporting.terminal import print_report

__all__ = [
    "By",
    "Context",
    "Coverage",
    "Group",
    "Report",
    "build_report",
    "money",
    "print_report",
    "render_html",
    "report_json",
    "rows_csv",
]
