"""The canonical usage model: one cumulative snapshot of one request's token usage.

Every sub-count is a subset of its headline (reference/usage-semantics.md §8.1), so nothing is
ever added on top of anything: `input_total` holds cache reads and writes, `output_total` holds
reasoning. Dialects translate their own fields into this model and back.

Unknown is not zero: a sub-count the upstream did not report (absent, or `null`) is `None`, and
stays `None` through normalization unless a named rule finds its value. Arithmetic treats it as
contributing nothing, but it is never shown or emitted as 0.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, NonNegativeInt, computed_field

__all__ = ["CanonicalUsage"]


class CanonicalUsage(BaseModel):
    """One usage snapshot in canonical, inclusive terms.

    The model itself does not enforce the invariants I1–I3: the upstream's own reading is stored
    in this shape too (as `usage_before`), broken or not. `violations()` names what is broken.
    Counts are never negative (I4).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    input_total: NonNegativeInt
    """Every prompt-side token of the request: uncached + cache reads + cache writes."""
    cache_read: NonNegativeInt | None = None
    """Prompt tokens read from the provider's cache; a subset of `input_total`. None: not reported."""
    cache_write: NonNegativeInt | None = None
    """Prompt tokens written to the provider's cache; a subset of `input_total`. None: not reported."""
    cache_write_5m: NonNegativeInt | None = None
    """The part of `cache_write` with a 5-minute TTL, when the upstream splits it (Anthropic)."""
    cache_write_1h: NonNegativeInt | None = None
    """The part of `cache_write` with a 1-hour TTL, when the upstream splits it (Anthropic)."""
    output_total: NonNegativeInt
    """Every generated token, reasoning/thinking included."""
    reasoning: NonNegativeInt | None = None
    """Reasoning or thinking tokens; a subset of `output_total`. None: not reported."""
    unattributed: NonNegativeInt | None = None
    """Tokens the upstream's own total counts that neither headline does, and that no rule can
    attribute: kept in `total` (a total is never lowered) and flagged, never dropped."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        """Always recomputed: `input_total + output_total` (I3), plus any `unattributed` tokens."""
        return self.input_total + self.output_total + (self.unattributed or 0)

    @property
    def input_uncached(self) -> int:
        """Prompt tokens neither read from nor written to the cache (clamped, never negative)."""
        return max(0, self.input_total - (self.cache_read or 0) - (self.cache_write or 0))

    def violations(self) -> list[str]:
        """The invariants this snapshot breaks, by ID (usage-semantics §8.2)."""
        broken = []
        if (self.cache_read or 0) + (self.cache_write or 0) > self.input_total:
            broken.append("I1")
        if (self.reasoning or 0) > self.output_total:
            broken.append("I2")
        return broken
