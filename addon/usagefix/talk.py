"""What the proxy says as it runs (`usage_log_lines`, on in `scripts/run`): one compact line per
LLM response (dialect, model, status, the numbers that changed and the rules), and a summary at
exit (responses, rewritten, unmeasured, tokens restored). The start banner is usagefix.banner.

Pure: the glue (addon.py) hands over each record as it is made.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from usagefix.comment import flat_diff
from usagefix.record import UsageRecord

__all__ = ["Tally", "live_line"]


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
