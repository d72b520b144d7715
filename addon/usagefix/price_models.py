"""Which genai-prices model an exchange's model name means, and its context window. Pure.

genai-prices (pydantic's maintained price table, bundled data only: its auto-update is never
enabled, nothing here touches the network) matches a model reference within one provider. The
same model reaches the proxy under many names and through many doors, so the reference is tried
through a chain, and the step that matched is recorded (`Costs.match`):

1. `override` - the user's `usage_prices` file says what the model is (its word beats a guess);
2. `url` - the upstream's own URL (`https://api.anthropic.com/...`, Bedrock, Vertex, OpenRouter,
   Azure with its fallback to OpenAI's and Anthropic's models);
3. `provider` - the dialect's own genai-prices provider (its spec's `price_provider`): a gateway
   on localhost speaking the OpenAI dialect serves OpenAI models at OpenAI's prices;
4. `model` - the name alone: genai-prices finds the provider by the name (`claude-*` is
   Anthropic's), so a CLI proxy serving Claude in the OpenAI dialect still prices as Anthropic
   (not for a dialect of local models, its spec's `priced_by_name` False: Ollama's);
5. `stripped` - the name without what gateways and clouds put around it: a vendor prefix
   (`anthropic/`, `anthropic.`), a region prefix (`us.`, `global.`), Bedrock's version suffix
   (`-v1:0`), Vertex's `@date`, Claude Code's `[1m]`.

Resolutions are cached per (upstream URL, dialect, model, override): the chain's misses cost
genai-prices a scan of every model of a provider, and an exchange's model repeats.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelInfo, Provider

from usagefix.dialects import SPECS
from usagefix.price_overrides import PriceOverride

__all__ = ["ONE_MILLION", "Resolved", "context_window", "resolve", "stripped_names", "upstream_url"]

ONE_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Resolved:
    provider: Provider
    model: ModelInfo
    match: str
    """`override`, `url`, `provider`, `model` or `stripped`."""


def upstream_url(scheme: str, host: str, port: int, path: str) -> str:
    """The URL genai-prices' provider patterns are written against: no default port, no query."""
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{path.split('?', 1)[0]}"


def resolve(model: str, *, url: str | None, dialect: str, override: PriceOverride | None) -> Resolved | None:
    """The genai-prices model for `model` seen at `url` in `dialect`, or None: unpriced."""
    return _resolve(model, url, dialect, override)


@functools.lru_cache(maxsize=4096)
def _resolve(model: str, url: str | None, dialect: str, override: PriceOverride | None) -> Resolved | None:
    if override is not None and (override.price_as or override.provider):
        found = _find(override.price_as or model, provider_id=override.provider)
        if found:
            return Resolved(*found, "override")
        # The entry cannot price this name (its glob matched more than its provider holds):
        # the automatic steps still may.
    if url is not None and (found := _find(model, url=url)):
        return Resolved(*found, "url")
    spec = SPECS.get(dialect)
    provider = spec.price_provider if spec is not None else None
    if provider is not None and (found := _find(model, provider_id=provider)):
        return Resolved(*found, "provider")
    if spec is not None and not spec.priced_by_name:
        return None  # local models (Ollama): a known name is not what they cost
    if found := _find(model):
        return Resolved(*found, "model")
    for name in stripped_names(model):
        if found := _find(name):
            return Resolved(*found, "stripped")
    return None


def _find(
    ref: str, *, provider_id: str | None = None, url: str | None = None
) -> tuple[Provider, ModelInfo] | None:
    try:
        return get_snapshot().find_provider_model(ref, None, provider_id, url)
    except LookupError:
        return None


# What clouds and gateways put around a model's name, peeled one layer at a time.
_ONE_M = re.compile(r"\[1m\]$", re.IGNORECASE)  # Claude Code's 1M-context alias: `claude-opus-4-6[1m]`
_PATH = re.compile(r"^.*/")  # `anthropic/claude-sonnet-4.5`, `openrouter/anthropic/...`, `models/gemini-...`
# Bedrock cross-region inference profiles: `us.`, `eu.`, `apac.`, `global.`, `us-gov.`, ...
_REGION = re.compile(r"^(?:us|eu|apac|ap|global|jp|au|ca|us-gov)\.", re.IGNORECASE)
# Bedrock's vendor namespace: `anthropic.claude-...`, `meta.llama3-...`, `amazon.nova-...`.
_VENDOR = re.compile(r"^[a-z0-9-]+\.(?=[a-z])", re.IGNORECASE)
_VERSION = re.compile(r"-v\d+(?::\d+)?$")  # Bedrock's model version: `-v1:0`, `-v2`
_AT_DATE = re.compile(r"@(\d{8})$")  # Vertex: `claude-sonnet-4@20250514`


def stripped_names(model: str) -> list[str]:
    """`model` with one more layer of decoration removed each time, most specific first."""
    out: list[str] = []
    name = model.strip()
    for pattern, repl in (
        (_ONE_M, ""),
        (_PATH, ""),
        (_REGION, ""),
        (_VENDOR, ""),
        (_VERSION, ""),
        (_AT_DATE, r"-\1"),
    ):
        new = pattern.sub(repl, name)
        if new and new != name:
            name = new
            out.append(name)
    return out


def context_window(
    resolved: Resolved | None,
    model: str | None,
    request_headers: tuple[tuple[str, str], ...],
    override: PriceOverride | None,
) -> tuple[int | None, str | None]:
    """The model's context window and where it comes from; (None, None) when nothing says (no guess).

    genai-prices' `context_window`, raised to 1,000,000 by what turns on Anthropic's 1M-context
    beta: an `anthropic-beta` request header holding `context-1m-...`, or Claude Code's `[1m]`
    model suffix. A window in the user's override wins over all of them.
    """
    if override is not None and override.context_window is not None:
        return override.context_window, "override"
    window = resolved.model.context_window if resolved is not None else None
    source = "genai-prices" if window is not None else None
    if window is None or window < ONE_MILLION:
        beta = any(k.lower() == "anthropic-beta" and "context-1m-" in v.lower() for k, v in request_headers)
        if beta:
            return ONE_MILLION, "anthropic-beta"
        if model is not None and _ONE_M.search(model.strip()):
            return ONE_MILLION, "model-suffix"
    return window, source
