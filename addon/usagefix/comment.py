"""A record in one line, for `flow.comment` (mitmweb's Comment column), and the leaf-by-leaf diff
of two usage blocks it leads with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from usagefix.record import UsageRecord
from usagefix.usage import CanonicalUsage

__all__ = ["COMMENT_MAX", "flat_diff", "saved_summary", "summary"]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def flat_diff(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[tuple[str, Any, Any]]:
    """Leaf fields that differ, as (dotted.name, before, after); None stands for absent."""
    a, b = _flatten(before or {}), _flatten(after or {})
    return [
        (k, a.get(k), b.get(k))
        for k in dict.fromkeys([*a, *b])
        if a.get(k) != b.get(k) or (k in a) != (k in b)
    ]


def _show(v: Any) -> str:
    return "∅" if v is None else str(v)


# Totals follow from the other counts: the comment leads with a count that changed for its own sake.
_TOTALS = ("total_tokens", "totalTokenCount", "totalTokens")
COMMENT_MAX = 72
"""The longest comment (an error's): mitmweb's Comment column is 150 pixels wide, about 20
characters, before the user widens it; the numbers come first so that they are what shows."""


def _clip(text: str, limit: int = COMMENT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(field: str) -> str:
    """`prompt_tokens` → `prompt`, `prompt_tokens_details.cached_tokens` → `cached`,
    `totalTokenCount` → `total`: the column has room for a word and two numbers."""
    leaf = field.rsplit(".", 1)[-1]
    for suffix in ("_tokens", "TokenCount", "Tokens"):
        if leaf.endswith(suffix):
            return leaf.removesuffix(suffix) or leaf
    return leaf


def _rule_ids(rec: UsageRecord) -> str:
    ids = list(dict.fromkeys(r.rule for r in rec.rules))
    shown = [i for i in ids if i != "I3"] or ids  # I3 (a total raised) only when it is all there is
    return "+".join(shown)


def summary(rec: UsageRecord) -> str:
    """One line for `flow.comment`, the numbers first: `prompt 1678→107208 · R1` (the first
    changed count, totals last, then the rules). Nothing the column title already says; the usage
    diff view has the rest."""
    if rec.status == "rewritten":
        diff = flat_diff(rec.upstream_usage, rec.emitted_usage)
        diff.sort(key=lambda d: d[0].rsplit(".", 1)[-1] in _TOTALS)  # stable: upstream's order else
        head = f"{_short(diff[0][0])} {_show(diff[0][1])}→{_show(diff[0][2])}" if diff else "usage rewritten"
        rules = _rule_ids(rec)
        return _clip(head + (f" · {rules}" if rules else ""))
    if rec.status == "unchanged":
        return "usage correct"
    if rec.status == "unmeasured":
        if rec.error:
            return _clip(f"unmeasured · cut off ({rec.error})")
        return "unmeasured · no usage in the response"
    if rec.status == "http_error":  # "HTTP 401 Unauthorized: no usage read"
        return _clip(str(rec.error).removeprefix("the upstream answered "))
    if rec.status == "undecodable_encoding":
        return _clip(f"untouched · {rec.error}")
    return _clip(f"passed through untouched · error: {rec.error}")


def saved_summary(rec: Mapping[str, Any]) -> str:
    """`summary` of a record as a flow saved it (its usage with the computed `total`, which the
    model does not take back); "" for one that is not a record (hand-edited, another schema)."""
    saved = dict(rec)
    for k in ("usage_before", "usage_after"):
        if isinstance(saved.get(k), Mapping):
            saved[k] = {f: v for f, v in saved[k].items() if f in CanonicalUsage.model_fields}
    try:
        return summary(UsageRecord.model_validate(saved))
    except ValidationError:
        return ""
