"""Give back the memory of finished streamed flows, which only CPython's full collection frees.

mitmproxy's per-stream layer (`HttpStream`) keeps its state as bound methods of itself, so it and
the flow it holds are freed by the cyclic garbage collector, never by reference counting. CPython
runs the full collection rarely (once the objects that survived the younger ones reach a quarter
of those already long-lived, and mitmproxy starts with about 100,000), so finished flows pile up
between two. A bare streaming mitmdump's flows carry no body and its pile stays small; with the
addon each streamed flow carries the body the client got (for the saved flow), and the pile grew
by the bodies of hundreds of flows: 100 → 414 finished flows alive, RSS 142 → 262 MiB, over seven
rounds of 100 concurrent streams of 250 KB (`scripts/bench load`).

So the addon counts the bytes of the bodies it hands to finished flows and, once they reach a
budget, runs the full collection itself. A full collection walks every tracked object: at
`running` the addon freezes (`gc.freeze`) the ones mitmproxy made at start-up, which live as long
as the process, so each later collection walks only what came since (measured: 18-37 ms instead
of 250-345 ms, on 2 loaded cores). The price: an object made before `running` that later becomes
garbage in a cycle is never freed (an addon reloaded by mitmproxy leaves its old instance).

Pure (no mitmproxy): the glue calls `start` at `running` and `add` as each streamed flow is done.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_RECLAIM_BYTES", "Reclaimer"]

DEFAULT_RECLAIM_BYTES = 32 * 1024 * 1024
"""Bodies handed to finished flows between two collections: what finished flows keep waiting for
a collection stays about this much (and their own objects), and one runs at most once per it."""


@dataclass
class Reclaimer:
    budget: int = DEFAULT_RECLAIM_BYTES
    collect: Callable[[], object] = gc.collect
    freeze: Callable[[], None] = gc.freeze
    pending: int = 0
    """Bytes of bodies handed to finished flows since the last collection."""

    def start(self) -> None:
        """Once everything is loaded: collect, then freeze what is left (see the module's doc)."""
        self.collect()
        self.freeze()
        self.pending = 0

    def add(self, size: int) -> bool:
        """Count a finished flow's body; collect once the budget is reached. True if it collected."""
        self.pending += size
        if self.pending < self.budget:
            return False
        self.pending = 0
        self.collect()
        return True
