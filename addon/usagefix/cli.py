"""The `usagefix` command. Each subcommand lives in a module of its own (`usagefix.cmd_<name>`),
which adds its parser with `add_parser(sub)` and sets `run` (args → exit status) as a default."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mitmproxy import exceptions
from mitmproxy.version import VERSION

from usagefix import __version__, cmd_diff, cmd_doctor, cmd_ledger, cmd_renormalize, cmd_report

__all__ = ["main"]

COMMANDS = (cmd_diff, cmd_report, cmd_ledger, cmd_renormalize, cmd_doctor)
"""The subcommands, in the order `usagefix --help` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="usagefix", description="Read the usagefix records in mitmproxy flow files; check the setup."
    )
    version = f"usagefix {__version__} (mitmproxy {VERSION}, Python {sys.version.split()[0]})"
    ap.add_argument("--version", action="version", version=version)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    args = ap.parse_args(argv)
    if args.command is None:  # `usagefix` alone: what it can do
        ap.print_help()
        return 0
    try:
        status: int = args.run(args)
        return status
    except BrokenPipeError:  # `usagefix diff FILE | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, exceptions.FlowReadException) as e:
        print(f"usagefix: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
