"""`usagefix doctor`: is this machine ready to run the proxy?

Checks the mitmproxy version against the supported range, the content-encoding decoders a
compressed stream needs (the libraries mitmproxy itself uses), whether the proxy's port is free,
and whether mitmproxy's CA exists (regular mode's clients must trust it). Exit status 1 when
something would stop the proxy or a stream's repair; a CA not created yet is only said.
"""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path

from mitmproxy.version import VERSION
from rich.console import Console
from rich.markup import escape

from usagefix.decoding import make_decoder

__all__ = ["add_parser"]

SUPPORTED = ((12, 2), (12, 3))
"""The mitmproxy lines (major, minor) tested: pyproject.toml's range, both locks."""
ENCODINGS = ("gzip", "deflate", "br", "zstd")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("doctor", help="check mitmproxy, the decoders, the port and the CA")
    d.add_argument("--listen-host", default="127.0.0.1", help="the proxy's address (default 127.0.0.1)")
    d.add_argument("-p", "--port", type=int, default=8080, help="the proxy's port (default 8080)")
    d.add_argument(
        "--confdir",
        type=Path,
        default=Path("~/.mitmproxy"),
        help="mitmproxy's confdir (default ~/.mitmproxy)",
    )
    d.set_defaults(run=run)


def _line(version: str) -> tuple[int, int] | None:
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _port_problem(host: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return (
                    f"{host}:{port} is in use (scripts/run or another mitmproxy running?): choose one with -p"
                )
            return f"{host}:{port} cannot be listened on: {e.strerror or e}"
    return None


def run(args: argparse.Namespace) -> int:
    out = Console(highlight=False, soft_wrap=True)
    failed = False

    def say(state: str, text: str) -> None:
        colour = {"ok": "green", "warn": "yellow", "FAIL": "red"}[state]
        out.print(f"[{colour}]{state:<4}[/] {escape(text)}")

    supported = " and ".join(f"{a}.{b}.x" for a, b in SUPPORTED)
    if _line(VERSION) in SUPPORTED:
        say("ok", f"mitmproxy {VERSION} ({supported} are supported)")
    else:
        failed = True
        say("FAIL", f"mitmproxy {VERSION}: not a supported version ({supported}); reinstall with scripts/run")

    missing = [e for e in ENCODINGS if make_decoder(e) is None]
    if missing:
        failed = True
        say(
            "FAIL", f"decoders: {', '.join(missing)} missing: such streams pass through untouched, unrepaired"
        )
    else:
        say("ok", f"decoders: {', '.join(ENCODINGS)} (compressed streams are decoded and repaired)")

    problem = _port_problem(args.listen_host, args.port)
    if problem:
        failed = True
        say("FAIL", f"port: {problem}")
    else:
        say("ok", f"port: {args.listen_host}:{args.port} is free")

    ca = args.confdir.expanduser() / "mitmproxy-ca-cert.pem"
    if ca.is_file():
        say("ok", f"CA: {ca} (regular mode's clients must trust it: see the README)")
    else:
        say("warn", f"CA: {ca} does not exist yet: mitmproxy creates it on its first run")
    return 1 if failed else 0
