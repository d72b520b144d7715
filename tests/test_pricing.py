"""Prices before and after normalization, against genai-prices' real bundled data (no mocks).

Rule IDs are those of the usage-semantics reference (R1 the founding bug, I1/I2 invariants).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import TieredPrices
from hypothesis import given
from hypothesis import strategies as st

from usagefix.exchange import ExchangeFacts
from usagefix.price_models import _resolve
from usagefix.price_overrides import PriceOverride, PriceOverrides
from usagefix.pricing import SOURCE, _reading_cost, price_exchange
from usagefix.usage import CanonicalUsage

JAN_2026 = datetime(2026, 1, 15, tzinfo=UTC).timestamp()
MTOK = Decimal(1_000_000)


def facts(
    host: str = "127.0.0.1",
    port: int = 8317,
    scheme: str = "http",
    path: str = "/v1/chat/completions",
    headers: tuple[tuple[str, str], ...] = (),
    ts: float = JAN_2026,
) -> ExchangeFacts:
    return ExchangeFacts(
        flow_id="f1",
        ts_start=ts,
        ts_end=None,
        method="POST",
        scheme=scheme,
        host=host,
        port=port,
        path=path,
        request_headers=headers,
        request_body=None,
        status_code=200,
        response_content_type="application/json",
        response_body=None,
    )


ANTHROPIC = facts("api.anthropic.com", 443, "https", "/v1/messages")


def price(
    f: ExchangeFacts = ANTHROPIC,
    *,
    dialect: str = "anthropic",
    model: str | None = "claude-sonnet-4-5",
    before: CanonicalUsage | None = None,
    after: CanonicalUsage | None = None,
    **kw: Any,
) -> Any:
    return price_exchange(
        f,
        dialect=dialect,
        model=model,
        usage_before=before,
        usage_after=after,
        upstream_usage=None,
        provider_cost=kw.pop("provider_cost", None),
        **kw,
    )


def rate(model: str, provider: str, key: str, *, tier: bool = False, when: float = JAN_2026) -> Decimal:
    """A component rate of genai-prices' data, per million tokens (its long-context tier if asked)."""
    _, info = get_snapshot().find_provider_model(model, None, provider, None)
    p = getattr(info.get_prices(datetime.fromtimestamp(when, UTC)), key)
    if isinstance(p, TieredPrices):
        return p.tiers[-1].price if tier else p.base
    assert isinstance(p, Decimal) and not tier
    return p


def genai(model: str, provider: str, when: float = JAN_2026, **usage: int) -> Decimal:
    """genai-prices' own price of a (consistent) usage."""
    ts = datetime.fromtimestamp(when, UTC)
    return calc_price(Usage(**usage), model, provider_id=provider, genai_request_timestamp=ts).total_price


# The founding bug (R1): a CLI proxy on localhost serving Claude in the OpenAI dialect reported
# prompt_tokens 1678 beside cached_tokens 105530; usagefix sends prompt_tokens 107208.
FOUNDING_BEFORE = CanonicalUsage(input_total=1678, cache_read=105530, output_total=370)
FOUNDING_AFTER = CanonicalUsage(input_total=107208, cache_read=105530, output_total=370)


def test_the_founding_bugs_block_costs_a_negative_amount_before_and_the_real_price_after() -> None:
    costs = price(
        facts(),
        dialect="openai_chat",
        model="claude-sonnet-4-5-20250929",
        before=FOUNDING_BEFORE,
        after=FOUNDING_AFTER,
    )
    r = {
        k: rate("claude-sonnet-4-5", "anthropic", k) for k in ("input_mtok", "cache_read_mtok", "output_mtok")
    }
    # What LiteLLM's and Langfuse's OpenAI arithmetic makes of it: (prompt - cached) x input + ...
    expected = (
        (1678 - 105530) * r["input_mtok"] + 105530 * r["cache_read_mtok"] + 370 * r["output_mtok"]
    ) / MTOK
    assert costs.before == expected == Decimal("-0.274347")  # genai-prices 0.2.3's rates
    assert costs.before < 0
    assert costs.after == genai(
        "claude-sonnet-4-5", "anthropic", input_tokens=107208, cache_read_tokens=105530, output_tokens=370
    )
    assert costs.after > 0
    assert (costs.match, costs.model_id, costs.provider_id) == ("model", "claude-sonnet-4-5", "anthropic")
    assert costs.source == SOURCE == "genai-prices 0.2.3"
    assert costs.flags == ()
    assert isinstance(costs.before, Decimal) and isinstance(costs.after, Decimal)


