"""`usagefix ledger import`: (re)build the ledger from flow files, idempotently.

usagefix ledger import FILE.mitm|DIR ... [--ledger PATH|URL]

Each LLM exchange in the files (a directory: the flow files directly inside it) becomes one row,
by the same pipeline the live addon runs; a row whose flow id is there already is left as it is, so importing
the same files twice gives the same ledger.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import exceptions

from usagefix.exchange import ExchangeRow
from usagefix.flowfacts import pipeline_for, rows_from_flows
from usagefix.ledger import open_store, parse_target
from usagefix.ledger.pipeline import Pipeline
from usagefix.optioncheck import OptionError, check_value, header_names
from usagefix.options import OPTIONS

__all__ = ["add_parser"]

DEFAULT_LEDGER = Path(__file__).resolve().parents[2] / "flows" / "captures" / "usagefix.sqlite"
"""Where `scripts/run` writes the ledger (in the repository, wherever the command is run from)."""
BATCH = 500


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ledger", help="the usage ledger: one row per LLM exchange")
    verbs = p.add_subparsers(dest="verb", required=True)
    i = verbs.add_parser("import", help="write the LLM exchanges of flow files to the ledger (idempotent)")
    i.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="FILE|DIR",
        help="flow files, or directories of them (*.mitm, *.flows, *.flow)",
    )
    i.add_argument(
        "--ledger",
        default=str(DEFAULT_LEDGER),
        metavar="PATH|URL",
        help=f"a SQLite file or a postgresql:// URL (default: {DEFAULT_LEDGER})",
    )
    add_pipeline_arguments(i)
    i.set_defaults(run=lambda args: import_flows(args.paths, args.ledger, pipeline_from_args(args)))


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """The options the live proxy was run with that change rows read from flow files."""
    p.add_argument(
        "--session-header",
        default=None,
        metavar="NAMES",
        help="as usage_session_header: request headers (comma-separated) that name a session "
        "(for flow files; a ledger's rows got their sessions when they were written)",
    )
    p.add_argument(
        "--prices",
        default=None,
        metavar="FILE",
        help="as usage_prices: a price override file (for flow files; a ledger's rows were priced "
        "when they were written)",
    )


def pipeline_from_args(args: argparse.Namespace) -> Pipeline:
    try:
        check_value(OPTIONS["usage_session_header"], args.session_header)
        check_value(OPTIONS["usage_prices"], args.prices)
    except OptionError as e:
        raise SystemExit(f"usagefix: {e}") from None
    return pipeline_for(header_names(args.session_header), args.prices)


def import_flows(paths: Sequence[Path], ledger: str, pipeline: Pipeline | None = None) -> int:
    try:
        target = parse_target(ledger)
    except ValueError as e:
        print(f"usagefix: --ledger: {e}", file=sys.stderr)
        return 2
    if target.kind == "off":
        print("usagefix: --ledger: off is not a ledger to import into", file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        store = open_store(target)
    except Exception as e:  # sqlite3.Error, psycopg.Error: say which ledger, not a traceback
        print(f"usagefix: cannot open the ledger {target}: {e}", file=sys.stderr)
        return 2
    pipeline = pipeline if pipeline is not None else Pipeline()
    seen = new = 0
    failed = False
    batch: list[ExchangeRow] = []
    try:
        for path in paths:
            # Row by row, so that a file cut short (a proxy killed while writing it) still gives
            # the rows of every flow before the cut; then the error names the file, and the other
            # files are still read (as usagefix diff and report do).
            try:
                for row in rows_from_flows([path], pipeline):
                    batch.append(row)
                    if len(batch) >= BATCH:
                        new, seen, batch = new + store.write(batch), seen + len(batch), []
            except (OSError, exceptions.FlowReadException) as e:
                failed = True
                print(f"usagefix: {e}", file=sys.stderr)
    finally:
        if batch:
            new, seen = new + store.write(batch), seen + len(batch)
        store.close()
    took = time.monotonic() - start
    print(f"{seen} exchanges read, {new} new rows in {target} ({took:.1f} s)", file=sys.stderr)
    return 2 if failed else 0
