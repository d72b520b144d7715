"""Sessions, lanes and steps, from what clients already put on the wire. Pure.

STUB (contract only): the sessions work replaces this whole module. Signatures are the contract.
"""

from __future__ import annotations

from collections.abc import Sequence

from usagefix.exchange import ExchangeFacts, ResponseFacts, SessionInfo

__all__ = ["SessionTracker"]


class SessionTracker:  # pragma: no cover - stub
    """Assigns each exchange, in the order responses finish, to a session. Bounded memory: it
    indexes the tool-call ids and response ids it has seen (oldest forgotten first)."""

    def __init__(self, *, extra_headers: Sequence[str] = (), max_index: int = 100_000) -> None:
        self.extra_headers = tuple(extra_headers)
        self.max_index = max_index

    def step(self, facts: ExchangeFacts, dialect: str, response: ResponseFacts) -> SessionInfo:
        """The session of this exchange (from its request), then index its response's ids."""
        return SessionInfo(key=None, source=None, client=None)
