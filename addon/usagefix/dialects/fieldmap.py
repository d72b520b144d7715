"""A usage block through its spec's field map: read it, write the normalized counts back, say why.

Pure functions of a block and the `Field`s that map it; the engine (`dialects/engine.py`) decides
when they run. Writing keeps the upstream's own set of keys plus exactly what a rule names: a
count is written at its standard key where the upstream reported one there, or where a rule adds
it (`Field.added_by`, `Field.copies`); an alias beside the standard key is renamed to it; nothing
under `untouched` is ever written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usagefix.dialects.spec import Field
from usagefix.normalize import Fired, Reader

__all__ = ["Read", "any_headline", "any_key", "clamped", "emit", "explain", "read_fields", "sent", "slot"]

# What a unit's counts are called in a rule's reason.
_NOUNS = {
    "input_total": "input tokens",
    "cache_read": "cache reads",
    "cache_write": "cache writes",
    "output_total": "output tokens",
    "reasoning": "reasoning tokens",
    "total": "total tokens",
}


def slot(f: Field) -> str:
    """A field's place in a `Read`: its unit and kind."""
    return f"{f.unit}/{f.kind}"


def _get(block: Mapping[str, Any], dotted: str) -> tuple[Mapping[str, Any] | None, str]:
    """The object holding `dotted`'s leaf (None when a level is missing), and the leaf's name."""
    *parents, leaf = dotted.split(".")
    holder: Mapping[str, Any] | None = block
    for p in parents:
        holder = Reader.block(holder, p) if holder is not None else None
    return holder, leaf


def _raw(block: Mapping[str, Any], dotted: str) -> Any:
    """The value at `dotted`, as sent (None when absent, null, or a level is not an object)."""
    v: Any = block
    for p in dotted.split("."):
        v = v.get(p) if isinstance(v, Mapping) else None
    return v


def _parent(dotted: str) -> str:
    return dotted.rpartition(".")[0]


def sent(block: Mapping[str, Any], dotted: str) -> bool:
    """Whether the upstream sent `dotted` at all (null included)."""
    parent, _, leaf = dotted.rpartition(".")
    holder = _raw(block, parent) if parent else block
    return isinstance(holder, Mapping) and leaf in holder


def _beside(f: Field) -> list[str]:
    """`f`'s aliases in the same object as its key (renamed to it when written)."""
    return [a for a in f.aliases if _parent(a) == _parent(f.key)]


@dataclass(frozen=True, slots=True)
class Read:
    """A usage block read by its field map: each unit's count and the key it came from."""

    counts: dict[str, tuple[int, str]]
    """`unit/kind` → (count, dotted key it was read from), for each count reported."""
    reader: Reader

    def count(self, unit: str, kind: str) -> int | None:
        found = self.counts.get(f"{unit}/{kind}")
        return None if found is None else found[0]

    def source(self, f: Field) -> str | None:
        found = self.counts.get(slot(f))
        return None if found is None else found[1]


def any_key(block: Mapping[str, Any], fields: tuple[Field, ...]) -> bool:
    """Whether any of the field map's keys (or aliases) is there, null included."""
    return any(sent(block, k) for f in fields for k in (f.key, *f.aliases))


def any_headline(block: Mapping[str, Any], fields: tuple[Field, ...]) -> bool:
    """Whether a headline count (or an alias of one) is there at all, null not counting."""
    heads = [k for f in fields if f.kind == "headline" for k in (f.key, *f.aliases)]
    return any(_raw(block, k) is not None for k in heads)


def read_fields(block: Mapping[str, Any], fields: tuple[Field, ...]) -> Read:
    """Read every field of `block`: of its key and aliases, the one `pick` says."""
    rd = Reader()
    for f in fields:  # a details object that is not an object is the block's first fault
        for key in (f.key, *f.aliases):
            _get(block, key)
    counts: dict[str, tuple[int, str]] = {}
    for f in fields:
        found: list[tuple[int, str]] = []
        for key in (f.key, *f.aliases):
            holder, leaf = _get(block, key)
            v = rd.count(holder, leaf, key[: len(key) - len(leaf)])
            if v is not None:
                found.append((v, key))
                if f.pick == "first":
                    break
        if not found:
            continue
        if f.pick == "largest":
            counts[slot(f)] = max(found, key=lambda t: t[0])
        else:
            counts[slot(f)] = next((t for t in found if t[0]), found[0])
    return Read(counts, rd)


def _under(key: str, untouched: tuple[str, ...]) -> bool:
    return any(key == t or key.startswith(t + ".") for t in untouched)


