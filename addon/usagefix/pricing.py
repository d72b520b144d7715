"""Prices for one exchange, before and after normalization, from genai-prices. Pure.

STUB (contract only): the pricing work replaces this whole module. Signature is the contract.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from usagefix.exchange import Costs, ExchangeFacts
from usagefix.usage import CanonicalUsage

__all__ = ["price_exchange"]


def price_exchange(  # pragma: no cover - stub
    facts: ExchangeFacts,
    *,
    dialect: str,
    model: str | None,
    usage_before: CanonicalUsage | None,
    usage_after: CanonicalUsage | None,
    upstream_usage: dict[str, Any] | None,
    provider_cost: Decimal | None,
) -> Costs:
    """Cost before / after / as the provider reported it, and the model's context window."""
    return Costs(
        before=None,
        after=None,
        provider=provider_cost,
        match=None,
        model_id=None,
        provider_id=None,
        source="stub",
        context_window=None,
        context_window_source=None,
        flags=("unpriced",),
    )