def test_genai_prices_itself_refuses_the_founding_bugs_block() -> None:
    # Why cost before is computed from the rates: calc_price raises on a part above its headline.
    with pytest.raises(ValueError, match="cannot exceed"):
        genai(
            "claude-sonnet-4-5", "anthropic", input_tokens=1678, cache_read_tokens=105530, output_tokens=370
        )


def test_an_exclusive_anthropic_block_costs_what_its_own_arithmetic_says() -> None:
    # Raw block: input_tokens 3, cache_read 9511, cache_creation 1200 (5m), output 1944. Ingest
    # made input_total their sum; the consumer bills each part beside the others.
    u = CanonicalUsage(
        input_total=3 + 9511 + 1200,
        cache_read=9511,
        cache_write=1200,
        cache_write_5m=1200,
        cache_write_1h=0,
        output_total=1944,
    )
    costs = price(before=u, after=u)
    r = {
        k: rate("claude-sonnet-4-5", "anthropic", k)
        for k in ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
    }
    raw = (
        3 * r["input_mtok"]
        + 9511 * r["cache_read_mtok"]
        + 1200 * r["cache_write_mtok"]
        + 1944 * r["output_mtok"]
    ) / MTOK
    assert costs.before == costs.after == raw
    assert costs.match == "url" and costs.flags == ()


def test_one_hour_cache_writes_cost_the_one_hour_rate_and_five_minute_ones_the_five_minute_rate() -> None:
    def written(w5: int, w1: int) -> CanonicalUsage:
        return CanonicalUsage(
            input_total=10 + w5 + w1,
            cache_write=w5 + w1,
            cache_write_5m=w5,
            cache_write_1h=w1,
            output_total=5,
        )

    one_hour, five_min = price(after=written(0, 2000)).after, price(after=written(2000, 0)).after
    w1h, w5m = (
        rate("claude-sonnet-4-5", "anthropic", "cache_write_1h_mtok"),
        rate("claude-sonnet-4-5", "anthropic", "cache_write_mtok"),
    )
    assert (w1h, w5m) == (Decimal(6), Decimal("3.75"))  # Claude Code writes with the 1h TTL: 60% more
    assert one_hour - five_min == 2000 * (w1h - w5m) / MTOK
    mixed = price(before=written(500, 1500), after=written(500, 1500))
    assert mixed.after == mixed.before == genai(
        "claude-sonnet-4-5", "anthropic", input_tokens=2010, cache_write_tokens=2000,
        cache_write_5m_tokens=500, cache_write_1h_tokens=1500, output_tokens=5,
    )  # fmt: skip
    assert mixed.flags == ()


def test_writes_without_their_ttl_split_are_priced_at_five_minutes_and_flagged() -> None:
    unsplit = CanonicalUsage(input_total=2010, cache_write=2000, output_total=5)
    costs = price(before=unsplit, after=unsplit)
    five = CanonicalUsage(
        input_total=2010, cache_write=2000, cache_write_5m=2000, cache_write_1h=0, output_total=5
    )
    assert costs.after == costs.before == price(after=five).after
    assert costs.flags == ("cache_ttl_unknown",)
    # A split covering part of the writes: the rest is priced at 5m, and flagged.
    part = CanonicalUsage(input_total=2010, cache_write=2000, cache_write_1h=1500, output_total=5)
    assert price(after=part).flags == ("cache_ttl_unknown",)
    # A split larger than the writes (an upstream's mismatch): ignored, all at 5m, flagged.
    over = CanonicalUsage(
        input_total=2010, cache_write=2000, cache_write_5m=1800, cache_write_1h=900, output_total=5
    )
    assert (price(before=over, after=over).after, price(after=over).flags) == (
        costs.after,
        ("cache_ttl_unknown",),
    )
    # A split of writes no headline counts: those tokens are in no input either; nothing to price.
    orphan = CanonicalUsage(input_total=10, cache_write_1h=700, output_total=5)
    plain = CanonicalUsage(input_total=10, output_total=5)
    assert price(before=orphan, after=orphan).after == price(after=plain).after
    # A model with one write price for every TTL: the TTL changes nothing, nothing is flagged.
    openai = facts("api.openai.com", 443, "https", "/v1/chat/completions")
    assert price(openai, dialect="openai_chat", model="gpt-5", before=unsplit, after=unsplit).flags == ()
    # No writes at all: nothing unknown.
    assert price(after=CanonicalUsage(input_total=10, cache_write=0, output_total=5)).flags == ()


