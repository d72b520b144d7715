"""The start banner (`usage_log_lines`, on in `scripts/run`): per proxy server, its mode and where
it listens, the exact lines to paste into a client, and where the capture goes.

Pure: the glue (addon.py's `running` hook) hands over what mitmproxy knows (modes, listen
addresses, `save_stream_file`, `confdir`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Listener", "banner", "ca_cert_path", "capture_path"]


_ANY_HOST = ("", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Listener:
    """One proxy server mitmproxy runs: its mode and where it listens."""

    mode: str
    """mitmproxy's mode name: regular, reverse, upstream, socks5, transparent, wireguard, …"""
    target: str
    """The mode's data: the reverse target or the upstream proxy, else ""."""
    host: str
    port: int


def _url_host(host: str) -> str:
    host = "127.0.0.1" if host in _ANY_HOST else host  # all interfaces: this machine's clients
    return f"[{host}]" if ":" in host else host


def capture_path(save_stream_file: str | None, cwd: Path, now: float | None = None) -> str:
    """Where mitmproxy's `-w` writes now, as an absolute path, and whether it appends."""
    if not save_stream_file:
        return "not saved (no -w)"
    spec = save_stream_file
    append = spec.startswith("+")
    path = Path(os.path.expanduser(time.strftime(spec.removeprefix("+"), time.localtime(now))))
    where = str(path if path.is_absolute() else cwd / path)
    return where + (" (appended)" if append else "")


def ca_cert_path(confdir: str) -> str:
    """mitmproxy's CA certificate in its `confdir` (`~` expanded): what clients must trust for HTTPS."""
    return os.path.join(os.path.expanduser(confdir), "mitmproxy-ca-cert.pem")


def _client_lines(lst: Listener, ca: str) -> list[str]:
    host = f"{_url_host(lst.host)}:{lst.port}"
    trust = f"export SSL_CERT_FILE={ca} REQUESTS_CA_BUNDLE={ca} NODE_EXTRA_CA_CERTS={ca}"
    if lst.mode == "reverse":
        return [
            f"export OPENAI_BASE_URL=http://{host}/v1      # OpenAI SDKs, LiteLLM, Open WebUI",
            f"export ANTHROPIC_BASE_URL=http://{host}      # Anthropic SDKs, Claude Code",
        ]
    if lst.mode in ("regular", "upstream"):
        return [f"export HTTPS_PROXY=http://{host} HTTP_PROXY=http://{host}", trust]
    if lst.mode == "socks5":
        return [f"export ALL_PROXY=socks5://{host}", trust]
    if lst.mode == "wireguard":
        return ["(connect clients with the WireGuard configuration printed above; for HTTPS:)", trust]
    return [f"(no client setting in {lst.mode} mode: traffic is redirected to it; for HTTPS:)", trust]


def banner(listeners: Sequence[Listener], capture: str, ca: str) -> list[str]:
    """The lines printed once the proxy listens: per server, its mode and the client settings."""
    lines = []
    for lst in listeners:
        where = f"{_url_host(lst.host)}:{lst.port}"
        what = f"reverse proxy in front of {lst.target}" if lst.mode == "reverse" else f"{lst.mode} proxy"
        if lst.mode == "upstream":
            what += f" (through {lst.target})"
        lines.append(f"usagefix: {what}, listening at {where}")
        lines.append("usagefix: point a client here with:")
        lines += [f"    {line}" for line in _client_lines(lst, ca)]
    lines.append(f"usagefix: capture: {capture}")
    return lines
