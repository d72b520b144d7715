"""`usagefix diff`: upstream vs client usage, with the rules that fired, per flow.

usagefix diff FILE [FILE ...]          rewritten flows: upstream vs client usage, with the rules
usagefix diff --all FILE               every flow with a record, whatever its status
usagefix diff --json FILE              the same facts as JSON, one object per flow
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy import io as mio

from usagefix.record import METADATA_KEY
from usagefix.report import render_record

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("diff", help="print upstream vs client usage, with the rules that fired, per flow")
    d.add_argument("files", nargs="+", type=Path, metavar="FILE", help="a flow file written with -w")
    d.add_argument("--json", action="store_true", help="one JSON object per flow, for machines")
    d.add_argument("--all", action="store_true", help="every flow with a record, not only rewritten ones")
    d.set_defaults(run=lambda args: diff(args.files, as_json=args.json, everything=args.all))


def records(path: Path, *, everything: bool) -> Iterator[tuple[http.HTTPFlow, dict[str, Any]]]:
    with path.open("rb") as f:
        for flow in mio.FlowReader(f).stream():
            if not isinstance(flow, http.HTTPFlow):
                continue
            rec = flow.metadata.get(METADATA_KEY)
            if isinstance(rec, dict) and (everything or rec.get("status") == "rewritten"):
                yield flow, rec


def diff(paths: Sequence[Path], *, as_json: bool, everything: bool) -> int:
    found = 0
    for path in paths:
        for flow, rec in records(path, everything=everything):
            found += 1
            if as_json:
                row: dict[str, Any] = {"file": str(path), "flow_id": flow.id, "method": flow.request.method}
                row |= {"url": flow.request.pretty_url, "comment": flow.comment, "record": rec}
                print(json.dumps(row, ensure_ascii=False))
            else:
                print(f"== {flow.request.method} {flow.request.pretty_url}  [{path.name} {flow.id[:8]}]")
                print(render_record(rec))
    if not found and not as_json:
        what = "records" if everything else "rewritten flows"
        print(f"no {what} in {', '.join(map(str, paths))}", file=sys.stderr)
    return 0
