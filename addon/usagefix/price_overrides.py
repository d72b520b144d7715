"""The user's price overrides: a TOML file (option `usage_prices`) saying how to price a model
that genai-prices does not know by the name it has on the wire, or knows under another. Pure.

    [[price]]
    model = "cliproxy-sonnet*"        # glob on the model name (case-insensitive)
    host = "127.0.0.1:8317"           # optional glob on host or host:port
    price_as = "claude-sonnet-4-5"    # the genai-prices model to price it as
    provider = "anthropic"            # the genai-prices provider to look it up in
    context_window = 1000000          # its context window, whatever genai-prices says

Each entry names `price_as`, `provider` or `context_window` (or several). The first matching
entry wins, and it wins over every automatic step of the resolver chain (`usagefix.price_models`):
an override is the user's word, the chain is a guess. Names are checked against genai-prices'
bundled data when the file is loaded, so a typo stops mitmdump instead of leaving a model unpriced.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from usagefix.tomlfile import explain, read_toml
from usagefix.userpath import user_path

__all__ = [
    "PriceOverride",
    "PriceOverrideError",
    "PriceOverrides",
    "load_price_overrides",
    "overrides_from_option",
]


class PriceOverride(BaseModel):
    """One model (or family of models), and how to price it."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    model: str
    """Glob on the model name as the exchange names it (`claude-*`, `my-gateway/sonnet`)."""
    host: str | None = None
    """Glob on the upstream's `host` or `host:port`; None: any upstream."""
    provider: str | None = None
    """A genai-prices provider id (`anthropic`, `openai`, `aws`, ...) to look the model up in."""
    price_as: str | None = None
    """A genai-prices model id or name to price the model as; None: the model's own name."""
    context_window: PositiveInt | None = None
    """The model's context window in tokens, instead of what genai-prices says (or does not)."""

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, v: str | None) -> str | None:
        from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

        if v is not None and find_provider_by_id(get_snapshot().providers, v) is None:
            raise ValueError(f"{v!r} is not a genai-prices provider")
        return v

    @field_validator("price_as")
    @classmethod
    def _known_model(cls, v: str | None, info: ValidationInfo) -> str | None:
        from genai_prices.data_snapshot import get_snapshot

        if v is None or "provider" not in info.data:
            return v  # (a bad provider is reported on its own)
        provider = info.data["provider"]
        try:
            get_snapshot().find_provider_model(v, None, provider, None)
        except LookupError:
            where = f" of provider {provider!r}" if provider else ""
            raise ValueError(f"{v!r} is not a genai-prices model{where}") from None
        return v

    @model_validator(mode="after")
    def _says_something(self) -> PriceOverride:
        if self.provider is None and self.price_as is None and self.context_window is None:
            raise ValueError("give price_as, provider or context_window")
        return self

    def matches(self, host: str, port: int, model: str) -> bool:
        if self.host is not None and not (
            fnmatch.fnmatchcase(host.lower(), self.host.lower())
            or fnmatch.fnmatchcase(f"{host}:{port}".lower(), self.host.lower())
        ):
            return False
        return fnmatch.fnmatchcase(model.lower(), self.model.lower())


class PriceOverrides(BaseModel):
    """The file's entries, in file order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price: tuple[PriceOverride, ...] = ()

    def match(self, host: str, port: int, model: str | None) -> PriceOverride | None:
        """The first entry for this model at this upstream, if any."""
        if model is None:
            return None
        return next((p for p in self.price if p.matches(host, port, model)), None)


class PriceOverrideError(ValueError):
    """A price file that cannot be used; the message names the file, key and line."""


def load_price_overrides(path: Path) -> PriceOverrides:
    """Read and validate a price override file (one line on any problem)."""
    text, data = read_toml(path, "price overrides", PriceOverrideError)
    try:
        return PriceOverrides.model_validate(data)
    except ValidationError as e:
        raise PriceOverrideError(explain(path, text, e, "price")) from e


def overrides_from_option(value: str | None) -> PriceOverrides | None:
    """The table the `usage_prices` option names (`~` expanded), or None when it names none.
    The option's own check (usagefix.optioncheck) has refused a bad file before this is called."""
    return load_price_overrides(user_path(value)) if value else None
