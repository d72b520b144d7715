"""The engine that interprets a `DialectSpec`: locate, read, normalize, emit, splice, tally.

A dialect whose usage is a block of counts (flat or one details level down) needs no code of its
own: `FieldMapDialect(SPEC)` finds the block where `usage_at` says (in the events `usage_events`
names), reads every field (`dialects/fieldmap.py`), normalizes it by the kinds the spec gives (a
cache count `beside` its headline makes the block exclusive, else inclusive), and writes back only
what a rule changed: never a key the upstream did not send unless a rule names it, never
anything under `untouched` (a billed count, a provider's cost).

Genuine oddities are small named hooks, each in its dialect's own module: `check` (a dialect's
own consistency test, before normalizing), `from_gemini` (a Gemini model behind the dialect:
usage-semantics R3), `judge` (a flag only the normalized usage can tell).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from usagefix.dialects.base import Context, NeedleSession, Tally, unapplied
from usagefix.dialects.canonical import outcome_of, slot_counts, sums_of
from usagefix.dialects.fieldmap import Read, any_headline, any_key, emit, explain, read_fields, sent, slot
from usagefix.dialects.merging import ReplaceByFieldSession
from usagefix.dialects.spec import DialectSpec
from usagefix.jsonedit import replace_at
from usagefix.normalize import Outcome, UsageShapeError

__all__ = ["Check", "FieldMapDialect", "FieldMapSession", "Judge", "Located", "Read", "read_fields"]

Check = Callable[[Mapping[str, Any], Read, Tally], None]
"""A dialect's own test of a usage block as read, flagging what it finds (never changing it)."""
Judge = Callable[[Outcome, Read, Context, str | None, Tally], None]
"""A dialect's own test of the normalized usage (with the response's model), flagging what it finds."""
Located = tuple[list[str | int], dict[str, Any], str | None]
"""A usage block: its path in the event or body, the block, and the model the nearest object
around it names."""


def _model(obj: object) -> str | None:
    m = obj.get("model") if isinstance(obj, dict) else None
    return m if isinstance(m, str) else None


def _walk(obj: Any, parts: list[str], path: list[str | int], model: str | None) -> list[Located]:
    """Every dict at `parts` under `obj` (`*`: each element of a list)."""
    model = _model(obj) or model
    if not parts:
        return [(path, obj, model)] if isinstance(obj, dict) else []
    head, rest = parts[0], parts[1:]
    if head == "*":
        items = list(enumerate(obj)) if isinstance(obj, list) else []
        return [b for i, v in items for b in _walk(v, rest, [*path, i], model)]
    if not isinstance(obj, dict) or head not in obj:
        return []
    return _walk(obj[head], rest, [*path, head], model)


