"""`usagefix diff`: upstream vs client usage, with the rules that fired, per flow, and a summary.

usagefix diff FILE|DIR [...]           rewritten (and unmeasured, failed) flows, then a summary table
usagefix diff --all FILE               every flow with a record, the unchanged ones too
usagefix diff --json FILE              the same facts as JSON, one object per flow
usagefix diff --model 'claude-*' --host api.example.com --rule R1 --status rewritten --since 2h DIR
usagefix diff --prices prices.toml --session-header x-run-id FILE   as the proxy was run

Each turn of a WebSocket (Codex's Responses, Realtime) is one entry of its own, `WS`, with the id
`<flow id>#<message index>` the ledger gives it.

Each flow shows its cost before / after (what a standard consumer computes from the upstream's
block, and the price of what the client received) and its session: the ledger's pipeline is run
over every LLM flow of the files in order, so sessions and prices agree with `usagefix report`.

A directory stands for the flow files (`*.mitm`, `*.flows`, `*.flow`) directly inside it, as for
`usagefix report` and `ledger import`. A file that cannot be read is named in one line (and the
exit status is 2); the others are still shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from mitmproxy import exceptions, http
from mitmproxy import io as mio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from usagefix.cmd_ledger import add_pipeline_arguments, pipeline_from_args
from usagefix.comment import saved_summary
from usagefix.costview import money_line, session_line
from usagefix.dialects import model_from_path
from usagefix.diffview import Filters, FlowRow, parse_since, summarize
from usagefix.exchange import ExchangeRow
from usagefix.flowfacts import flow_rows
from usagefix.flowfiles import flow_files
from usagefix.ledger.pipeline import Pipeline
from usagefix.record import METADATA_KEY, Status
from usagefix.report import render_record
from usagefix.wsturns import TURNS_KEY

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "diff",
        help="print upstream vs client usage, with the rules that fired, per flow, and a summary",
        description="Upstream vs client usage per flow, with the rules that fired, and a summary "
        "per model and upstream. Unchanged flows (usage already correct) are counted, not shown.",
    )
    d.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="a flow file written with -w, or a directory of them",
    )
    d.add_argument("--json", action="store_true", help="one JSON object per flow, for machines")
    d.add_argument("--all", action="store_true", help="show the unchanged flows too")
    d.add_argument(
        "--model", action="append", default=[], metavar="GLOB", help="only these models (repeatable)"
    )
    d.add_argument("--host", action="append", default=[], metavar="GLOB", help="only these upstream hosts")
    d.add_argument(
        "--rule", action="append", default=[], metavar="ID", help="only flows where this rule fired (R1)"
    )
    d.add_argument(
        "--status", action="append", default=[], choices=get_args(Status), help="only flows of this status"
    )
    d.add_argument("--since", metavar="WHEN", help="only flows since: 30m, 2h, 1d, or an ISO time (UTC)")
    add_pipeline_arguments(d)
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as e:
        print(f"usagefix: --since: {e}", file=sys.stderr)
        return 2
    filters = Filters(
        models=tuple(args.model),
        hosts=tuple(args.host),
        rules=tuple(args.rule),
        statuses=tuple(args.status),
        since=since,
        everything=args.all,
    )
    return diff(args.files, filters, as_json=args.json, pipeline=pipeline_from_args(args))


def _expanded(path: Path) -> list[Path] | list[OSError]:
    try:
        return flow_files(path)
    except OSError as e:
        return [e]


def _unreversed(value: Any) -> Any:
    """mitmproxy's tnetstring files give dicts back in reverse order: put them back."""
    if isinstance(value, dict):
        return {k: _unreversed(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_unreversed(v) for v in value]
    return value


def _model(flow: http.HTTPFlow) -> str | None:
    try:
        body = json.loads(flow.request.get_content(strict=False) or b"")
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return str(body["model"])
    return model_from_path(flow.request.path)


def to_row(
    path: Path, flow: http.HTTPFlow, rec: dict[str, Any], ledger: ExchangeRow | None = None
) -> FlowRow:
    req, resp = flow.request, flow.response
    default_port = {"http": 80, "https": 443}.get(req.scheme)
    host = req.pretty_host if req.port == default_port else f"{req.pretty_host}:{req.port}"
    latency = None
    if resp is not None and resp.timestamp_end is not None and req.timestamp_start:
        latency = round((resp.timestamp_end - req.timestamp_start) * 1000, 1)
    return FlowRow(
        file=str(path),
        flow_id=flow.id,
        method=req.method,
        url=req.pretty_url,
        host=host,
        model=_model(flow),
        started=req.timestamp_start or None,
        http_status=resp.status_code if resp is not None else None,
        latency_ms=latency,
        comment=flow.comment,
        record=_unreversed(rec),
        ledger=ledger,
    )


def _ledger_rows(pipeline: Pipeline | None, flow: http.HTTPFlow) -> dict[str, ExchangeRow]:
    """The flow's ledger rows by id (`<flow id>` for an exchange, `<flow id>#<message index>` for
    each turn of a WebSocket), built in file order, as the live ledger builds them."""
    return {r.id: r for r in flow_rows(flow, pipeline)} if pipeline is not None else {}


def turn_rows(path: Path, flow: http.HTTPFlow, ledger: Mapping[str, ExchangeRow]) -> Iterator[FlowRow]:
    """One row per recorded turn of a WebSocket (Codex's Responses, Realtime): method `WS`, the
    id `<flow id>#<message index>` (as the ledger's), the turn message's time."""
    turns, ws = flow.metadata.get(TURNS_KEY), flow.websocket
    if ws is None or not isinstance(turns, list):
        return
    base = to_row(path, flow, {})
    for entry in turns:
        i = entry.get("message_index") if isinstance(entry, dict) else None
        if not isinstance(i, int) or not 0 <= i < len(ws.messages):
            continue
        if not isinstance(entry.get("record"), dict):
            continue
        turn_id = f"{flow.id}#{i}"
        row = ledger.get(turn_id)
        yield dataclasses.replace(
            base,
            flow_id=turn_id,
            method="WS",
            model=(row.model_reported or row.model_requested) if row is not None else base.model,
            started=ws.messages[i].timestamp,
            latency_ms=None,
            comment=saved_summary(entry["record"]),
            record=_unreversed(entry["record"]),
            ledger=row,
        )


def rows(path: Path, pipeline: Pipeline | None = None) -> Iterator[FlowRow]:
    """The flows with a record in one file, each with its ledger row when a pipeline is given
    (it sees every LLM flow, in order, as the live ledger does). Raises OSError naming the file
    when it is not a flow file, or where it stops being one."""
    read = 0
    try:
        f = path.open("rb")
    except OSError as e:
        raise OSError(f"{path}: {e.strerror or e}") from None
    with f:
        head = f.peek(16)[:16] if hasattr(f, "peek") else b""
        try:
            for flow in mio.FlowReader(f).stream():
                read += 1
                rec = flow.metadata.get(METADATA_KEY)
                if not isinstance(flow, http.HTTPFlow):
                    continue
                ledger = _ledger_rows(pipeline, flow)
                if flow.websocket is not None:
                    yield from turn_rows(path, flow, ledger)
                elif isinstance(rec, dict):
                    yield to_row(path, flow, rec, ledger.get(flow.id))
        except exceptions.FlowReadException:
            if not read and not re.match(rb"\d+:", head):
                raise OSError(f"{path}: not a mitmproxy flow file") from None
            raise OSError(f"{path}: unreadable after flow {read}") from None


def _when(row: FlowRow) -> str:
    if row.started is None:
        return "time unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row.started))


def _facts(row: FlowRow) -> str:
    if row.method == "WS":  # a turn on a WebSocket: one message, no latency of its own
        message = row.flow_id.rsplit("#", 1)[1]
        return f"model {row.model or '?'} · {_when(row)} · WebSocket turn, message {message}"
    status = f"HTTP {row.http_status}" if row.http_status is not None else "no response"
    latency = f"{row.latency_ms:,.0f} ms" if row.latency_ms is not None else "latency unknown"
    return f"model {row.model or '?'} · {_when(row)} · {status} · {latency}"


def _said(ledger: ExchangeRow | None) -> tuple[str | None, list[str]]:
    if ledger is None:
        return None, []
    return money_line(ledger), [session_line(ledger)]


def _summary_table(selected: list[FlowRow]) -> Table:
    table = Table(title="summary", title_justify="left")
    for name in ("model", "upstream"):
        table.add_column(name)
    columns = ("responses", "rewritten", "unmeasured", "tokens as received", "as corrected")
    for name in (*columns, "cost before", "cost after"):
        table.add_column(name, justify="right")
    groups = summarize(selected)
    for i, g in enumerate(groups):
        cells = (g.model, g.upstream, str(g.responses), str(g.rewritten), str(g.unmeasured))
        tokens = (str(g.received), str(g.corrected))
        money = (str(g.cost_before), str(g.cost_after))
        table.add_row(*cells, *tokens, *money, end_section=i == len(groups) - 2)
    return table


def diff(paths: Sequence[Path], filters: Filters, *, as_json: bool, pipeline: Pipeline | None = None) -> int:
    out = Console(highlight=False, soft_wrap=True)
    # Piped or redirected, rich assumes 80 columns: too few for the summary's nine.
    wide = out if out.is_terminal else Console(highlight=False, width=150)
    pipeline = pipeline if pipeline is not None else Pipeline()
    failed = 0
    selected: list[FlowRow] = []
    hidden = 0
    for path in (p for given in paths for p in _expanded(given)):
        if isinstance(path, OSError):
            failed += 1
            print(f"usagefix: {path}", file=sys.stderr)
            continue
        try:
            for row in rows(path, pipeline):
                if not filters.selects(row):
                    continue
                selected.append(row)
                if not filters.shows(row):
                    hidden += 1
                elif as_json:
                    print(json.dumps(row.as_json(), ensure_ascii=False), flush=False)
                else:
                    turn = row.flow_id[row.flow_id.find("#") :] if "#" in row.flow_id else ""
                    where = escape(f"[{Path(row.file).name} {row.flow_id[:8]}{turn}]")
                    out.print(f"[bold]== {escape(row.method)} {escape(row.url)}[/]  [dim]{where}[/]")
                    out.print(_facts(row), style="dim", markup=False)
                    money, notes = _said(row.ledger)
                    kind = "WebSocket turn" if turn else None
                    out.print(render_record(row.record, money=money, notes=notes, kind=kind), markup=False)
        except BrokenPipeError:
            raise
        except OSError as e:
            failed += 1
            print(f"usagefix: {e}", file=sys.stderr)
    if as_json:
        return 2 if failed else 0
    if hidden:
        flows = "flow" if hidden == 1 else "flows"
        out.print(f"{hidden} unchanged {flows} not shown; --all", markup=False)
    if selected:
        wide.print(_summary_table(selected))
    elif not failed:
        print(f"no matching records in {', '.join(map(str, paths))}", file=sys.stderr)
    return 2 if failed else 0