@pytest.mark.parametrize(
    ("model", "f", "dialect"),
    [
        ("no-such-model-9000", ANTHROPIC, "anthropic"),
        ("no-such-model-9000", facts(), "openai_chat"),
        (None, facts(), "openai_chat"),
    ],
)
def test_an_unknown_model_is_unpriced_never_zero(model: str | None, f: ExchangeFacts, dialect: str) -> None:
    costs = price(
        f,
        dialect=dialect,
        model=model,
        before=FOUNDING_AFTER,
        after=FOUNDING_AFTER,
        provider_cost=Decimal("0.5"),
    )
    assert (costs.before, costs.after, costs.match, costs.model_id, costs.provider_id) == (None,) * 5
    assert costs.flags == ("unpriced",)
    assert costs.provider == Decimal("0.5")  # the provider's own word is kept, priced or not
    assert (costs.context_window, costs.context_window_source) == (None, None)


def test_unmeasured_usage_is_unpriced_never_zero() -> None:
    costs = price()
    assert (costs.before, costs.after, costs.flags) == (None, None, ("unpriced",))
    assert costs.model_id == "claude-sonnet-4-5" and costs.context_window == 200_000
    only_after = price(after=FOUNDING_AFTER)
    assert only_after.before is None and only_after.after is not None and only_after.flags == ()


def test_the_providers_reported_cost_is_kept_untouched() -> None:
    reported = Decimal("0.000123456789")
    costs = price(facts("openrouter.ai", 443, "https", "/api/v1/chat/completions"), dialect="openai_chat",
                  model="anthropic/claude-sonnet-4.5", after=FOUNDING_AFTER, provider_cost=reported)  # fmt: skip
    assert costs.provider is reported
    assert (costs.match, costs.provider_id, costs.model_id) == (
        "url",
        "openrouter",
        "anthropic/claude-sonnet-4.5",
    )


def test_long_context_tiers_apply_to_each_reading_by_its_own_input() -> None:
    # Before: 150k input (base rates); after: 250k input, past the 200k cliff, so every token of
    # the request is priced at the long-context rates, as genai-prices does.
    before = CanonicalUsage(input_total=150_000, cache_read=100_000, output_total=1000)
    after = CanonicalUsage(input_total=250_000, cache_read=100_000, output_total=1000)
    costs = price(before=before, after=after)
    r = {
        k: rate("claude-sonnet-4-5", "anthropic", k) for k in ("input_mtok", "cache_read_mtok", "output_mtok")
    }
    t = {k: rate("claude-sonnet-4-5", "anthropic", k, tier=True) for k in r}
    assert (
        costs.before
        == (50_000 * r["input_mtok"] + 100_000 * r["cache_read_mtok"] + 1000 * r["output_mtok"]) / MTOK
    )
    assert (
        costs.after
        == (150_000 * t["input_mtok"] + 100_000 * t["cache_read_mtok"] + 1000 * t["output_mtok"]) / MTOK
    )
    assert costs.after == genai(
        "claude-sonnet-4-5", "anthropic", input_tokens=250_000, cache_read_tokens=100_000, output_tokens=1000
    )
    assert t["input_mtok"] == 2 * r["input_mtok"]


def test_prices_are_those_in_force_on_the_day_of_the_request() -> None:
    # genai-prices dates Anthropic's Opus 4.6 price change: before 2026-03-13, input past 200k
    # cost the long-context rate; from then on, one flat rate.
    u = CanonicalUsage(input_total=250_000, output_total=1000)
    earlier = price(
        facts(ts=datetime(2026, 3, 1, tzinfo=UTC).timestamp()),
        dialect="anthropic",
        model="claude-opus-4-6",
        before=u,
        after=u,
    )
    later = price(
        facts(ts=datetime(2026, 4, 1, tzinfo=UTC).timestamp()),
        dialect="anthropic",
        model="claude-opus-4-6",
        before=u,
        after=u,
    )
    assert earlier.after == earlier.before == (250_000 * Decimal(10) + 1000 * Decimal("37.5")) / MTOK
    assert later.after == later.before == (250_000 * Decimal(5) + 1000 * Decimal(25)) / MTOK


def test_gemini_cache_beyond_the_prompt_costs_negative_before() -> None:
    # R1 for Gemini: cachedContentTokenCount above promptTokenCount (a translator left it out).
    before = CanonicalUsage(input_total=100, cache_read=5000, output_total=20)
    after = CanonicalUsage(input_total=5100, cache_read=5000, output_total=20)
    f = facts(
        "generativelanguage.googleapis.com", 443, "https", "/v1beta/models/gemini-2.5-flash:generateContent"
    )
    costs = price(f, dialect="gemini", model="gemini-2.5-flash", before=before, after=after)
    assert costs.before is not None and costs.before < 0 < costs.after
    assert (costs.match, costs.provider_id) == ("url", "google")


