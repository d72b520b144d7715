"""The `usagefix` command. Each subcommand lives in a module of its own (`usagefix.cmd_<name>`),
which adds its parser with `add_parser(sub)` and sets `run` (args → exit status) as a default."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mitmproxy import exceptions

from usagefix import cmd_diff, cmd_ledger

__all__ = ["main"]

COMMANDS = (cmd_diff, cmd_ledger)
"""The subcommands, in the order `usagefix --help` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="usagefix", description="Read usagefix records in mitmproxy flow files."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    args = ap.parse_args(argv)
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