class FieldMapDialect:
    """A dialect interpreted from its spec, plus its named hooks."""

    def __init__(
        self,
        spec: DialectSpec,
        check: Check | None = None,
        *,
        from_gemini: Callable[[str | None], bool] | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.check = check
        self.from_gemini = from_gemini
        self.judge = judge
        self.sums = sums_of(spec.fields)
        markers = [e.encode() for e in spec.end_events]
        if spec.end_flag:
            markers.append(f'"{spec.end_flag}"'.encode())
        self.end_markers: tuple[bytes, ...] = tuple(markers)
        heads = tuple(f.key.rsplit(".", 1)[-1].encode() for f in spec.fields if f.kind == "headline")
        self.needles = tuple(e.encode() for e in spec.usage_events) or heads

    # -- the Dialect protocol ---------------------------------------------------------------

    def is_end(self, name: str | None, data: str) -> bool:
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return self.ends(obj, name)
        return name in self.spec.end_events

    def normalize_body(self, text: str, tally: Tally, ctx: Context) -> str | None:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            return None
        new = self.normalize_object(obj, text, tally, ctx, final=True)
        return None if new == text else new

    def stream_session(self, tally: Tally, ctx: Context) -> FieldMapSession | ReplaceByFieldSession:
        if self.spec.cumulative == "replace_by_field":
            return ReplaceByFieldSession(self, tally, ctx)
        return FieldMapSession(self, tally, ctx)

    # -- the engine ---------------------------------------------------------------------------

    def ends(self, obj: Mapping[str, Any], name: str | None) -> bool:
        """Whether an event ends the response, by its end flag, type or name."""
        if self.spec.end_flag is not None and obj.get(self.spec.end_flag) is True:
            return True
        return obj.get("type", name) in self.spec.end_events

    def finished(self, obj: Mapping[str, Any], name: str | None) -> bool:
        """Whether the usage of an event is the response's last word on it (R8)."""
        if self.spec.finished_by is None and self.spec.final_events:
            return obj.get("type", name) in self.spec.final_events
        if self.spec.finished_by is None:
            return self.ends(obj, name)
        key, flag = self.spec.finished_by
        items = obj.get(key)
        if not isinstance(items, list) or not items:
            return True
        return any(isinstance(c, dict) and c.get(flag) for c in items)

    def locate(self, obj: Mapping[str, Any], at: tuple[str, ...] | None = None) -> list[Located]:
        """The usage blocks of an event or body: every match of the first of `at` (the spec's
        `usage_at`) that holds one."""
        for dotted in self.spec.usage_at if at is None else at:
            if not dotted:
                # The object itself holds the counts (Ollama): its usage is the mapped keys alone.
                keys = {f.key.split(".", 1)[0] for f in self.spec.fields}
                return [([], {k: v for k, v in obj.items() if k in keys}, _model(obj))]
            found = _walk(obj, dotted.split("."), [], None)
            if found:
                return found
        return []

    def normalize_object(
        self,
        obj: Mapping[str, Any],
        text: str,
        tally: Tally,
        ctx: Context,
        *,
        final: bool,
        at: tuple[str, ...] | None = None,
    ) -> str:
        """`text` (the JSON of `obj`) with each of its usage blocks normalized into `tally`."""
        for path, usage, model in self.locate(obj, at):
            emitted = self.normalize_usage(usage, tally, ctx, model=model, final=final)
            if emitted is None:
                continue
            if path:
                text = replace_at(text, path, emitted)
            else:  # the object itself: only its counts change
                for k, v in emitted.items():
                    text = replace_at(text, [k], v) if v != usage.get(k) else text
        return text

    def normalize_usage(
        self, usage: dict[str, Any], tally: Tally, ctx: Context, *, model: str | None, final: bool
    ) -> dict[str, Any] | None:
        """Normalize one usage block into `tally`; return the block to emit, or None if unchanged.

        `final`: this block is the response's last word on usage (R8); a partial snapshot leaves
        the response unmeasured until one is."""
        spec = self.spec
        if spec.skips == "no_count" and not any_headline(usage, spec.fields):
            return None  # `{}` or all-null: no count at all, no snapshot (unmeasured, not invalid)
        if spec.skips == "no_key" and not any_key(usage, spec.fields):
            return None
        read = read_fields(usage, spec.fields)
        if self.check is not None:
            self.check(usage, read, tally)
        missing = self.unknown_headlines(usage, read)
        if missing and spec.absent_headline == "invalid":
            # Name what is missing, and how: the block may carry the other headline count.
            told = [f"{k} null" if sent(usage, k) else f"no {k}" for k in missing]
            raise UsageShapeError(f"usage has {' and '.join(told)}")
        if missing:
            self.unknown(usage, missing, tally, final=final)
            return None
        model = ctx.model or model
        outcome = self.normalize_read(read, ctx, model)
        if spec.cumulative == "last_snapshot":
            if final and outcome.after.total < tally.peak:
                # The final snapshot is authoritative and cumulative: one below an earlier snapshot
                # means that one was too large, and it has already gone to the client. (Gemini's
                # snapshots between server-side tool turns may dip; the final one covers them all.)
                tally.flag("snapshot_decreased")
            tally.peak = max(tally.peak, outcome.after.total)
        if self.judge is not None:
            self.judge(outcome, read, ctx, model, tally)
        if ctx.observe_only or spec.observe_only:
            tally.observe(unapplied(outcome), usage, None, final=final)
            return None
        rules = {f.rule for f in outcome.fired}
        want = slot_counts(outcome.after, read)
        emitted = emit(
            usage,
            spec.fields,
            read,
            want,
            rules,
            untouched=spec.untouched,
            count_keys=spec.count_keys,
            absent_zero=spec.absent_headline == "zero",
        )
        extra = explain(usage, emitted, spec.fields, read) if emitted else ()
        tally.observe(outcome, usage, emitted, final=final, extra=extra)
        return emitted

    def unknown_headlines(self, usage: Mapping[str, Any], read: Read) -> list[str]:
        """The headline counts (a total aside) `usage` leaves unknown: each not reported, or, where
        an absent one reads as 0 (`absent_headline="zero"`), each sent as `null`."""
        heads = [f for f in self.spec.fields if f.kind == "headline" and f.unit != "total"]
        missing = [f for f in heads if slot(f) not in read.counts]
        if self.spec.absent_headline == "zero":
            missing = [f for f in missing if any(sent(usage, k) for k in (f.key, *f.aliases))]
        return [f.key for f in missing]

    def unknown(self, usage: Mapping[str, Any], keys: list[str], tally: Tally, *, final: bool) -> None:
        """Record a block whose headline counts `keys` are unknown, never 0 (Ollama leaves
        `prompt_eval_count` out when the whole prompt came from its cache; a translator may send
        `null`): no total, no cost, the block passes untouched. When it is the response's last
        word on usage (R8) the response is unmeasured and flagged `unreported:KEY`; an earlier
        snapshot is not (a later one may report the count)."""
        tally.upstream_usage = tally.emitted_usage = dict(usage)
        if final:
            tally.final_seen = False  # an earlier snapshot's numbers are not the last word
            tally.flag(*(f"unreported:{k}" for k in keys))

    def normalize_read(self, read: Read, ctx: Context, model: str | None) -> Outcome:
        """The canonical usage of a block as read, by the spec's kinds (and the hooks)."""
        by_gemini = self.from_gemini is not None and self.from_gemini(model)
        return outcome_of(read, self.sums, ctx, from_gemini=by_gemini)


class FieldMapSession(NeedleSession):
    """A stream of a `FieldMapDialect`: each usage-bearing event through the engine."""

    def __init__(self, dialect: FieldMapDialect, tally: Tally, ctx: Context) -> None:
        super().__init__(dialect.needles, dialect.end_markers, tally, ctx)
        self.dialect = dialect

    def normalize_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        events = self.dialect.spec.usage_events
        if events and obj.get("type", name) not in events:
            return None
        final = self.dialect.finished(obj, name)
        new = self.dialect.normalize_object(obj, data, self.tally, self.ctx, final=final)
        return None if new == data else new
