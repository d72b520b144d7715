"""The model resolver chain: each step, the names clouds and gateways give models, the cache."""

from __future__ import annotations

import pytest

from usagefix.price_models import _resolve, resolve, stripped_names, upstream_url
from usagefix.price_overrides import PriceOverride

LOCAL_CHAT = "http://127.0.0.1:8317/v1/chat/completions"
BEDROCK_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.mark.parametrize(
    ("model", "url", "dialect", "match", "provider", "model_id"),
    [
        # 1. the upstream's URL: Anthropic's own API, Bedrock, OpenRouter, Vertex, Azure.
        ("claude-sonnet-4-5", "https://api.anthropic.com/v1/messages", "anthropic", "url", "anthropic", "claude-sonnet-4-5"),
        (BEDROCK_ID, f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{BEDROCK_ID}/converse", "bedrock",
         "url", "aws", "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("anthropic/claude-sonnet-4.5", "https://openrouter.ai/api/v1/chat/completions", "openai_chat",
         "url", "openrouter", "anthropic/claude-sonnet-4.5"),
        ("claude-sonnet-4-5@20250929",
         "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
         "anthropic", "url", "google", "claude-sonnet-4-5"),
        ("gpt-4o", "https://my.openai.azure.com/openai/deployments/x/chat/completions", "openai_chat", "url", "azure", "gpt-4o"),
        # 2. the dialect's provider: a gateway on localhost serving OpenAI models in OpenAI's dialect.
        ("gpt-5", LOCAL_CHAT, "openai_chat", "provider", "openai", "gpt-5"),
        ("gpt-5", "http://127.0.0.1:4000/v1/responses", "openai_responses", "provider", "openai", "gpt-5"),
        ("claude-sonnet-4-5", "http://127.0.0.1:4000/v1/messages", "anthropic", "provider", "anthropic", "claude-sonnet-4-5"),
        ("gemini-2.5-flash", "http://127.0.0.1:4000/v1beta/models/gemini-2.5-flash:generateContent", "gemini",
         "provider", "google", "gemini-2.5-flash"),
        # 3. the name alone: a CLI proxy serving Claude in the OpenAI dialect prices as Anthropic.
        ("claude-sonnet-4-5-20250929", LOCAL_CHAT, "openai_chat", "model", "anthropic", "claude-sonnet-4-5"),
        ("deepseek-chat", LOCAL_CHAT, "openai_chat", "model", "deepseek", "deepseek-chat"),
        ("claude-sonnet-4-5", None, "unknown-dialect", "model", "anthropic", "claude-sonnet-4-5"),
        # 4. the name without its decoration: a Bedrock id or a vendor/ name through a gateway.
        (BEDROCK_ID, LOCAL_CHAT, "openai_chat", "stripped", "anthropic", "claude-sonnet-4-5"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", LOCAL_CHAT, "openai_chat", "stripped", "anthropic", "claude-sonnet-4-5"),
        ("anthropic/claude-sonnet-4-5", LOCAL_CHAT, "openai_chat", "stripped", "anthropic", "claude-sonnet-4-5"),
        ("openai/gpt-5", "http://127.0.0.1:4000/v1/messages", "anthropic", "stripped", "openai", "gpt-5"),
    ],
)  # fmt: skip
def test_each_step_of_the_chain_and_what_it_matched(
    model: str, url: str | None, dialect: str, match: str, provider: str, model_id: str
) -> None:
    r = resolve(model, url=url, dialect=dialect, override=None)
    assert r is not None
    assert (r.match, r.provider.id, r.model.id) == (match, provider, model_id)


def test_a_name_nothing_knows_is_unresolved() -> None:
    assert resolve("no-such-model-9000", url=LOCAL_CHAT, dialect="openai_chat", override=None) is None
    assert resolve("glm-4.6", url=LOCAL_CHAT, dialect="openai_chat", override=None) is None  # a known gap


def test_an_override_comes_first_and_can_name_the_model_the_provider_or_both() -> None:
    both = PriceOverride(model="house-*", price_as="claude-sonnet-4-5", provider="anthropic")
    r = resolve("house-sonnet", url=LOCAL_CHAT, dialect="openai_chat", override=both)
    assert r is not None and (r.match, r.provider.id, r.model.id) == (
        "override",
        "anthropic",
        "claude-sonnet-4-5",
    )
    # Provider only: the wire name, looked up there (glm-4.6 is Z.ai's, not Zhipu's as guessed).
    zai = PriceOverride(model="glm-*", provider="zai")
    r = resolve("glm-4.6", url=LOCAL_CHAT, dialect="openai_chat", override=zai)
    assert r is not None and (r.match, r.provider.id, r.model.id) == ("override", "zai", "GLM-4.6")
    # Wins over what the URL would say: Bedrock's id, priced as Anthropic's own API.
    direct = PriceOverride(model="*claude*", price_as="claude-sonnet-4-5", provider="anthropic")
    bedrock = f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{BEDROCK_ID}/converse"
    r = resolve(BEDROCK_ID, url=bedrock, dialect="bedrock", override=direct)
    assert r is not None and (r.match, r.provider.id) == ("override", "anthropic")
    # Model only: the name genai-prices knows, found by the chain's own provider search.
    model_only = PriceOverride(model="house-gpt", price_as="gpt-5")
    r = resolve("house-gpt", url=LOCAL_CHAT, dialect="openai_chat", override=model_only)
    assert r is not None and (r.match, r.provider.id, r.model.id) == ("override", "openai", "gpt-5")


def test_an_override_of_the_context_window_alone_leaves_the_chain_to_price() -> None:
    window_only = PriceOverride(model="gpt-5", context_window=123)
    r = resolve("gpt-5", url=LOCAL_CHAT, dialect="openai_chat", override=window_only)
    assert r is not None and r.match == "provider"


@pytest.mark.parametrize(
    ("name", "stripped"),
    [
        (BEDROCK_ID, ["anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"]),
        ("claude-opus-4-6[1m]", ["claude-opus-4-6"]),
        ("openrouter/anthropic/claude-sonnet-4.5", ["claude-sonnet-4.5"]),
        ("claude-sonnet-4@20250514", ["claude-sonnet-4-20250514"]),
        ("meta.llama3-70b-instruct-v1:0", ["llama3-70b-instruct-v1:0", "llama3-70b-instruct"]),
        # Dots inside a version are not a vendor's namespace.
        ("gpt-4.1", []),
        ("gemini-2.5-pro", []),
        ("glm-4.6", []),
    ],
)  # fmt: skip
def test_the_names_tried_without_their_decoration(name: str, stripped: list[str]) -> None:
    assert stripped_names(name) == stripped


@pytest.mark.parametrize(
    ("scheme", "host", "port", "path", "url"),
    [
        (
            "https",
            "api.anthropic.com",
            443,
            "/v1/messages?beta=true",
            "https://api.anthropic.com/v1/messages",
        ),
        ("http", "127.0.0.1", 8317, "/v1/chat/completions", "http://127.0.0.1:8317/v1/chat/completions"),
        ("http", "example.com", 80, "/x", "http://example.com/x"),
        ("https", "example.com", 8443, "/x", "https://example.com:8443/x"),
    ],
)
def test_the_url_the_provider_patterns_see(scheme: str, host: str, port: int, path: str, url: str) -> None:
    assert upstream_url(scheme, host, port, path) == url


def test_a_resolution_is_cached_per_upstream_dialect_and_model() -> None:
    resolve("claude-sonnet-4-5-20250929", url=LOCAL_CHAT, dialect="openai_chat", override=None)
    hits = _resolve.cache_info().hits
    first = resolve("claude-sonnet-4-5-20250929", url=LOCAL_CHAT, dialect="openai_chat", override=None)
    assert _resolve.cache_info().hits == hits + 1
    # Another dialect is another resolution.
    other = resolve("claude-sonnet-4-5-20250929", url=LOCAL_CHAT, dialect="anthropic", override=None)
    assert first is not None and other is not None and (first.match, other.match) == ("model", "provider")


def test_every_dialects_price_provider_is_one_genai_prices_knows() -> None:
    from genai_prices.data_snapshot import get_snapshot

    from usagefix.dialects import SPECS

    known = {p.id for p in get_snapshot().providers}
    assert all(s.price_provider is None or s.price_provider in known for s in SPECS.values())


def test_the_one_module_providers_price_by_their_spec() -> None:
    # Cohere's own provider, from its spec, for a gateway on localhost speaking its dialect.
    r = resolve("command-a-03-2025", url="http://127.0.0.1:8080/v2/chat", dialect="cohere", override=None)
    assert r is not None and (r.match, r.provider.id, r.model.id) == ("provider", "cohere", "command-a")
    r = resolve(
        "gpt-realtime", url="http://127.0.0.1:8080/v1/realtime", dialect="openai_realtime", override=None
    )
    assert r is not None and (r.match, r.provider.id) == ("provider", "openai")
    # Ollama has no provider: a local model is unpriced, unless the user's price file names it.
    local = "http://127.0.0.1:11434/api/chat"
    assert resolve("qwen3:8b", url=local, dialect="ollama", override=None) is None
    # Nor by a name genai-prices knows: a local 7B distill is not the hosted model's price.
    assert resolve("deepseek-r1:7b", url=local, dialect="ollama", override=None) is None
    assert resolve("deepseek-r1:7b", url=None, dialect="openai_chat", override=None) is not None
    named = PriceOverride(model="qwen3*", price_as="gpt-4o-mini", provider="openai")
    r = resolve("qwen3:8b", url=local, dialect="ollama", override=named)
    assert r is not None and (r.match, r.provider.id, r.model.id) == ("override", "openai", "gpt-4o-mini")
