"""What rewriting one response did: the neutral result type the rewriter fills and the record reads
(so the record does not import the rewriter), and the trimmed span of one change."""

from __future__ import annotations

from dataclasses import dataclass, field

from usagefix.dialects.base import Tally

__all__ = ["EventChange", "RewriteResult", "changed_span"]


@dataclass(frozen=True, slots=True)
class EventChange:
    """One rewrite: at `offset` in what the client received, `rewritten` stands where the
    upstream had `original`.

    Only the span that differs is kept: the common prefix and suffix of the event's two texts are
    trimmed (on UTF-8 character boundaries, the offset moved past the prefix). A rewrite touches
    only the usage block, so a change costs O(changed span), never O(event): a `response.completed`
    that repeats a whole long answer records a few dozen bytes. Putting `original` back at
    `offset` in place of `rewritten` gives the upstream's bytes.
    """

    index: int
    """Its event's position among the events of the response, from 0."""
    offset: int
    """Byte offset of `rewritten` in the body the client received."""
    original: str
    rewritten: str


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    # The highest bit in which the two differ, read big-endian, is in their first differing byte.
    x = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")
    return n - (x.bit_length() + 7) // 8


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    if limit <= 0:
        return 0
    ta, tb = a[len(a) - limit :], b[len(b) - limit :]
    if ta == tb:
        return limit
    x = int.from_bytes(ta, "little") ^ int.from_bytes(tb, "little")
    return limit - (x.bit_length() + 7) // 8


def _continues(data: bytes, i: int) -> bool:
    """Whether `data[i]` is a UTF-8 continuation byte (so a character boundary is not at i)."""
    return i < len(data) and data[i] & 0xC0 == 0x80


def changed_span(index: int, offset: int, old: bytes, new: bytes) -> EventChange:
    """The change from `old` to `new` (an event at `offset`), trimmed to the span that differs.

    Raises `UnicodeDecodeError` when the span is not UTF-8 (a binary frame's lengths and CRCs).
    """
    p = _common_prefix(old, new)
    while p and (_continues(old, p) or _continues(new, p)):
        p -= 1
    s = _common_suffix(old, new, min(len(old), len(new)) - p)
    while s and _continues(old, len(old) - s):
        s -= 1
    return EventChange(
        index, offset + p, old[p : len(old) - s].decode("utf-8"), new[p : len(new) - s].decode("utf-8")
    )


@dataclass(slots=True)
class RewriteResult:
    """What rewriting a response did, for the record. Any chunking of a stream gives the same."""

    dialect: str
    streamed: bool
    profile: str | None = None
    tally: Tally = field(default_factory=Tally)
    changes: list[EventChange] = field(default_factory=list)
    error: str | None = None
    """Set when the rewriter failed and let the rest through untouched (fail open)."""
    events: int = 0
    unparsed: dict[str, int] = field(default_factory=dict)
    """Events forwarded unparsed, by reason (`oversize`, `cut_off`, `bad_crc`, …): each counted
    once, however many pieces it came in."""
    incomplete_tail: int = 0
    """Bytes of an event cut off by the end of the stream (forwarded as they were)."""
