"""Upstream profiles: what an upstream gets wrong, for what cannot be proven from one response.

A profile matches requests by host, path and model (shell-style globs) and may force a dialect and
declare how the upstream counts. Users write them in a TOML file named by the `usage_profiles`
option; built-in ones cover the known cases of the reference (usage-semantics §5, §6.6):

    [[profile]]
    name = "cliproxy-claude"
    host = "127.0.0.1:8317"
    model = "claude-*"
    prompt_cache_reads = "excluded"   # prompt_tokens leaves cache reads out: R1 even when they fit
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from usagefix.tomlfile import explain, read_toml

__all__ = ["BUILTIN_PROFILES", "Profile", "ProfileError", "ProfileSet", "load_profiles"]

Counting = Literal["included", "excluded"]


def _known_dialect(name: str) -> str:
    """A dialect the registry knows (imported here: the dialects import profiles)."""
    from usagefix.dialects.registry import NAMES

    if name not in NAMES:
        raise ValueError(f"Input should be {', '.join(repr(n) for n in NAMES)}")
    return name


DialectName = Annotated[str, AfterValidator(_known_dialect)]


class Profile(BaseModel):
    """One upstream, and how it counts where a response alone cannot tell."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str
    """Shown in records (`profile`) and logs."""
    host: str | None = None
    """Glob on `host` or `host:port` (`api.x.ai`, `127.0.0.1:8317`, `*.openai.azure.com`): the name the
    client asked for (Host header, TLS SNI) or the address connected to. In transparent mode the
    address is the destination IP, so the name is what a profile written for a host matches."""
    path: str | None = None
    """Glob on the request path without its query (e.g. `*/chat/completions`)."""
    model: str | None = None
    """Glob on the request body's `model` (e.g. `claude-*`)."""
    dialect: DialectName | None = None
    """Force this dialect instead of detecting it from the path."""
    prompt_cache_reads: Counting | None = None
    """Whether the upstream's prompt/input count includes cache reads. `excluded` makes R1 apply
    even when the cache reads fit inside the prompt count (the ambiguous case)."""
    prompt_cache_writes: Counting | None = None
    """Whether the prompt/input count includes cache writes. `excluded` makes R2 apply always."""
    completion_reasoning: Counting | None = None
    """Whether the completion/output count includes reasoning. `excluded` adds reasoning (R5)."""
    observe_only: bool = False
    """Record usage, never rewrite it."""

    def matches(
        self,
        host: str,
        port: int,
        path: str,
        model: str | None,
        *,
        any_model: bool = False,
        names: tuple[str, ...] = (),
    ) -> bool:
        """`names`: other names for the host (the Host header's, the SNI), tried after `host`."""
        if self.host is not None:
            glob = self.host.lower()
            if not any(
                fnmatch.fnmatchcase(h.lower(), glob) or fnmatch.fnmatchcase(f"{h}:{port}".lower(), glob)
                for h in (host, *names)
            ):
                return False
        if self.path is not None and not fnmatch.fnmatchcase(path.split("?", 1)[0], self.path):
            return False
        if any_model or self.model is None:
            return True
        return model is not None and fnmatch.fnmatchcase(model, self.model)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: list[Profile] = []


BUILTIN_PROFILES: tuple[Profile, ...] = (
    # xAI's own Chat API reports reasoning beside completion_tokens (§5); through OpenRouter it
    # does not, nor does xAI's Responses API (reasoning inside output_tokens, total = input + output).
    Profile(name="xai", host="api.x.ai", path="*/chat/completions", completion_reasoning="excluded"),
    Profile(
        name="openai", host="api.openai.com", prompt_cache_reads="included", completion_reasoning="included"
    ),
    Profile(
        name="openrouter",
        host="openrouter.ai",
        prompt_cache_reads="included",
        completion_reasoning="included",
    ),
    Profile(name="deepseek", host="api.deepseek.com", prompt_cache_reads="included"),
    Profile(name="azure-openai", host="*.openai.azure.com", prompt_cache_reads="included"),
)


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file, key and line."""


def load_profiles(path: Path) -> list[Profile]:
    """Read and validate a profile file."""
    text, data = read_toml(path, "usage profiles", ProfileError)
    try:
        return _File.model_validate(data).profile
    except ValidationError as e:
        raise ProfileError(explain(path, text, e, "profile")) from e


class ProfileSet:
    """User profiles first (in file order), then the built-in ones; the first match wins."""

    def __init__(self, user: list[Profile] | None = None) -> None:
        self.profiles = [*(user or []), *BUILTIN_PROFILES]

    def match(
        self, host: str, port: int, path: str, model: str | None, names: tuple[str, ...] = ()
    ) -> Profile | None:
        return next((p for p in self.profiles if p.matches(host, port, path, model, names=names)), None)

    def may_set_dialect(self, host: str, port: int, path: str, names: tuple[str, ...] = ()) -> bool:
        """Whether a profile that forces a dialect could match, whatever the model."""
        return any(
            p.dialect and p.matches(host, port, path, None, any_model=True, names=names)
            for p in self.profiles
        )
