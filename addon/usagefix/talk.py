"""What the proxy says to the person running it (`usage_log_lines`, on in `scripts/run`).

A start banner (the mode, where the capture goes, the exact lines to paste into a client), one
compact line per LLM response (dialect, model, status, the numbers that changed and the rules),
and a summary at exit (responses, rewritten, unmeasured, tokens restored).

Pure: the glue (addon.py) hands over what mitmproxy knows (modes, listen addresses, options).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from usagefix.comment import flat_diff
from usagefix.record import UsageRecord

__all__ = ["Listener", "Tally", "banner", "capture_path", "live_line"]

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
    path = Path(time.strftime(spec.removeprefix("+"), time.localtime(now))).expanduser()
    where = str(path if path.is_absolute() else cwd / path)
    return where + (" (appended)" if append else "")


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


def live_line(rec: UsageRecord, model: str | None, status_code: int | None) -> str:
    """One line per LLM response, e.g. `usagefix: openai_chat gpt-4o 200 rewritten
    prompt_tokens 1678→107208 (R1)`."""
    head = " ".join(
        x for x in ("usagefix:", rec.dialect, model, status_code and str(status_code), rec.status) if x
    )
    if rec.status == "rewritten":
        changed = ", ".join(
            f"{k} {_show(a)}→{_show(b)}" for k, a, b in flat_diff(rec.upstream_usage, rec.emitted_usage)
        )
        rules = ", ".join(dict.fromkeys(r.rule for r in rec.rules))
        return " ".join(x for x in (head, changed, f"({rules})" if rules else "") if x)
    if rec.status in ("unmeasured", "passthrough_error", "undecodable_encoding") and rec.error:
        why = rec.error if len(rec.error) <= 80 else rec.error[:79] + "…"
        return f"{head}: {why}"
    if rec.status == "unmeasured":
        return f"{head}: no usage in the response"
    return head


def _show(v: object) -> str:
    return "∅" if v is None else str(v)


@dataclass(slots=True)
class Tally:
    """What the proxy did, for the summary at exit."""

    statuses: Counter[str] = field(default_factory=Counter)
    restored: int = 0
    """Tokens the clients' usage counts that the upstreams' left out (rewritten responses)."""

    def add(self, rec: UsageRecord) -> None:
        self.statuses[rec.status] += 1
        if rec.status == "rewritten" and rec.usage_before is not None and rec.usage_after is not None:
            self.restored += max(0, rec.usage_after.total - rec.usage_before.total)

    def summary(self) -> str:
        n = sum(self.statuses.values())
        parts = [f"{self.statuses['rewritten']} rewritten", f"{self.statuses['unmeasured']} unmeasured"]
        parts += [
            f"{c} {s}" for s, c in sorted(self.statuses.items()) if s not in ("rewritten", "unmeasured")
        ]
        noun = "response" if n == 1 else "responses"
        return f"usagefix: {n} LLM {noun}: {', '.join(parts)}; {self.restored:,} tokens restored"
