"""The ledger's writer thread: batches, never blocks, spools while the database is away, drops and
counts past its bounds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from test_ledger import sample_row
from usagefix.exchange import ExchangeRow
from usagefix.ledger import Store
from usagefix.ledger.sqlite import SqliteStore
from usagefix.ledger.writer import LedgerWriter


class FakeStore:
    """A store that can be taken down: `up` false makes opening and writing fail."""

    def __init__(self) -> None:
        self.up = True
        self.batches: list[list[str]] = []
        self.opens = 0
        self.fail_close = False

    def opener(self) -> Store:
        self.opens += 1
        if not self.up:
            raise ConnectionError("connection refused")
        return self  # type: ignore[return-value]

    def write(self, rows: Sequence[ExchangeRow]) -> int:
        if not self.up:
            raise ConnectionError("server closed the connection")
        self.batches.append([r.id for r in rows])
        return len(rows)

    def rows(self) -> Iterator[ExchangeRow]:  # pragma: no cover - not read here
        return iter(())

    def version(self) -> int:  # pragma: no cover
        return 1

    def close(self) -> None:
        if self.fail_close:
            raise OSError("already gone")

    @property
    def ids(self) -> list[str]:
        return [i for b in self.batches for i in b]


def row(i: int) -> ExchangeRow:
    return sample_row(i)


def test_rows_are_batched_by_count_and_by_time() -> None:
    store = FakeStore()
    w: LedgerWriter[int] = LedgerWriter(store.opener, row, batch_rows=10, batch_seconds=0.2)
    for i in range(25):
        assert w.submit(i)
    deadline = time.monotonic() + 5
    while len(store.ids) < 25 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.ids == [f"f{i}" for i in range(25)]
    assert all(len(b) <= 10 for b in store.batches) and len(store.batches) >= 3
    w.submit(25)
    time.sleep(0.05)
    assert len(store.ids) == 25  # the 26th waits for its batch's time
    assert w.flush() and store.ids[-1] == "f25"
    w.close()
    assert w.stats.written == 26 and w.stats.dropped == 0 and not w.flush()


def test_submit_never_blocks_and_drops_what_does_not_fit(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    def slow(i: int) -> ExchangeRow:
        gate.wait(5)
        return row(i)

    store = FakeStore()
    w: LedgerWriter[int] = LedgerWriter(store.opener, slow, queue_max=3)
    start = time.monotonic()
    results = [w.submit(i) for i in range(10)]
    assert time.monotonic() - start < 0.5
    assert results.count(False) >= 6 and w.stats.dropped == results.count(False)
    assert "the writer's queue is full" in caplog.text
    gate.set()
    w.close()
    assert w.stats.written == results.count(True)


def test_an_unreachable_database_spools_rows_and_writes_them_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    store = FakeStore()
    store.up = False
    w: LedgerWriter[int] = LedgerWriter(store.opener, row, batch_seconds=0.05, retry_seconds=0.1, spool_max=5)
    for i in range(8):
        w.submit(i)
    time.sleep(0.4)
    assert store.ids == [] and w.stats.outages == 1 and w.stats.dropped == 3
    assert "unreachable (cannot open it: ConnectionError('connection refused'))" in caplog.text
    assert "the spool is full (5 rows waiting for the database)" in caplog.text
    store.up = True
    deadline = time.monotonic() + 5
    while len(store.ids) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.ids == ["f0", "f1", "f2", "f3", "f4"]  # oldest first, none twice
    assert "reachable again; writing 5 spooled rows" in caplog.text
    # Down again mid-run: a failed write keeps its rows, which go once it is back.
    store.up = False
    w.submit(10)
    time.sleep(0.3)
    assert w.stats.outages == 2
    store.up = True
    assert w.flush() and store.ids[-1] == "f10"
    w.close()
    assert w.stats.written == 6


def test_rows_still_waiting_at_shutdown_are_counted_as_dropped(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    store.up = False
    store.fail_close = True
    w: LedgerWriter[int] = LedgerWriter(store.opener, row, retry_seconds=0.05)
    w.submit(1)
    w.submit(2)
    assert not w.flush(timeout=1)
    w.close(timeout=8)
    assert w.stats.dropped == 2 and "still unreachable at shutdown" in caplog.text


def test_a_store_that_fails_to_close_is_let_go() -> None:
    store = FakeStore()
    store.fail_close = True
    w: LedgerWriter[int] = LedgerWriter(store.opener, row)
    w.submit(1)
    assert w.flush()
    w.close()
    assert store.ids == ["f1"]


def test_an_item_no_row_can_be_made_of_is_counted_and_the_rest_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def make(i: int) -> ExchangeRow:
        if i == 1:
            raise ValueError("bad item")
        return row(i)

    store = FakeStore()
    w: LedgerWriter[int] = LedgerWriter(store.opener, make)
    for i in range(3):
        w.submit(i)
    w.close()
    assert store.ids == ["f0", "f2"] and w.stats.failed == 1 and "bad item" in caplog.text


def test_a_full_queue_refuses_a_flush_rather_than_block() -> None:
    gate = threading.Event()
    store = FakeStore()
    w: LedgerWriter[int] = LedgerWriter(store.opener, lambda i: (gate.wait(5), row(i))[1], queue_max=1)
    w.submit(1)
    w.submit(2)
    time.sleep(0.05)
    w.submit(3)
    assert not w.flush(timeout=0.1)
    gate.set()
    w.close()


def test_two_writers_share_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    writers = [LedgerWriter(lambda: SqliteStore(path), row, batch_rows=7) for _ in range(2)]
    for i in range(200):
        writers[i % 2].submit(i)
    for w in writers:
        w.close()
    store = SqliteStore(path)
    assert sorted(r.id for r in store.rows()) == sorted(f"f{i}" for i in range(200))
    store.close()
