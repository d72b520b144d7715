"""Helpers to cut byte strings into chunks, for framers and rewriters."""

from collections.abc import Callable, Iterable, Sequence

from hypothesis import strategies as st


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
