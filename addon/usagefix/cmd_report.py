"""`usagefix report`: cost and tokens per session (or model, host, day), from a ledger or flow files.

usagefix report [PATH ...]            a terminal table (default PATH: the ledger scripts/run writes)
usagefix report --by model|host|day   grouped otherwise (default: session)
usagefix report --json | --csv        one JSON object; one CSV row per exchange
usagefix report --html OUT.html       one self-contained file: the session table and SVG charts

PATH is a ledger file (SQLite), a postgresql:// URL, a flow file, or a directory of flow files.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import psycopg
from mitmproxy import exceptions
from rich.console import Console

from usagefix import cmd_ledger, diffview
from usagefix.exchange import ExchangeRow
from usagefix.flowfacts import rows_from_flows
from usagefix.flowfiles import flow_files
from usagefix.ledger import read_rows
from usagefix.ledger.pipeline import Pipeline
from usagefix.reporting import build_report, print_report, render_html, report_json, rows_csv

__all__ = ["add_parser", "load_rows", "parse_since"]

DEFAULT_LEDGER = cmd_ledger.DEFAULT_LEDGER
_SQLITE_MAGIC = b"SQLite format 3\x00"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("report", help="cost and tokens per session, model, host or day, before and after")
    r.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help=f"a ledger, postgresql:// URL, flow file or directory (default {DEFAULT_LEDGER})",
    )
    r.add_argument("--by", choices=("session", "model", "host", "day"), default="session")
    r.add_argument(
        "--since",
        type=parse_since,
        help="only exchanges from then on: 30m, 2h, 1d, 1w ago, or an ISO date or time (UTC unless given)",
    )
    r.add_argument("--model", help="only exchanges whose model contains this")
    r.add_argument("--host", help="only exchanges whose upstream host contains this")
    out = r.add_mutually_exclusive_group()
    out.add_argument(
        "--json", action="store_true", help='one JSON object: {"sessions": [...], "totals": {...}}'
    )
    out.add_argument("--csv", action="store_true", help="one CSV row per exchange")
    out.add_argument("--html", type=Path, metavar="OUT", help="write one self-contained HTML report to OUT")
    cmd_ledger.add_pipeline_arguments(r)
    r.set_defaults(run=run)


def parse_since(text: str) -> float:
    """As `usagefix diff --since`: `30m`, `2h`, `1d`, `1w` ago, or an ISO date or time (UTC)."""
    try:
        return diffview.parse_since(text, time.time())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _is_ledger(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC


def load_rows(
    targets: Sequence[str], pipeline: Pipeline | None = None, errors: list[str] | None = None
) -> list[ExchangeRow]:
    """Rows from each target: ledgers through `usagefix.ledger.read_rows`, flow files through
    `usagefix.flowfacts.rows_from_flows` (one pipeline for all, so sessions span files); an
    exchange in several targets is counted once. With `errors`, a target that cannot be read
    (or stops being readable) is named there in one line and the others are still read, as
    `usagefix diff` does; without, its error is raised."""
    pipeline = pipeline if pipeline is not None else Pipeline()
    rows: dict[str, ExchangeRow] = {}

    def add(found: Iterable[ExchangeRow]) -> None:
        for row in found:
            rows.setdefault(row.id, row)

    for target in targets:
        try:
            if target.startswith(("postgresql://", "postgres://")):
                add(read_rows(target))
                continue
            path = Path(target)
            if path.is_dir() or not path.exists():  # a missing one: flow_files names it
                add(rows_from_flows(flow_files(path), pipeline))
            elif _is_ledger(path):
                add(read_rows(str(path)))
            else:
                add(rows_from_flows([path], pipeline))
        except (OSError, exceptions.FlowReadException, sqlite3.Error, psycopg.Error) as e:
            if errors is None:
                raise
            errors.append(one_line(e))
    return list(rows.values())


def one_line(e: BaseException) -> str:
    """A target's error as `usagefix report` says it."""
    if isinstance(e, exceptions.FlowReadException):  # "FILE: Invalid data format" from mitmproxy
        where, _, why = str(e).partition(": ")
        said = "not a mitmproxy flow file" if "Invalid data format" in why else f"unreadable: {why}"
        return f"{where}: {said}"
    if isinstance(e, sqlite3.Error | psycopg.Error):  # the ledger's fault, not a traceback
        return f"cannot read the ledger: {type(e).__name__}: {e}".splitlines()[0]
    return str(e)


def run(args: argparse.Namespace) -> int:
    errors: list[str] = []
    rows = load_rows(args.paths or [str(DEFAULT_LEDGER)], cmd_ledger.pipeline_from_args(args), errors)
    for error in errors:
        print(f"usagefix: {error}", file=sys.stderr)
    if errors and not rows:
        return 2
    filters = {"since": args.since, "model": args.model, "host": args.host}
    report = build_report(rows, by=args.by, **filters)
    if args.json:
        print(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    elif args.csv:
        sys.stdout.write(rows_csv(report.totals.rows))
    elif args.html:
        sessions = report if args.by == "session" else build_report(rows, **filters)
        args.html.write_text(render_html(sessions), encoding="utf-8")
        print(
            f"wrote {args.html} ({len(sessions.groups)} sessions, {sessions.totals.steps} exchanges)",
            file=sys.stderr,
        )
    else:
        # A pipe or a file gets the whole table, not one squeezed to 80 columns.
        print_report(report, Console() if sys.stdout.isatty() else Console(width=320))
    return 2 if errors else 0
