"""The dialect registry: every dialect module's `SPEC` and `DIALECT`, and what derives from them.

A dialect is one module of `usagefix.dialects` that declares `SPEC` (a `DialectSpec`) and
`DIALECT` (the code for its oddities); the registry finds them, so adding a provider touches its
own module (and its golden files) and nothing else. Routing (`detect`, `framing_for`), the profile
dialect names, the golden corpus's suffix map and the README's dialect table derive from here.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import MappingProxyType, ModuleType
from typing import cast

from usagefix.dialects.base import Dialect
from usagefix.dialects.readers import NO_READERS, Readers
from usagefix.dialects.spec import DialectSpec
from usagefix.framing import Framing

__all__ = [
    "DIALECTS",
    "FILE_SUFFIXES",
    "NAMES",
    "READERS",
    "SPECS",
    "detect",
    "detect_websocket",
    "framing_for",
    "spec_modules",
]


def spec_modules() -> list[ModuleType]:
    """The dialect modules, in the order of their specs' `rank`."""
    package = importlib.import_module("usagefix.dialects")
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"usagefix.dialects.{info.name}")
        if isinstance(getattr(module, "SPEC", None), DialectSpec) and hasattr(module, "DIALECT"):
            found.append(module)
    return sorted(found, key=lambda m: cast(DialectSpec, m.SPEC).rank)


_MODULES = spec_modules()
SPECS: MappingProxyType[str, DialectSpec] = MappingProxyType({m.SPEC.name: m.SPEC for m in _MODULES})
DIALECTS: MappingProxyType[str, Dialect] = MappingProxyType(
    {m.SPEC.name: cast(Dialect, m.DIALECT) for m in _MODULES}
)
NAMES: tuple[str, ...] = tuple(SPECS)
"""Every dialect's name, for the profiles' `dialect` key."""


def _readers(module: ModuleType) -> Readers:
    readers = getattr(module, "READERS", NO_READERS)
    if not isinstance(readers, Readers):
        raise TypeError(f"{module.__name__}.READERS is a {type(readers).__name__}, not Readers")
    return readers


READERS: MappingProxyType[str, Readers] = MappingProxyType({m.SPEC.name: _readers(m) for m in _MODULES})
"""What each dialect's requests and responses say (`readers`): sessions and the transcript read
them through here, never by a dialect's name."""

# The golden corpus names a case's framing by its file's suffix.
FILE_SUFFIXES: MappingProxyType[str, Framing] = MappingProxyType(
    {".sse": "sse", ".jsonarray": "json_array", ".ndjson": "ndjson"}
)


def _bare(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/")


def detect(method: str, path: str) -> Dialect | None:
    """The dialect of an LLM request, from its method and path (query string allowed).

    Each dialect is recognised by its endpoint's own last segments (its spec's `paths`), so any
    gateway prefix in front of them works (`/openai/v1/…`, `/api/v1/…`, a Cloudflare or LiteLLM
    route, a base URL with a path): see tests/test_detect.py for the shapes, and what is not taken
    for an LLM endpoint.
    """
    if method.upper() != "POST":
        return None
    bare = _bare(path)
    return next((DIALECTS[s.name] for s in SPECS.values() if s.recognises(bare)), None)


def detect_websocket(path: str) -> Dialect | None:
    """The dialect whose usage a WebSocket opened on `path` carries (Responses, Realtime)."""
    bare = _bare(path)
    return next((DIALECTS[s.name] for s in SPECS.values() if s.recognises(bare, websocket=True)), None)


def framing_for(dialect: Dialect, media_type: str, path: str) -> Framing | None:
    """How a response body is framed: a stream we rewrite event by event, or None for a whole body."""
    return SPECS[dialect.name].framing(media_type, path)
