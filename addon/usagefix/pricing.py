"""Prices for one exchange, before and after normalization, from genai-prices. Pure.

- **Cost after** is genai-prices' own price (`calc_price` semantics) of the corrected usage, at
  the request's time (dated prices) and in the tier its input reaches (long-context prices).
- **Cost before** is what a standard consumer of the dialect computes from the upstream's block,
  from the same model's component rates. It is not a `calc_price`: genai-prices refuses a block
  whose parts exceed their headline (the founding bug's `cached_tokens` 105530 > `prompt_tokens`
  1678), while LiteLLM's and Langfuse's arithmetic goes negative on it. That negative number is the
  bug's cost to its users, so it is shown as it is (see `_reading_cost`).
- Money is `Decimal` throughout, never float: genai-prices' prices are `Decimal`, and a rate per
  million tokens times a count, divided by 10**6, is exact in Decimal's 28 digits for any real
  count. Nothing is rounded or quantized (a ledger stores the exact value; a report rounds for
  display).
- Unknown is not zero: an unknown model, or usage not measured, is `None` and flagged `unpriced`;
  a sub-count the upstream did not report (None) contributes nothing, and is never shown as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from genai_prices import Usage
from genai_prices import __version__ as genai_prices_version
from genai_prices.types import ModelPrice, TieredPrices

from usagefix.exchange import Costs, ExchangeFacts
from usagefix.price_models import Resolved, context_window, resolve, upstream_url
from usagefix.price_overrides import PriceOverrides
from usagefix.usage import CanonicalUsage

__all__ = ["SOURCE", "price_exchange"]

SOURCE = f"genai-prices {genai_prices_version}"

# genai-prices' token units and how they nest (its units registry: a descendant's tokens are
# part of its ancestor's). Every leaf is priced once: an ancestor pays for what its priced
# descendants leave. Units a model has no price for stay in their ancestor (a model without a
# cache-read price bills cache reads at the input rate), exactly as genai-prices decomposes.
_CHILDREN: Mapping[str, tuple[str, ...]] = {
    "input_tokens": ("cache_read_tokens", "cache_write_tokens"),
    "cache_write_tokens": ("cache_write_5m_tokens", "cache_write_1h_tokens"),
    "output_tokens": ("output_reasoning_tokens",),
}
_PRICE_KEY = {
    "input_tokens": "input_mtok",
    "cache_read_tokens": "cache_read_mtok",
    "cache_write_tokens": "cache_write_mtok",
    "cache_write_5m_tokens": "cache_write_5m_mtok",
    "cache_write_1h_tokens": "cache_write_1h_mtok",
    "output_tokens": "output_mtok",
    "output_reasoning_tokens": "output_reasoning_mtok",
}
_PER = Decimal(1_000_000)


def price_exchange(
    facts: ExchangeFacts,
    *,
    dialect: str,
    model: str | None,
    usage_before: CanonicalUsage | None,
    usage_after: CanonicalUsage | None,
    upstream_usage: dict[str, Any] | None,
    provider_cost: Decimal | None,
    overrides: PriceOverrides | None = None,
) -> Costs:
    """Cost before / after / as the provider reported it, and the model's context window.

    `upstream_usage` is not read: `usage_before` is the upstream's own reading of it, in canonical
    terms, as its dialect's standard reads it (a stream's cumulative snapshot, which a last raw
    block may not hold whole). `provider_cost` (OpenRouter's `usage.cost`) is kept as it came.
    `overrides`: the user's `usage_prices` file, loaded (`load_price_overrides`).
    """
    del upstream_usage
    override = overrides.match(facts.host, facts.port, model) if overrides is not None else None
    resolved = None
    if model is not None:
        url = upstream_url(facts.scheme, facts.host, facts.port, facts.path)
        resolved = resolve(model, url=url, dialect=dialect, override=override)
    window, window_source = context_window(resolved, model, facts.request_headers, override)
    flags: list[str] = []
    if override is not None and (override.price_as or override.provider):
        if resolved is None or resolved.match != "override":
            flags.append("override_unresolved")
    before = after = None
    if resolved is not None:
        when = datetime.fromtimestamp(facts.ts_start, UTC)
        prices = resolved.model.get_prices(when)
        if usage_after is not None:
            after = _calc(usage_after, resolved, prices, when, flags)
        if usage_before is not None:
            before = _reading_cost(usage_before, prices, flags)
    if after is None:
        flags.append("unpriced")
    return Costs(
        before=before,
        after=after,
        provider=provider_cost,
        match=resolved.match if resolved else None,
        model_id=resolved.model.id if resolved else None,
        provider_id=resolved.provider.id if resolved else None,
        source=SOURCE,
        context_window=window,
        context_window_source=window_source,
        flags=tuple(dict.fromkeys(flags)),
    )


def _counts(u: CanonicalUsage, prices: ModelPrice, flags: list[str]) -> dict[str, int | None]:
    """`u` in genai-prices' units (inclusive, 1:1: usage-semantics §6.2, §8.1).

    Cache writes are priced by TTL (Claude Code writes with the 1h TTL, which costs 60% more
    than 5m's: pricing them all at 5m under-counts it). When the split is unknown, or does not
    add up to the writes, the writes it does not cover are priced at the 5m rate (genai-prices'
    `cache_write_mtok`, Anthropic's default TTL), flagged `cache_ttl_unknown` where the model
    has a 1h price (elsewhere the TTL changes nothing).
    """
    write, w5, w1 = u.cache_write, u.cache_write_5m, u.cache_write_1h
    if write is None:
        w5 = w1 = None  # parts of writes no headline counts are not in the input either (ingest)
    elif write and (w5 or 0) + (w1 or 0) != write:
        if prices.cache_write_1h_mtok is not None:
            flags.append("cache_ttl_unknown")
        if (w5 or 0) + (w1 or 0) > write:
            w5 = w1 = None  # a split larger than the writes it splits says nothing reliable
    return {
        "input_tokens": u.input_total,
        "cache_read_tokens": u.cache_read,
        "cache_write_tokens": write,
        "cache_write_5m_tokens": w5,
        "cache_write_1h_tokens": w1,
        "output_tokens": u.output_total,
        "output_reasoning_tokens": u.reasoning,
    }


def _calc(
    u: CanonicalUsage, resolved: Resolved, prices: ModelPrice, when: datetime, flags: list[str]
) -> Decimal | None:
    """genai-prices' price of a corrected reading; None when it is still inconsistent (I1, I2)."""
    counts = _counts(u, prices, flags)
    if u.unattributed:
        flags.append("unattributed_unpriced")  # tokens of no known kind: nobody has a price for them
    try:
        calc = resolved.model.calc_price(
            Usage(**{k: v or 0 for k, v in counts.items()}),
            resolved.provider,
            genai_request_timestamp=when,
        )
    except ValueError:
        flags.append("usage_inconsistent")
        return None
    return calc.total_price


def _rate(price: Decimal | TieredPrices, input_total: int) -> Decimal:
    """The rate in the tier `input_total` reaches: genai-prices' cliff tiers (crossing 200k input
    re-prices every token of the request), chosen by the same total in both readings' terms."""
    if isinstance(price, TieredPrices):
        for tier in reversed(price.tiers):
            if input_total > tier.start:
                return tier.price
        return price.base
    return price


def _priced_below(key: str, rates: Mapping[str, Decimal]) -> list[str]:
    """The nearest descendants of `key` the model has a price for."""
    out: list[str] = []
    for child in _CHILDREN.get(key, ()):
        out.extend([child] if child in rates else _priced_below(child, rates))
    return out


def _reading_cost(u: CanonicalUsage, prices: ModelPrice, flags: list[str]) -> Decimal:
    """What a consumer computes from a reading by its dialect's standard, negative if it is broken.

    `u` is the upstream's reading as the dialect's own standard reads it (each dialect's ingest):
    - OpenAI Chat / Responses (and the OpenAI-compatible family): `prompt_tokens` includes cached
      and cache-write tokens, so a consumer bills `(prompt - cached - cache_write) x input +
      cached x cache_read + cache_write x cache_write + completion x output` (LiteLLM's
      `generic_cost_per_token` before its clamp, Langfuse's `input - cached`: usage-semantics
      §6.1). The founding bug (R1): (1678 - 105530) x input + 105530 x cache_read + ...: negative.
    - Anthropic Messages, Bedrock Converse: exclusive; `input_tokens` is the uncached part and
      cache reads and writes are billed beside it: `input_tokens x input + cache_read x
      cache_read + cache_creation x write (5m/1h) + output x output`. Ingest made `input_total`
      their sum, so `input_total - cache_read - cache_write` is the block's own `input_tokens`.
    - Gemini: `promptTokenCount` includes cached content; thoughts and tool-use prompt stand
      beside candidates and prompt and are billed as output and input. Ingest added them in, so
      the same inclusive formula is Gemini's own bill (negative when the cache exceeds the prompt).
    Reasoning is billed inside output unless the model prices it apart (as genai-prices does).
    The tier is chosen by the reading's own input total, as its consumer would see it.
    """
    counts = _counts(u, prices, flags)
    rates: dict[str, Decimal] = {}
    for key, price_key in _PRICE_KEY.items():
        price = getattr(prices, price_key)
        if price is not None:
            rates[key] = _rate(price, u.input_total)
    total = Decimal(0)
    for key, rate in rates.items():
        leaf = (counts[key] or 0) - sum(counts[d] or 0 for d in _priced_below(key, rates))
        total += rate * leaf / _PER
    per_request = prices.requests_kcount
    if per_request is not None:
        total += _rate(per_request, u.input_total) / 1000
    return total