def _holder(new: dict[str, Any], parents: list[str], *, create: bool) -> dict[str, Any] | None:
    """The (copied) object at `parents` in `new`, created where absent or null if `create`."""
    holder = new
    for p in parents:
        v = holder.get(p)
        if not isinstance(v, Mapping):
            if not create or v is not None:
                return None
            v = {}
        holder[p] = dict(v)
        holder = holder[p]
    return holder


def _rename(d: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """`d` with key `old` renamed to `new`, in the same place."""
    return {(new if k == old else k): v for k, v in d.items()}


def _adds(f: Field, usage: Mapping[str, Any], read: Read, rules: set[str]) -> bool:
    """Whether a rule names `f`'s standard key, to be added where the upstream left it out."""
    source = read.source(f)
    if source is None or source == f.key or source in _beside(f):
        return False
    if any(_raw(usage, k) is not None for k in (f.key, *_beside(f))):
        return False
    return any(c.alias == source for c in f.copies) or bool(rules & set(f.added_by))


def _clamp(
    value: Mapping[str, Any], pattern: re.Pattern[str], untouched: tuple[str, ...], where: str = ""
) -> dict[str, Any]:
    out = {}
    for k, v in value.items():
        name = f"{where}{k}"
        if _under(name, untouched):
            out[k] = v
        elif isinstance(v, Mapping):
            out[k] = _clamp(v, pattern, untouched, name + ".")
        elif pattern.fullmatch(k) and isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
            out[k] = 0
        else:
            out[k] = v
    return out


def clamped(
    usage: Mapping[str, Any], read: Read, untouched: tuple[str, ...] = (), count_keys: str | None = None
) -> dict[str, Any] | None:
    """`usage` with its negative counts set to 0 (I4: the client gets the 0 the reader read), as
    `count_keys` says, or None when the reader clamped none."""
    if not read.reader.fired:
        return None
    if count_keys is not None:
        out: dict[str, Any] = _clamp(usage, re.compile(count_keys), untouched)
        return out
    new = dict(usage)
    for name in (n for fired in read.reader.fired for n in fired.changes):
        *parents, leaf = name.split(".")
        holder = _holder(new, parents, create=False)
        if holder is not None and not _under(name, untouched) and leaf in holder:
            holder[leaf] = 0
    return new


def emit(
    usage: Mapping[str, Any],
    fields: tuple[Field, ...],
    read: Read,
    want: Mapping[str, int | None],
    rules: set[str],
    *,
    untouched: tuple[str, ...] = (),
    count_keys: str | None = None,
    absent_zero: bool = False,
) -> dict[str, Any] | None:
    """`usage` carrying the counts `want` (by slot), or None when it already does.

    A count is written at its field's key where the upstream reported one (or a rule adds it); an
    unknown count (None) leaves its key as it was, `null` included. Every other key stays as it
    was, in its place. Negative counts become 0 (I4), as `count_keys` says.
    """
    new = dict(usage)
    for f in fields:
        value = want.get(slot(f))
        if _under(f.key, untouched):
            continue
        *parents, leaf = f.key.split(".")
        add = value is not None and _adds(f, usage, read, rules)
        changed = value != (read.count(f.unit, f.kind) or 0)
        if absent_zero and f.kind == "headline" and f.unit != "total" and changed:
            add = True  # a headline left out reads as 0; a rule that changed it writes it (R1)
        holder = _holder(new, parents, create=add)
        if holder is None:
            continue
        beside = [a.rpartition(".")[2] for a in _beside(f) if a.rpartition(".")[2] in holder]
        if beside and leaf not in holder:
            renamed = _rename(holder, beside.pop(0), leaf)
            holder.clear()
            holder.update(renamed)
        for k in beside:
            del holder[k]
        if value is not None and (holder.get(leaf) is not None or add):
            holder[leaf] = value
    new = clamped(new, read, untouched, count_keys) or new
    return None if new == usage else new


def explain(
    usage: Mapping[str, Any], emitted: Mapping[str, Any], fields: tuple[Field, ...], read: Read
) -> tuple[Fired, ...]:
    """Rules for what `emit` changed beyond the normalized numbers: renamed keys, copied counts."""
    out = [
        Fired("rename", f"{_NOUNS[f.unit]} belong in {f.key}")
        for f in fields
        if any(sent(usage, a) for a in _beside(f))
    ]
    for f in fields:
        source = read.source(f)
        old, now = _raw(usage, f.key), _raw(emitted, f.key)
        copy = next((c for c in f.copies if c.alias == source), None)
        if copy is not None and old is None:
            out.append(Fired(copy.rule, f"{copy.by}'s {source} copied to {f.key}"))
        elif old is not None and now != old and source not in (None, f.key, *_beside(f)):
            note = f" ({f.alias_note})" if f.alias_note else ""
            out.append(Fired("alias", f"{f.key} said {old}; the {_NOUNS[f.unit]} are in {source}{note}"))
    return tuple(out)
