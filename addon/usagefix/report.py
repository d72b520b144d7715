"""Human-readable renderings of a record: the same facts for mitmweb's view and the terminal.

Works on the record as stored in `flow.metadata["usagefix"]` (a plain dict), so files written by
any version of the addon can be read.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from usagefix.comment import flat_diff
from usagefix.legend import MARK, describe

__all__ = ["WIDTH", "as_received", "impact", "render_record"]

WIDTH = 78
"""Lines are wrapped to this width: mitmweb clips a long line at the edge of its detail pane (half
of a 1400-pixel window holds about 80 characters), and the reason of a rule was the part a user
could not see."""

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


def _wrap(text: str, indent: str = "  ", more: str = "    ") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=more, break_on_hyphens=False)


def _signed(n: int) -> str:
    return f"−{-n}" if n < 0 else str(n)


def as_received(rec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The record's canonical reading of the upstream's block, with the total the upstream itself
    reported. `usage_before.total` is recomputed from the headlines (I3), so where a rule changed
    the total (I3 raising one below prompt + completion) the upstream's own figure is that rule's
    `before`: what a consumer of the upstream's block read."""
    before = rec.get("usage_before")
    if not isinstance(before, Mapping):
        return None
    for r in rec.get("rules") or []:
        change = (r.get("changes") or {}).get("total") if isinstance(r, Mapping) else None
        if isinstance(change, list) and change and isinstance(change[0], int):
            return {**before, "total": change[0]}
    return before


def _consumer(u: Mapping[str, Any]) -> dict[str, int]:
    """What a standard consumer computes from a canonical snapshot, by the name it bills by. The
    uncached input is left unclamped: a block whose cache reads exceed its prompt gives a negative
    count downstream, which is the point."""
    out: dict[str, int] = {}
    if isinstance(u.get("input_total"), int):
        out["input"] = u["input_total"]
        cached = [u[k] for k in ("cache_read", "cache_write") if isinstance(u.get(k), int)]
        if cached:
            out["uncached input"] = u["input_total"] - sum(cached)
    if isinstance(u.get("output_total"), int):
        out["output"] = u["output_total"]
    if isinstance(u.get("total"), int):
        out["total"] = u["total"]
    return out


def impact(rec: Mapping[str, Any], money: str | None = None) -> str | None:
    """One line: the tokens a standard consumer of the dialect computes from the upstream's block
    and from the client's (only the counts that differ), or None when a record has neither.

    `money` is the same comparison in money, worded by whoever prices it (`cost $-0.31 → $0.03`):
    appended as it is. Prices are not this module's business.
    """
    before, after = as_received(rec), rec.get("usage_after")
    if not isinstance(after, Mapping) or not rec.get("final_seen", True):
        return None
    a, b = _consumer(before if isinstance(before, Mapping) else {}), _consumer(after)
    changed = [(k, a.get(k), b[k]) for k in b if a.get(k) != b[k]]
    if changed:
        parts = ", ".join(f"{k} {'—' if x is None else _signed(x)} → {y}" for k, x, y in changed)
        text = f"impact (tokens a standard consumer computes, upstream → client): {parts}"
        if any(x is not None and x < 0 for _, x, _ in changed):
            text += " (negative: a negative cost downstream)"
    elif any(r.get("rule") == "R4" for r in rec.get("rules") or []):
        text = (
            "impact: none for a consumer that merges message_start into the last delta (the Anthropic"
            " SDK); one that reads the last usage block alone now gets message_start's counts, not none"
        )
    else:
        text = "impact: none: a standard consumer computes the same tokens from both blocks"
    return text + (f"; {money}" if money else "")


# Anthropic's keys, from the canonical reading of the whole stream: what message_start said for
# a count a message_delta left out (R4 carries it over, by replacement).
_FROM_CANONICAL: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "cache_read_input_tokens": lambda u: u.get("cache_read"),
    "cache_creation_input_tokens": lambda u: u.get("cache_write"),
    "cache_creation.ephemeral_5m_input_tokens": lambda u: u.get("cache_write_5m"),
    "cache_creation.ephemeral_1h_input_tokens": lambda u: u.get("cache_write_1h"),
    "output_tokens": lambda u: u.get("output_total"),
    "input_tokens": lambda u: (
        u["input_total"] - (u.get("cache_read") or 0) - (u.get("cache_write") or 0)
        if isinstance(u.get("input_total"), int)
        else None
    ),
}


_START = (
    "(start): the upstream's last usage block left the count out; this is what its message_start"
    " said, carried over to the client by replacement, never added (R4)"
)


def _usage_rows(rec: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    upstream, emitted = rec.get("upstream_usage"), rec.get("emitted_usage")
    changed = {k for k, _, _ in flat_diff(upstream, emitted)}
    a, b = _flat(upstream), _flat(emitted)
    r4 = any(r.get("rule") == "R4" for r in rec.get("rules") or [])
    before = rec.get("usage_before") if isinstance(rec.get("usage_before"), Mapping) else None
    rows = [("usage field", "upstream", "client", "")]
    for k in sorted({*a, *b}, key=_order):
        x, mark = _cell(a.get(k)), "◀ changed" if k in changed else ""
        carried = r4 and before is not None and a.get(k) is None and k in _FROM_CANONICAL
        start = _FROM_CANONICAL[k](before) if carried and before is not None else None
        if start is not None:
            # The last delta left it out; the stream said it in message_start.
            x = f"{start} (start)"
            mark = "◀ carried" if str(start) == _cell(b.get(k)) else "◀ changed"
        rows.append((k, x, _cell(b.get(k)), mark))
    return rows


def render_record(
    rec: Mapping[str, Any],
    *,
    money: str | None = None,
    notes: Sequence[str] = (),
    kind: str | None = None,
) -> str:
    """The record as text: the impact, upstream and client usage side by side, the rules, the
    anomalies in words.

    `money` (see `impact`) and `notes` (lines such as the session and cost, from the ledger) go
    at the top, under the impact line; without them the view shows tokens only. `kind` names
    what the record is of, where "streamed" or "JSON body" would not say it (a WebSocket turn).
    """
    status = rec.get("status", "?")
    kind = kind or ("streamed" if rec.get("streamed") else "JSON body")
    lines = [f"usagefix: {status} ({rec.get('dialect', '?')}, {kind})"]
    if rec.get("error"):
        lines += _wrap(f"error: {rec['error']}")
    if status == "passthrough_error":
        lines += _wrap(f"passed through untouched: {MARK}")
    said = impact(rec, money)
    if said:
        lines += _wrap(said)
    elif money:  # no final usage to compare: the money (likely "unpriced") still says its piece
        lines += _wrap(money)
    lines += [ln for note in notes for ln in _wrap(note)]

    if rec.get("upstream_usage") is not None or rec.get("emitted_usage") is not None:
        rows = _usage_rows(rec)
        lines += ["", *_table(rows)]
        if any(x.endswith("(start)") for _, x, _, _ in rows):
            lines += _wrap(_START)

    before, after = as_received(rec), rec.get("usage_after")
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
            lines += _wrap(f"{r.get('rule')}: {r.get('reason')}" + (f" ({changes})" if changes else ""))
    anomalies = rec.get("anomalies") or []
    if anomalies:
        lines += ["", f"anomalies ({MARK}):", *(ln for a in anomalies for ln in _wrap(describe(str(a))))]
    if not rec.get("final_seen", True):
        lines += ["", "final usage not seen: the numbers are unknown (unmeasured), not zero"]
    return "\n".join(lines) + "\n"
