"""The ledger's writer thread: the proxy hands it plain items and never waits for the database.

`submit` puts an item on a bounded queue and returns at once (an item that does not fit is dropped
and counted: the proxy's memory stays bounded whatever the database does). The thread turns items
into rows (`make_row`: the pure pipeline, pricing included, so none of it runs on the hot path),
and writes them in batches: every `batch_rows` rows, or `batch_seconds` after the first row of a
batch arrived.

When the database cannot be reached (or a write fails), rows wait in a bounded spool in memory and
the thread retries every `retry_seconds`; once it is back they are written, oldest first. Rows
past the spool's bound are dropped, counted (`stats.dropped`) and logged. The flow file stays the
source of truth: `usagefix ledger import` writes any row lost here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from usagefix.exchange import ExchangeRow
from usagefix.ledger import Store

__all__ = ["LedgerWriter", "WriterStats"]

logger = logging.getLogger(__name__)

QUEUE_MAX = 10_000
SPOOL_MAX = 50_000
BATCH_ROWS = 100
BATCH_SECONDS = 0.25
RETRY_SECONDS = 1.0


@dataclass
class WriterStats:
    written: int = 0
    """Rows the database took (new ids; an id already there counts as written too)."""
    dropped: int = 0
    """Rows lost: the queue or the spool was full, or the database was still down at the end."""
    failed: int = 0
    """Items no row could be built from (a bug: logged with the reason)."""
    outages: int = 0
    """Times the database became unreachable."""


class _Marker:
    """A flush (or, with `stop`, the end) request, answered through its event."""

    def __init__(self, *, stop: bool = False) -> None:
        self.stop = stop
        self.done = threading.Event()


class LedgerWriter[T]:
    """Writes rows made from submitted items to the store `opener` opens, on a thread of its own."""

    def __init__(
        self,
        opener: Callable[[], Store],
        make_row: Callable[[T], ExchangeRow],
        *,
        name: str = "ledger",
        queue_max: int = QUEUE_MAX,
        spool_max: int = SPOOL_MAX,
        batch_rows: int = BATCH_ROWS,
        batch_seconds: float = BATCH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.opener = opener
        self.make_row = make_row
        self.name = name
        self.spool_max = spool_max
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.retry_seconds = retry_seconds
        self.stats = WriterStats()
        self._lock = threading.Lock()
        self._queue: queue.Queue[T | _Marker] = queue.Queue(queue_max)
        self._spool: deque[ExchangeRow] = deque()
        self._store: Store | None = None
        self._retry_at = 0.0
        self._down = False
        self._thread = threading.Thread(target=self._run, name=f"usagefix-{name}", daemon=True)
        self._thread.start()

    # -- the proxy's side: never blocks ------------------------------------------------------

    def submit(self, item: T) -> bool:
        """Queue an item; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self._drop(1, "the writer's queue is full")
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything submitted so far; True when nothing is left waiting."""
        return self._ask(_Marker(), timeout) and not self._spool

    def close(self, timeout: float = 10.0) -> None:
        """Write what is left (retrying an unreachable database until `timeout`), then stop."""
        self._ask(_Marker(stop=True), timeout)
        self._thread.join(max(0.0, timeout))

    def _ask(self, marker: _Marker, timeout: float) -> bool:
        if not self._thread.is_alive():
            return False
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        first_at: float | None = None
        while True:
            wait = (
                self.retry_seconds if first_at is None else first_at + self.batch_seconds - time.monotonic()
            )
            try:
                item = self._queue.get(timeout=max(0.0, wait))
            except queue.Empty:
                item = None
            if isinstance(item, _Marker):
                self._write(force=True, deadline=time.monotonic() + 5.0 if item.stop else None)
                if item.stop:
                    self._give_up()
                    self._close_store()
                    item.done.set()
                    return
                first_at = None
                item.done.set()
                continue
            if item is not None:
                self._add(item)
                first_at = first_at if first_at is not None else time.monotonic()
            due = first_at is not None and time.monotonic() >= first_at + self.batch_seconds
            if len(self._spool) >= self.batch_rows or due or (item is None and self._spool):
                self._write()
                first_at = None if not self._spool else time.monotonic()

    def _add(self, item: T) -> None:
        try:
            row = self.make_row(item)
        except Exception as e:
            self.stats.failed += 1
            logger.warning("usagefix ledger: no row could be made of an exchange: %r", e)
            return
        if len(self._spool) >= self.spool_max:
            self._drop(1, f"the spool is full ({self.spool_max} rows waiting for the database)")
            return
        self._spool.append(row)

    def _write(self, *, force: bool = False, deadline: float | None = None) -> None:
        """Write spooled rows in batches; stop at the first failure (retried after
        `retry_seconds`, at once when `force`d by a flush, or until `deadline` at shutdown)."""
        while self._spool:
            if self._store is None and not self._open(force=force):
                if deadline is None or time.monotonic() >= deadline:
                    return
                time.sleep(min(self.retry_seconds, 0.2))
                continue
            assert self._store is not None
            batch = [self._spool[i] for i in range(min(self.batch_rows, len(self._spool)))]
            try:
                self._store.write(batch)
            except Exception as e:
                self._lost_store(f"writing {len(batch)} rows failed: {e!r}")
                continue
            for _ in batch:
                self._spool.popleft()
            self.stats.written += len(batch)

    def _open(self, *, force: bool) -> bool:
        if not force and time.monotonic() < self._retry_at:
            return False
        try:
            self._store = self.opener()
        except Exception as e:
            self._lost_store(f"cannot open it: {e!r}")
            return False
        if self._down:
            self._down = False
            logger.warning(
                "usagefix ledger: %s reachable again; writing %d spooled rows", self.name, len(self._spool)
            )
        return True

    def _lost_store(self, why: str) -> None:
        self._close_store()
        self._retry_at = time.monotonic() + self.retry_seconds
        if not self._down:
            self._down = True
            self.stats.outages += 1
            logger.warning(
                "usagefix ledger: %s unreachable (%s); rows wait in the spool (up to %d) and are "
                "written when it is back",
                self.name,
                " ".join(why.split()),
                self.spool_max,
            )

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception as e:  # a connection that died already: nothing left to close
                logger.debug("usagefix ledger: closing %s: %r", self.name, e)

    def _give_up(self) -> None:
        if self._spool:
            count = len(self._spool)
            self._spool.clear()
            self._drop(count, "the database was still unreachable at shutdown")

    def _drop(self, count: int, why: str) -> None:
        with self._lock:  # `submit` drops on the proxy's thread, the spool on the writer's
            self.stats.dropped += count
            total = self.stats.dropped
        # Logged on the first drop and then at every power of two, not once per row.
        if total == count or total & (total - 1) == 0 or count > 1:
            logger.warning(
                "usagefix ledger: %s: %d row(s) dropped, %d in all (the flow file keeps them: "
                "usagefix ledger import writes them)",
                why,
                count,
                total,
            )
