"""Replace-by-field streams (`cumulative="replace_by_field"`, Anthropic): one snapshot, merged.

The first of the spec's `usage_events` opens the snapshot; each later one's counts *replace* its
fields, never add to them (R4); a `null` count is absent, as the SDKs read it: it never replaces a
known one, except a field the spec marks `null_replaces` (Anthropic's SDK assigns each delta's
`output_tokens`, None included). Every later event we forward carries the full snapshot (Claude
Code treats the last one as authoritative, §8.5), with only counts someone reported: none is
filled in. A headline sent as `null` that no event gives a number leaves the response unmeasured
(`unreported:KEY`) and the event untouched: unknown, never 0. A new total of a split count (a
cache-write count beside its TTL split) without its split makes the earlier split stale: it is
dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from usagefix.dialects.base import Context, NeedleSession, Tally, unapplied
from usagefix.dialects.fieldmap import Read, clamped, read_fields
from usagefix.jsonedit import replace_at
from usagefix.normalize import Fired, Outcome

if TYPE_CHECKING:
    from usagefix.dialects.engine import FieldMapDialect

__all__ = ["ReplaceByFieldSession"]

_SPLIT_UNITS = ("cache_write_5m", "cache_write_1h")


class ReplaceByFieldSession(NeedleSession):
    def __init__(self, dialect: FieldMapDialect, tally: Tally, ctx: Context) -> None:
        super().__init__(dialect.needles, dialect.end_markers, tally, ctx)
        self.dialect = dialect
        spec = dialect.spec
        tops = {f.key for f in spec.fields if "." not in f.key}
        self.order = tuple(k for k in spec.emits if k in tops)
        """The headline counts every snapshot we emit carries, in the dialect's own order."""
        parts = [f.key for f in spec.fields if f.unit in _SPLIT_UNITS]
        self.split = parts[0].split(".", 1)[0] if parts else None
        """The object that splits a count (Anthropic's `cache_creation`), if the spec has one."""
        self.split_parts = tuple(p.split(".", 1)[1] for p in parts)
        self.split_of = next((f.key for f in spec.fields if f.unit == "cache_write"), None)
        self.null_replaces = frozenset(f.key for f in spec.fields if f.null_replaces)
        self.snapshot: dict[str, Any] = {}
        """The cumulative snapshot so far (R4: replaced field by field, never added); a key sent
        only as `null` so far is there as None (unknown, not absent)."""

    def normalize_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        d = self.dialect
        kind = obj.get("type", name)
        if kind not in d.spec.usage_events:
            return None
        found = d.locate(obj)
        if not found:
            return None
        path, usage, model = found[0]
        read = read_fields(usage, d.spec.fields)
        if kind == d.spec.usage_events[0]:
            self._merge(clamped(usage, read, d.spec.untouched, d.spec.count_keys) or usage, later=False)
            new = d.normalize_object(obj, data, self.tally, self.ctx, final=d.finished(obj, name))
            return None if new == data else new
        return self._later(data, path, usage, read, str(kind), self.ctx.model or model)

    def _merge(self, usage: Mapping[str, Any], *, later: bool) -> None:
        for k, v in usage.items():
            if v is None:
                if later and k in self.null_replaces:
                    self.snapshot[k] = None  # the SDK assigns it, None included: unknown now
                else:
                    self.snapshot.setdefault(k, None)  # absent to the SDK: a known count stays
                continue
            if k == self.split_of and self.split is not None and usage.get(self.split) is None:
                if self.snapshot.get(k) != v:
                    self.snapshot.pop(self.split, None)  # its split no longer adds up
            self.snapshot[k] = v

    def _adds_up(self, split: Mapping[str, Any]) -> bool:
        """Whether the snapshot's split sums to the count it splits."""
        parts = [split.get(k) for k in self.split_parts]
        return sum(v for v in parts if isinstance(v, int)) == self.snapshot.get(self.split_of or "")

    def _later(
        self, data: str, path: list[str | int], usage: dict[str, Any], own: Read, kind: str, model: str | None
    ) -> str | None:
        d, spec = self.dialect, self.dialect.spec
        clamp = clamped(usage, own, spec.untouched, spec.count_keys) or usage
        self._merge(clamp, later=True)
        snapshot = read_fields(self.snapshot, spec.fields)
        unknown = d.unknown_headlines(self.snapshot, snapshot)
        if unknown:  # sent as null, and no event gave it a number: the event passes as it came
            d.unknown(usage, unknown, self.tally, final=True)
            return None
        merged = d.normalize_read(snapshot, self.ctx, model)
        fired = list(own.reader.fired)
        emitted = dict(clamp)
        snap = self.snapshot
        missing = [k for k in self.order if usage.get(k) is None and snap.get(k) is not None]
        if missing:
            # The full snapshot first, in the dialect's order, then the event's other keys. Only
            # counts someone reported: what the opening event did not say stays unsaid.
            full = {k: snap[k] for k in self.order if snap.get(k) is not None}
            # A split in the snapshot is an object: reading rejects any other before a block
            # is merged (UsageShapeError).
            split = snap.get(self.split) if self.split is not None else None
            if split is not None and usage.get(self.split or "") is None and self._adds_up(split):
                full[self.split or ""] = split
            emitted = _with_snapshot(clamp, full, self.order, self.split)
            reason = (
                f"{kind} lacked "
                + ", ".join(missing)
                + f" (absent or null); carried over from {spec.usage_events[0]}"
            )
            fired.append(Fired("R4", reason))
        outcome = Outcome(
            merged.before, merged.after, merged.fired, (*own.reader.anomalies, *merged.anomalies)
        )
        if self.observe_only:  # the client gets the event as it is; say what would have changed
            self.tally.observe(unapplied(outcome, *fired), usage, None, final=True)
            return None
        result = None if emitted == usage else emitted
        self.tally.observe(outcome, usage, result, final=True, extra=tuple(fired))
        return None if result is None else replace_at(data, path, result)


def _with_snapshot(
    delta: Mapping[str, Any], full: Mapping[str, Any], order: tuple[str, ...], split: str | None
) -> dict[str, Any]:
    """The delta's keys in their own order, its headlines carrying the snapshot's counts, and each
    headline it lacked placed before the first later one (the dialect's order), or at the end; the
    snapshot's split, if it carries one the delta lacks, right after the headlines."""
    out: dict[str, Any] = {}
    pending = [k for k in order if k in full]

    def place(upto: int) -> None:
        while pending and order.index(pending[0]) <= upto:
            key = pending.pop(0)
            out[key] = full[key]
            if not pending and split is not None and split in full:
                out[split] = full[split]

    for key, value in delta.items():
        if key in order and key in full:
            place(order.index(key))
        elif key not in out:
            out[key] = value
    place(len(order))
    return out
