"""The records of a server-replay file, found again for the responses it serves.

mitmproxy's server replay hands the addon a copy of a recorded response and nothing of the flow
it came from: not its record, which holds the upstream's original (the changes the addon made).
Normalizing the copy as it stands would read the already-rewritten body and record `unchanged`
where the capture said `rewritten`. So the glue reads the same files, indexes each recorded
response with its record here, and looks up the record of each response served, to normalize
anew from the upstream's original.

A response is known by its status and its exact body (what server replay copies, whatever
`server_replay_refresh` does to dates); identical responses of different requests are told apart
by the request's method and path when they can be.

Pure: the glue (addon.py) reads the flow files and hands over plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordIndex", "Recorded"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded flow: how its request and its response are known, and its record."""

    request: tuple[str, str]
    """Method and path."""
    response: tuple[int, bytes]
    """Status and raw body, as saved."""
    record: Mapping[str, Any]


@dataclass(slots=True)
class RecordIndex:
    _by_response: dict[tuple[int, bytes], list[Recorded]] = field(default_factory=dict)

    @classmethod
    def of(cls, recorded: Iterable[Recorded]) -> RecordIndex:
        index = cls()
        for r in recorded:
            index._by_response.setdefault(r.response, []).append(r)
        return index

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_response.values())

    def find(self, request: tuple[str, str], response: tuple[int, bytes]) -> Mapping[str, Any] | None:
        """The record of the recorded flow this response was copied from; None when none has one.

        Of several with the same response, one for the same request; of several of those (or of
        none), the first recorded: identical bodies of one request rebuild the same upstream body
        only if their records agree, and which of them the replay served cannot be known here.
        """
        candidates = self._by_response.get(response)
        if not candidates:
            return None
        same = [r for r in candidates if r.request == request]
        return (same or candidates)[0].record
