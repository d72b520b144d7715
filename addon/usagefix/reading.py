"""What normalizing reads and returns: counts read out of a usage block (clamped, I4), the rules
that fired, and the outcome (the upstream's reading beside the repaired one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from usagefix.usage import CanonicalUsage

__all__ = ["Fired", "Outcome", "Reader", "UsageShapeError", "carried", "positive"]


class UsageShapeError(ValueError):
    """A usage block is not shaped as its dialect says (a count that is not a number, …)."""


@dataclass(frozen=True, slots=True)
class Fired:
    """One rule that changed a value, with the canonical fields it changed: name → (before, after)."""

    rule: str
    reason: str
    changes: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The upstream's own reading (`before`), the repaired one (`after`), and why they differ."""

    before: CanonicalUsage
    after: CanonicalUsage
    fired: tuple[Fired, ...] = ()
    anomalies: tuple[str, ...] = ()


class Reader:
    """Reads counts out of a usage block, clamping negatives to 0 (I4) and noting it."""

    def __init__(self) -> None:
        self.fired: list[Fired] = []
        self.anomalies: list[str] = []

    def count(self, block: Mapping[str, Any] | None, key: str, where: str = "") -> int | None:
        """The count at `key`, or None when absent or null."""
        if block is None:
            return None
        v = block.get(key)
        if v is None:
            return None
        name = f"{where}{key}"
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise UsageShapeError(f"{name} is {v!r}, not a count")
        if isinstance(v, float):
            if not v.is_integer():
                raise UsageShapeError(f"{name} is {v!r}, not a whole count")
            v = int(v)
        if v < 0:
            self.fired.append(Fired("I4", f"{name} was negative; counts are never negative", {name: (v, 0)}))
            self.anomalies.append(f"negative_count:{name}")
            return 0
        return v

    @staticmethod
    def block(parent: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
        """A nested object (`prompt_tokens_details`, …) of a usage block, or None when absent or
        null. (Details sit one level down, so the parent is always the usage block itself.)"""
        v = parent.get(key)
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise UsageShapeError(f"{key} is {v!r}, not an object")
        return v


def positive(n: int | None) -> int | None:
    """`n` when it counts something, else None."""
    return n if n is not None and n > 0 else None


def carried(reader: Reader | None) -> tuple[list[Fired], list[str]]:
    """What reading already found (I4 clamps), to start a rule function's findings with."""
    return (list(reader.fired), list(reader.anomalies)) if reader else ([], [])
