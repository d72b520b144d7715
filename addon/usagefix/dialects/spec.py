"""What a dialect is, as data: the strict, frozen `DialectSpec` every dialect module declares.

The registry (`dialects/registry.py`) derives routing (`detect`, `framing_for`), the profile
dialect names, the golden corpus's suffix map and the README's dialect table from these specs.
Each assumption is written as a why-comment beside the line of the spec it governs.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from usagefix.framing import Framing

__all__ = ["COMMON_FRAMINGS", "DialectSpec", "Field"]

# Every dialect's streams are framed by their content type first: SSE is SSE, whoever speaks it,
# and AWS's binary event stream says so in its media type.
COMMON_FRAMINGS: dict[str, Framing] = {
    "text/event-stream": "sse",
    "application/vnd.amazon.eventstream": "eventstream",
}

Unit = Literal["input_total", "cache_read", "cache_write", "output_total", "reasoning", "total"]
Kind = Literal["headline", "subset", "beside"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Field(_Strict):
    """One count of a dialect's usage block, mapped onto a canonical unit."""

    key: str
    """Where it is in the usage block, dotted for a details object (`prompt_tokens_details.cached_tokens`)."""
    unit: Unit
    """The canonical unit it counts (usage-semantics §8.1)."""
    kind: Kind
    """`headline`: the unit's own count; `subset`: already inside its headline (inclusive);
    `beside`: reported next to its headline, to be added to it (exclusive)."""
    aliases: tuple[str, ...] = ()
    """Other keys upstreams spell it with; read, and renamed where the dialect's code says so."""


class DialectSpec(_Strict):
    """A wire dialect, declared: how it is recognised, framed, where usage lives, what it means."""

    name: str
    """The dialect's id: records, profiles (`dialect = …`), the golden corpus's folder."""
    rank: int
    """Its row in the README's table (and the order routing tries it in; paths never overlap)."""
    title: str
    """Who speaks it, for the README's table."""
    paths: tuple[str, ...]
    """Regular expressions, each matched against the whole path of a POST (its query and a
    trailing slash removed); any one matching recognises the dialect. Gateway prefixes are
    allowed by each pattern's own leading `(?:.*/)?`."""
    shown_paths: str
    """The paths as the README shows them."""
    websocket_paths: tuple[str, ...] = ()
    """Patterns, as `paths`, for a WebSocket's upgrade request whose server messages carry this
    dialect's usage (Responses over WebSocket, Realtime)."""
    framings: dict[str, Framing] = COMMON_FRAMINGS
    """Media type of a response → how its stream is framed; any other type is a whole body."""
    path_framings: tuple[tuple[str, Framing], ...] = ()
    """(pattern searched in the path with its query, framing): for streams whose content type does
    not say they are streams (Gemini's JSON array); tried when `framings` names none."""
    framing_shown: str
    """The framings as the README shows them."""
    usage_at: tuple[str, ...]
    """Where usage lives, per event and per body (dotted paths), for the reader."""
    end_events: tuple[str, ...]
    """The events that end a stream, by event name or `type` (never by a byte search alone)."""
    end_flag: str | None = None
    """A key whose value `true` ends the stream (Ollama's `done`), for dialects without end events."""
    cumulative: Literal["final_once", "replace_by_field", "last_snapshot"]
    """`final_once`: usage comes once, at the end; `replace_by_field`: each snapshot's fields
    replace the last ones (Anthropic); `last_snapshot`: every snapshot is cumulative, the last
    is authoritative (Gemini, Ollama). Never summed (I5)."""
    fields: tuple[Field, ...]
    """The usage block's counts onto canonical units, each with its kind."""
    emits: tuple[str, ...]
    """The keys its standard emits (top level of the usage block): nothing else is ever added."""
    untouched: tuple[str, ...] = ()
    """Keys (dotted, or a details object's name) read but never written: billed counts, a cost."""
    observe_only: bool = False
    """Recorded and checked, never rewritten."""
    repairs: str
    """What is repaired, for the README's table (rule IDs from usage-semantics §8)."""
    price_provider: str | None = None
    """The genai-prices provider id of the models this dialect's own upstream serves, tried after
    the upstream's URL and before the model's name alone; None when it has none (local models,
    priced only by their name or the user's `usage_prices`)."""
    model_in_path: bool = False
    """The path names the model (`…/models/NAME:method`, `/model/ID/…`) when the body does not."""

    @field_validator("paths", "websocket_paths")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"{p!r} is not a regular expression: {e}") from None
        return patterns

    @cached_property
    def _paths(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p) for p in self.paths)

    @cached_property
    def _ws_paths(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p) for p in self.websocket_paths)

    def recognises(self, path: str, *, websocket: bool = False) -> bool:
        """Whether `path` (query and trailing slash removed) is one of this dialect's endpoints."""
        return any(p.fullmatch(path) for p in (self._ws_paths if websocket else self._paths))

    def framing(self, media_type: str, path: str) -> Framing | None:
        """How a response of `media_type` to `path` is framed: a stream, or None for a whole body."""
        if media_type in self.framings:
            return self.framings[media_type]
        return next((f for pattern, f in self.path_framings if re.search(pattern, path)), None)
