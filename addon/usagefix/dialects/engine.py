"""The engine that interprets a `DialectSpec`'s field map: read, normalize, emit, splice, tally.

A dialect whose usage is a block of counts (flat or one details level down) needs no code of its
own: `FieldMapDialect(SPEC)` reads every field where the spec says, normalizes it by the kinds
the spec gives (a cache count `beside` its headline makes the block exclusive, else inclusive),
and writes back only the counts a rule changed, where they were read from: never a key the
upstream did not send, never anything under `untouched` (a billed count, a provider's cost).
Genuine oddities are small hooks: `check` (a dialect's own consistency test).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from usagefix.dialects.base import Context, Session, Tally, unapplied
from usagefix.dialects.spec import DialectSpec, Field
from usagefix.jsonedit import replace_at
from usagefix.normalize import (
    Declared,
    ExclusiveReport,
    InclusiveReport,
    Outcome,
    Reader,
    normalize_exclusive,
    normalize_inclusive,
)
from usagefix.usage import CanonicalUsage

__all__ = ["FieldMapDialect", "Read", "read_fields"]

Check = Callable[[Mapping[str, Any], Tally], None]
"""A dialect's own test of a usage block, flagging what it finds (never changing the block)."""


def _get(block: Mapping[str, Any], dotted: str) -> tuple[Mapping[str, Any] | None, str]:
    """The object holding `dotted`'s leaf (None when a level is missing), and the leaf's name."""
    *parents, leaf = dotted.split(".")
    holder: Mapping[str, Any] | None = block
    for p in parents:
        holder = Reader.block(holder, p) if holder is not None else None
    return holder, leaf


@dataclass(frozen=True, slots=True)
class Read:
    """A usage block read by its field map: each unit's count and the key it came from."""

    counts: dict[str, tuple[int, str]]
    """`unit/kind` → (count, dotted key it was read from), for each count reported."""
    reader: Reader


def read_fields(block: Mapping[str, Any], fields: tuple[Field, ...]) -> Read:
    """Read every field of `block`: the first of its key and aliases that is reported."""
    rd = Reader()
    counts: dict[str, tuple[int, str]] = {}
    for f in fields:
        for key in (f.key, *f.aliases):
            holder, leaf = _get(block, key)
            v = rd.count(holder, leaf, key[: len(key) - len(leaf)])
            if v is not None:
                counts[f"{f.unit}/{f.kind}"] = (v, key)
                break
    return Read(counts, rd)


def _count(read: Read, unit: str, kind: str) -> int | None:
    found = read.counts.get(f"{unit}/{kind}")
    return None if found is None else found[0]


