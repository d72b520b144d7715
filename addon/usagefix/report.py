"""Human-readable renderings of a record: the same facts for mitmweb's view and the terminal.

Works on the record as stored in `flow.metadata["usagefix"]` (a plain dict), so files written by
any version of the addon can be read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from usagefix.record import flat_diff

__all__ = ["render_record"]

_CANONICAL = (
    "input_total",
    "cache_read",
    "cache_write",
    "output_total",
    "reasoning",
    "unattributed",
    "total",
)
# Shown only when the upstream's total had tokens no headline explains. (An unreported count shows
# as "—": unknown, not 0.)
_OPTIONAL = ("unattributed",)
# Flow files do not keep key order (tnetstring), so usage fields are shown in this order, then the
# rest alphabetically.
_HEADLINES = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def _order(key: str) -> tuple[int, str]:
    return (_HEADLINES.index(key), "") if key in _HEADLINES else (len(_HEADLINES), key)


def _cell(v: Any) -> str:
    return "—" if v is None else str(v)


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    return [f"  {a:<{w0}}  {b:>{w1}}  {c:>{w2}}  {d}".rstrip() for a, b, c, d in rows]


def _flat(d: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, Mapping):
            out.update({f"{k}.{kk}": vv for kk, vv in _flat(v).items()})
        else:
            out[k] = v
    return out


def render_record(rec: Mapping[str, Any]) -> str:
    """The record as text: upstream and client usage side by side, the rules, the anomalies."""
    status = rec.get("status", "?")
    kind = "streamed" if rec.get("streamed") else "JSON body"
    lines = [f"usagefix: {status} ({rec.get('dialect', '?')}, {kind})"]
    if rec.get("error"):
        lines.append(f"  error: {rec['error']}")

    upstream, emitted = rec.get("upstream_usage"), rec.get("emitted_usage")
    if upstream is not None or emitted is not None:
        changed = {k for k, _, _ in flat_diff(upstream, emitted)}
        a, b = _flat(upstream), _flat(emitted)
        rows = [("usage field", "upstream", "client", "")]
        for k in sorted({*a, *b}, key=_order):
            rows.append((k, _cell(a.get(k)), _cell(b.get(k)), "◀ changed" if k in changed else ""))
        lines += ["", *_table(rows)]

    before, after = rec.get("usage_before"), rec.get("usage_after")
    if before or after:
        # A stream that ended before its final usage keeps its last partial snapshot: shown as
        # such, never as the response's usage.
        title = "canonical" if rec.get("final_seen", True) else "last partial snapshot (not final)"
        rows = [(title, "upstream", "client", "")]
        for k in _CANONICAL:
            x, y = (before or {}).get(k), (after or {}).get(k)
            if k in _OPTIONAL and x is None and y is None:
                continue
            rows.append((k, _cell(x), _cell(y), "◀ changed" if x != y else ""))
        lines += ["", *_table(rows)]

    rules = rec.get("rules") or []
    if rules:
        lines += ["", "rules:"]
        for r in rules:
            changes = ", ".join(f"{k} {v[0]}→{v[1]}" for k, v in (r.get("changes") or {}).items())
            lines.append(f"  {r.get('rule')}: {r.get('reason')}" + (f" ({changes})" if changes else ""))
    anomalies = rec.get("anomalies") or []
    if anomalies:
        lines += ["", "anomalies:", *(f"  {a}" for a in anomalies)]
    if not rec.get("final_seen", True):
        lines += ["", "final usage not seen: the numbers are unknown (unmeasured), not zero"]
    return "\n".join(lines) + "\n"