def test_reasoning_priced_apart_and_per_request_prices_follow_genai_prices() -> None:
    u = CanonicalUsage(input_total=1000, output_total=800, reasoning=300)
    f = facts("api.perplexity.ai", 443, "https", "/chat/completions")
    deep = price(f, dialect="openai_chat", model="sonar-deep-research", before=u, after=u)
    assert (
        deep.before
        == deep.after
        == genai(
            "sonar-deep-research",
            "perplexity",
            input_tokens=1000,
            output_tokens=800,
            output_reasoning_tokens=300,
        )
    )
    sonar = price(f, dialect="openai_chat", model="sonar", before=u, after=u)
    assert sonar.before == sonar.after == (1000 + 800) * Decimal(1) / MTOK + Decimal(12) / 1000


def test_a_corrected_reading_still_inconsistent_is_unpriced_and_flagged() -> None:
    broken = CanonicalUsage(input_total=10, cache_read=50, output_total=5)  # I1 still broken
    costs = price(before=broken, after=broken)
    assert costs.after is None and costs.before is not None
    assert costs.flags == ("usage_inconsistent", "unpriced")


def test_tokens_of_no_known_kind_are_flagged_not_priced() -> None:
    u = CanonicalUsage(input_total=100, output_total=10, unattributed=40)
    costs = price(after=u)
    assert costs.after == price(after=CanonicalUsage(input_total=100, output_total=10)).after
    assert costs.flags == ("unattributed_unpriced",)


def test_an_override_that_cannot_price_the_name_says_so_and_the_chain_goes_on() -> None:
    table = PriceOverrides(price=(PriceOverride(model="claude-*", provider="openai"),))
    costs = price(after=FOUNDING_AFTER, overrides=table)
    assert costs.flags == ("override_unresolved",)
    assert costs.match == "url" and costs.after is not None


def test_an_override_prices_a_name_genai_prices_does_not_know() -> None:
    table = PriceOverrides(
        price=(PriceOverride(model="house-sonnet", price_as="claude-sonnet-4-5", provider="anthropic"),)
    )
    costs = price(
        facts(),
        dialect="openai_chat",
        model="house-sonnet",
        before=FOUNDING_AFTER,
        after=FOUNDING_AFTER,
        overrides=table,
    )
    assert (costs.match, costs.model_id, costs.flags) == ("override", "claude-sonnet-4-5", ())
    assert costs.after == price(after=FOUNDING_AFTER).after


# Context windows -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "headers", "window", "source"),
    [
        ("claude-sonnet-4-5", (), 200_000, "genai-prices"),
        (
            "claude-sonnet-4-5",
            (("Anthropic-Beta", "prompt-caching-2024-07-31,context-1m-2025-08-07"),),
            1_000_000,
            "anthropic-beta",
        ),
        ("claude-sonnet-4-5", (("anthropic-beta", "claude-code-20250219"),), 200_000, "genai-prices"),
        ("claude-sonnet-4-5[1m]", (), 1_000_000, "model-suffix"),
        ("claude-opus-4-6", (("anthropic-beta", "context-1m-2025-08-07"),), 1_000_000, "genai-prices"),
        ("gemini-2.5-pro", (), None, None),  # genai-prices has no window for it: no guess
        ("no-such-model[1m]", (), 1_000_000, "model-suffix"),
        ("no-such-model", (("anthropic-beta", "context-1m-2025-08-07"),), 1_000_000, "anthropic-beta"),
    ],
)
def test_the_context_window_comes_from_genai_prices_raised_by_the_1m_beta(
    model: str, headers: tuple[tuple[str, str], ...], window: int | None, source: str | None
) -> None:
    costs = price(facts(headers=headers), dialect="openai_chat", model=model)
    assert (costs.context_window, costs.context_window_source) == (window, source)


def test_the_1m_beta_never_lowers_a_larger_window() -> None:
    f = facts(
        "bedrock-runtime.us-east-1.amazonaws.com",
        443,
        "https",
        headers=(("anthropic-beta", "context-1m-2025-08-07"),),
    )
    costs = price(f, dialect="bedrock", model="meta.llama4-scout-17b-instruct-v1:0")
    assert (costs.context_window, costs.context_window_source) == (10_000_000, "genai-prices")