class FieldMapDialect:
    """A dialect interpreted from its spec alone (plus an optional `check` hook)."""

    def __init__(self, spec: DialectSpec, check: Check | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.check = check
        caches = [f for f in spec.fields if f.unit in ("cache_read", "cache_write")]
        self.exclusive = any(f.kind == "beside" for f in caches)
        """Cache counts stand beside the input headline (Anthropic-like), not inside it."""
        markers = [e.encode() for e in spec.end_events]
        if spec.end_flag:
            markers.append(f'"{spec.end_flag}"'.encode())
        self.end_markers: tuple[bytes, ...] = tuple(markers)
        self._needles = tuple(f.key.rsplit(".", 1)[-1].encode() for f in spec.fields if f.kind == "headline")

    # -- the Dialect protocol ---------------------------------------------------------------

    def is_end(self, name: str | None, data: str) -> bool:
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        return self._ends(obj, name) if isinstance(obj, dict) else name in self.spec.end_events

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        obj = json.loads(text)
        return self._rewrite(obj, text, tally, ctx, final=True) if isinstance(obj, dict) else None

    def stream_session(self, tally: Tally, ctx: Context) -> _Session:
        return _Session(self, tally, ctx)

    # -- the engine ---------------------------------------------------------------------------

    def _ends(self, obj: Mapping[str, Any], name: str | None) -> bool:
        if self.spec.end_flag is not None and obj.get(self.spec.end_flag) is True:
            return True
        return obj.get("type", name) in self.spec.end_events

    def might_carry_usage(self, raw: bytes) -> bool:
        return any(n in raw for n in self._needles)

    def _locate(self, obj: Mapping[str, Any]) -> tuple[list[str | int], dict[str, Any]] | None:
        """Where the usage block of an event or body is: the first of the spec's `usage_at`."""
        for dotted in self.spec.usage_at:
            path: list[str | int] = [p for p in dotted.split(".") if p]
            block: Any = obj
            for p in path:
                block = block.get(p) if isinstance(block, dict) else None
            if isinstance(block, dict) and not path:
                # The event itself holds the counts (Ollama): its usage is the mapped keys alone.
                keys = {f.key.split(".", 1)[0] for f in self.spec.fields}
                return path, {k: v for k, v in block.items() if k in keys}
            if isinstance(block, dict):
                return path, block
        return None

    def _rewrite(
        self, obj: Mapping[str, Any], text: str, tally: Tally, ctx: Context, *, final: bool
    ) -> str | None:
        found = self._locate(obj)
        if found is None:
            return None
        path, usage = found
        read = read_fields(usage, self.spec.fields)
        headlines = [f for f in self.spec.fields if f.kind == "headline" and f.unit != "total"]
        if not read.counts:
            return None  # no count at all: no snapshot (unmeasured, not invalid)
        if self.check is not None:
            self.check(usage, tally)
        missing = [f.key for f in headlines if f"{f.unit}/headline" not in read.counts]
        if missing:
            # An absent headline is unknown, not 0 (Ollama leaves `prompt_eval_count` out when the
            # whole prompt came from its cache): the response stays unmeasured, the block recorded.
            tally.flag(*(f"unreported:{k}" for k in missing))
            tally.upstream_usage = tally.emitted_usage = dict(usage)
            return None
        outcome = self._normalize(read, ctx)
        if ctx.observe_only or self.spec.observe_only:
            tally.observe(unapplied(outcome), usage, None, final=final)
            return None
        edits = self._edits(read, outcome.after)
        emitted = _apply(usage, edits) if edits else None
        tally.observe(outcome, usage, emitted, final=final)
        for key, value in edits.items():
            text = replace_at(text, [*path, *key.split(".")], value)
        return text if edits else None

    def _normalize(self, read: Read, ctx: Context) -> Outcome:
        input_head = _count(read, "input_total", "headline") or 0
        output_head = _count(read, "output_total", "headline") or 0
        if self.exclusive:
            return normalize_exclusive(
                ExclusiveReport(
                    uncached=input_head,
                    output=output_head,
                    cache_read=_count(read, "cache_read", "beside"),
                    cache_write=_count(read, "cache_write", "beside"),
                    reasoning=_count(read, "reasoning", "subset"),
                ),
                read.reader,
            )
        p = ctx.profile
        declared = Declared() if p is None else Declared(p.prompt_cache_reads, p.prompt_cache_writes)
        report = InclusiveReport(
            input_head,
            output_head,
            _count(read, "cache_read", "subset"),
            _count(read, "cache_write", "subset"),
            _count(read, "reasoning", "subset"),
            _count(read, "total", "headline"),
        )
        return normalize_inclusive(report, read.reader, declared)

    def _edits(self, read: Read, u: CanonicalUsage) -> dict[str, int]:
        """Dotted key → new count, for each count reported that the normalized usage changes."""
        want = {
            "input_total/headline": u.input_uncached if self.exclusive else u.input_total,
            "output_total/headline": u.output_total,
            "cache_read/subset": u.cache_read,
            "cache_read/beside": u.cache_read,
            "cache_write/subset": u.cache_write,
            "cache_write/beside": u.cache_write,
            "reasoning/subset": u.reasoning,
            "total/headline": u.total,
        }
        clamped = {name for f in read.reader.fired for name in f.changes}  # I4: read as 0
        edits: dict[str, int] = {}
        for slot, (value, key) in read.counts.items():
            new = want.get(slot)
            if new is None or any(key == t or key.startswith(t + ".") for t in self.spec.untouched):
                continue
            if new != value or key in clamped:
                edits[key] = new
        return edits


def _apply(usage: Mapping[str, Any], edits: Mapping[str, int]) -> dict[str, Any]:
    """`usage` with each dotted key set to its new count, every other key as it was."""
    new = dict(usage)
    for key, value in edits.items():
        *parents, leaf = key.split(".")
        holder = new
        for p in parents:
            holder[p] = dict(holder[p])
            holder = holder[p]
        holder[leaf] = value
    return new


class _Session(Session):
    """A stream of a `FieldMapDialect`: each usage-bearing event through the engine."""

    def __init__(self, dialect: FieldMapDialect, tally: Tally, ctx: Context) -> None:
        super().__init__(tally, ctx)
        self.dialect = dialect

    def might_carry_usage(self, raw: bytes) -> bool:
        return self.dialect.might_carry_usage(raw)

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        final = self.dialect._ends(obj, name)
        return self.dialect._rewrite(obj, data, self.tally, self.ctx, final=final)
