"""The addon's live ledger (glue: imports mitmproxy): at the end of `response` / `error` (and when a
WebSocket ends), a flow's snapshot goes to one writer thread, which decodes, parses, runs the
pipeline and writes the row. The hot path only takes references (usagefix.flowfacts.snapshot).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

from mitmproxy import http

from usagefix.flowfacts import FlowSnapshot, facts_of, pipeline_for, snapshot, turn_dialect, turn_snapshots
from usagefix.ledger import Target, open_store, parse_target
from usagefix.ledger.writer import SPOOL_MAX, LedgerWriter

__all__ = ["LiveLedger"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Item:
    snap: FlowSnapshot
    dialect: str


class LiveLedger:
    """The addon's ledger: off, or one writer thread and one session tracker for this process."""

    def __init__(self) -> None:
        self.target = Target("off")
        self.spool_rows = SPOOL_MAX
        self.session_headers: tuple[str, ...] = ()
        self.prices: str | None = None
        self.writer: LedgerWriter[_Item] | None = None
        self._submitted: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()

    def configure(
        self,
        value: str | None,
        spool_rows: int = SPOOL_MAX,
        *,
        session_headers: tuple[str, ...] = (),
        prices: str | None = None,
    ) -> None:
        """Switch to the ledger `value` names, with the user's session headers and price table
        (`usage_session_header`, `usage_prices`). Raises `ValueError` (one line) for a bad value or
        a SQLite file that cannot be opened; a PostgreSQL server may be down (rows are spooled)."""
        target = parse_target(value)
        settings = (target, spool_rows, session_headers, prices)
        if settings == (self.target, self.spool_rows, self.session_headers, self.prices):
            return
        if target.kind == "sqlite":
            try:
                open_store(target).close()  # created and migrated now: a bad path stops the start
            except Exception as e:
                raise ValueError(f"usage_ledger: cannot open {target}: {e}") from None
        self.close()
        self.target, self.spool_rows, self.session_headers, self.prices = settings
        if target.kind != "off":
            # One session tracker per process, fed in the order flows end.
            pipeline = pipeline_for(session_headers, prices)
            self.writer = LedgerWriter(
                lambda: open_store(target),
                lambda item: pipeline.row(facts_of(item.snap), item.snap.record, item.dialect),
                name=str(target),
                spool_max=spool_rows,
            )
            logger.info("usagefix: ledger: %s", target)

    def record(self, flow: http.HTTPFlow, dialect: str) -> None:
        """Hand one finished exchange to the writer; never blocks, never raises."""
        if self.writer is None or flow in self._submitted:
            return
        try:
            self._submitted.add(flow)
            self.writer.submit(_Item(snapshot(flow), dialect))
        except Exception as e:  # not reachable by design; the proxy must not suffer from the ledger
            logger.warning("usagefix ledger: %s: not recorded: %r", flow.id, e)

    def record_turns(self, flow: http.HTTPFlow) -> None:
        """Hand a WebSocket's recorded turns to the writer, once (when it ends); never raises."""
        if self.writer is None or flow in self._submitted:
            return
        try:
            self._submitted.add(flow)
            for snap in turn_snapshots(flow):
                if (name := turn_dialect(snap)) is not None:
                    self.writer.submit(_Item(snap, name))
        except Exception as e:  # not reachable by design; the proxy must not suffer from the ledger
            logger.warning("usagefix ledger: %s: turns not recorded: %r", flow.id, e)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            stats = self.writer.stats
            if stats.dropped or stats.failed:
                logger.warning(
                    "usagefix ledger: %d rows written, %d dropped, %d failed",
                    stats.written,
                    stats.dropped,
                    stats.failed,
                )
            self.writer = None
        self.target = Target("off")