def test_an_override_sets_the_context_window_alone() -> None:
    table = PriceOverrides(price=(PriceOverride(model="gemini-2.5-pro", context_window=1_048_576),))
    costs = price(facts(), dialect="gemini", model="gemini-2.5-pro", after=FOUNDING_AFTER, overrides=table)
    assert (costs.context_window, costs.context_window_source) == (1_048_576, "override")
    assert (costs.match, costs.flags) == ("provider", ())  # the prices still come from the chain


# Properties ------------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=2_000_000)
maybe = st.none() | counts


@st.composite
def readings(draw: st.DrawFn, consistent: bool = False) -> CanonicalUsage:
    """Any reading (broken ones too), or one whose parts fit their headlines (I1, I2)."""
    if not consistent:
        return CanonicalUsage(
            input_total=draw(counts), cache_read=draw(maybe), cache_write=draw(maybe),
            cache_write_5m=draw(maybe), cache_write_1h=draw(maybe), output_total=draw(counts),
            reasoning=draw(maybe), unattributed=draw(maybe),
        )  # fmt: skip
    read, w5, w1, uncached = (draw(counts) for _ in range(4))
    split = draw(st.booleans())
    reasoning = draw(maybe)
    output = draw(counts) + (reasoning or 0)
    return CanonicalUsage(
        input_total=uncached + read + w5 + w1, cache_read=read, cache_write=w5 + w1,
        cache_write_5m=w5 if split else None, cache_write_1h=w1 if split else None,
        output_total=output, reasoning=reasoning,
    )  # fmt: skip


PRICED = [(p, m) for p in get_snapshot().providers for m in p.models]


@given(st.sampled_from(PRICED), readings(consistent=True))
def test_cost_before_of_a_consistent_reading_is_genai_prices_own_price(pm: Any, u: CanonicalUsage) -> None:
    # The rate arithmetic of cost before is genai-prices' own, wherever the block is not broken:
    # they differ only where genai-prices refuses (a part above its headline). Every model of
    # every provider of the bundled data may be drawn.
    p, info = pm
    when = datetime.fromtimestamp(JAN_2026, UTC)
    before = _reading_cost(u, info.get_prices(when), [])
    usage = {"input_tokens": u.input_total, "output_tokens": u.output_total, "cache_read_tokens": u.cache_read or 0,
             "cache_write_tokens": u.cache_write or 0, "cache_write_5m_tokens": u.cache_write_5m or 0,
             "cache_write_1h_tokens": u.cache_write_1h or 0, "output_reasoning_tokens": u.reasoning or 0}  # fmt: skip
    assert before == info.calc_price(Usage(**usage), p, genai_request_timestamp=when).total_price


@given(readings(), st.sampled_from(["claude-sonnet-4-5", "gpt-5", "gemini-2.5-pro", "deepseek-chat", "nope"]))
def test_cost_after_is_never_negative_and_unknown_usage_is_never_priced(
    u: CanonicalUsage, model: str
) -> None:
    costs = price(facts(), dialect="openai_chat", model=model, before=u, after=u)
    assert costs.after is None or costs.after >= 0
    assert (costs.after is None) == ("unpriced" in costs.flags)
    assert (costs.before is None) == (model == "nope")
    unmeasured = price(facts(), dialect="openai_chat", model=model, before=None, after=None)
    assert (unmeasured.before, unmeasured.after) == (None, None) and "unpriced" in unmeasured.flags


def test_a_thousand_exchanges_resolve_their_model_once() -> None:
    # Each exchange of a loop names the same model at the same upstream: the chain runs once, so
    # pricing costs genai-prices' calc_price and our rate arithmetic only (about 0.5 ms an
    # exchange on an idle core: see the README's Prices section; not timed here, on a shared
    # machine under coverage tracing).
    def one() -> Any:
        return price(facts(), dialect="openai_chat", model="claude-sonnet-4-5-20250929",
                     before=FOUNDING_BEFORE, after=FOUNDING_AFTER)  # fmt: skip

    first = one()
    misses = _resolve.cache_info().misses
    assert all(one() == first for _ in range(1000))
    assert _resolve.cache_info().misses == misses


def test_prices_come_from_the_bundled_data_never_an_update() -> None:
    # genai-prices' auto-update (UpdatePrices) would fetch prices from GitHub: never started.
    price(after=FOUNDING_AFTER)
    assert get_snapshot().from_auto_update is False
    assert data_snapshot._custom_snapshot is None
