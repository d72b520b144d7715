"""Helpers to cut byte strings into chunks, for framers and rewriters, and the three-ways check
every framer's tests share."""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from usagefix.framing import Event, Framer


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """Cut `data` at the given offsets (any order, duplicates allowed)."""
    edges = sorted({0, len(data), *(p for p in points if 0 < p < len(data))})
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Any chunking of `data`: a few random cut points, or byte-at-a-time."""
    points = st.lists(st.integers(min_value=0, max_value=max(len(data), 1)), max_size=12)
    return st.one_of(points.map(lambda p: cut(data, p)), st.just(bytewise(data)))


def run_pushed[T](
    feed: Callable[[bytes], Sequence[T]], finish: Callable[[], Sequence[T]], chunks: Iterable[bytes]
) -> list[T]:
    out: list[T] = []
    for c in chunks:
        out.extend(feed(c))
    out.extend(finish())
    return out


@dataclass(frozen=True)
class Framed:
    """One event as the framer saw it, whatever pieces it came in."""

    raw: bytes
    complete: bool
    reasons: tuple[str, ...]
    payload: tuple[str | None, str | None] | None


def merge_pieces(events: Sequence[Event]) -> list[Framed]:
    """Events with their pieces joined: a piece that does not start an event belongs to the one
    before it (bytes before the first event make a group of their own)."""
    groups: list[list[Event]] = []
    for ev in events:
        if ev.starts_event or not groups:
            groups.append([ev])
        else:
            groups[-1].append(ev)
    out = []
    for g in groups:
        reasons = tuple(dict.fromkeys(r for e in g if (r := e.reason) is not None))
        first = g[0]
        out.append(
            Framed(
                b"".join(e.raw for e in g),
                first.complete,
                reasons,
                first.payload() if first.complete else None,
            )
        )
    return out


def events_of(
    events: Sequence[Event],
) -> list[tuple[bool, tuple[str, ...], tuple[str | None, str | None] | None]]:
    """What the framer said about each event (parsed or why not, and its payload), without where
    the bytes between events went: the part of framing that must not depend on chunking."""
    return [
        (f.complete, f.reasons, f.payload)
        for f in merge_pieces([e for e in events if e.starts_event or e.reason])
    ]


def check_three_ways(
    make: Callable[[], Framer], stream: bytes, trailing: bytes | None, *, eager: bool = True
) -> list[Event]:
    """Frame `stream` whole, byte at a time, and followed by `trailing` (the start of an event that
    never ends); return the events of the whole.

    - Every byte comes back exactly once, in order, and both chunkings say the same of every event.
    - Byte at a time, nothing complete is held (with `eager`): once the last byte of an event is
      in, every byte up to it has come back.
    - With the trailing bytes, the stream's events come out of `feed`, the trailing bytes stay
      held until `finish()`, which returns them as one event cut off (no third way with None).
    """
    f = make()
    whole = run_pushed(f.feed, f.finish, [stream])
    assert b"".join(e.raw for e in whole) == stream

    f = make()
    pieces: list[Event] = []
    returned = 0
    ends = _event_ends(whole)
    for i in range(len(stream)):
        pieces.extend(f.feed(stream[i : i + 1]))
        returned = sum(len(e.raw) for e in pieces)
        assert stream[:returned] == b"".join(e.raw for e in pieces)
        if eager:
            done = max((e for e in ends if e <= i + 1), default=0)
            assert returned >= done, f"an event complete at byte {done} is still held at byte {i + 1}"
    assert f.pending == len(stream) - returned
    pieces.extend(f.finish())
    assert b"".join(e.raw for e in pieces) == stream
    assert events_of(pieces) == events_of(whole)

    if trailing is None:
        return whole
    f = make()
    out = list(f.feed(stream + trailing))
    held = f.pending_bytes()
    assert b"".join(e.raw for e in out) + held == stream + trailing
    # Held: the unfinished event alone (the bytes before it, if no event, went on already).
    assert held and trailing.endswith(held)
    assert events_of(out) == events_of(whole)
    tail = f.finish()
    assert b"".join(e.raw for e in tail) == held
    assert [(e.starts_event, e.reason) for e in tail] == [(True, "cut_off")]
    assert not any(e.complete for e in tail)
    return whole


def _event_ends(events: Sequence[Event]) -> list[int]:
    """Byte offsets at which each complete event of `events` ends."""
    ends, at = [], 0
    for e in events:
        at += len(e.raw)
        if e.complete:
            ends.append(at)
    return ends
