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

__all__ = ["COMMON_FRAMINGS", "Copy", "DialectSpec", "Field"]

# Every dialect's streams are framed by their content type first: SSE is SSE, whoever speaks it,
# and AWS's binary event stream says so in its media type.
COMMON_FRAMINGS: dict[str, Framing] = {
    "text/event-stream": "sse",
    "application/vnd.amazon.eventstream": "eventstream",
}

Unit = Literal[
    "input_total",
    "cache_read",
    "cache_write",
    "cache_write_5m",
    "cache_write_1h",
    "output_total",
    "reasoning",
    "total",
]
Kind = Literal["headline", "subset", "beside"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Copy(_Strict):
    """An alias whose count is always copied to its field's standard key (the rule names it)."""

    alias: str
    """The alias, dotted as `Field.key`."""
    rule: str
    """The rule that copies it (R6)."""
    by: str
    """Who spells it so, for the rule's reason (`DeepSeek`)."""


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
    """Other keys upstreams spell it with, read after `key` (as `pick` says). An alias in the same
    object as `key` is renamed to it when the block is written (kept beside it, a client would
    count it twice); one elsewhere is left as it is, and its count written to `key`."""
    pick: Literal["first", "largest", "first_nonzero"] = "first"
    """Which of `key` and its aliases counts when several are reported: the first, the largest
    (an alias beside a standard `0`), or the first non-zero (never their sum)."""
    added_by: tuple[str, ...] = ()
    """Rules that, firing on a count read from an alias outside `key`'s object, add `key` where the
    upstream left it out or null (R1/R2 say where the cache reads they moved are)."""
    copies: tuple[Copy, ...] = ()
    """Aliases whose count is always copied to `key` where the upstream left it out (R6)."""
    alias_note: str = ""
    """Cited in the `alias` rule's reason when `key` is overwritten from an alias."""
    null_replaces: bool = False
    """In a replace-by-field stream, a later event's `null` for this (top-level) count replaces the
    snapshot's: the count is unknown until an event reports it (Anthropic's SDK assigns each
    `message_delta`'s `output_tokens`, None included). Otherwise a `null` there is absent and the
    known count stands (the SDK replaces input and cache counts only when they are not None)."""


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
    """Where usage lives, per event and per body (dotted paths; `*` is every element of a list;
    `""` the object itself): the first that holds a usage object is read, every match of it."""
    end_events: tuple[str, ...]
    """The events that end a stream, by event name or `type` (never by a byte search alone)."""
    end_flag: str | None = None
    """A key whose value `true` ends the stream (Ollama's `done`), for dialects without end events."""
    cumulative: Literal["final_once", "replace_by_field", "last_snapshot"]
    """`final_once`: usage comes once, at the end; `replace_by_field`: each snapshot's fields
    replace the last ones (Anthropic); `last_snapshot`: every snapshot is cumulative, the last
    is authoritative (Gemini). Never summed (I5)."""
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
    usage_events: tuple[str, ...] = ()
    """The events that carry usage, by event name or `type` (their names are the byte test); no
    other event is read. Empty: any event may (its byte test is the headline keys)."""
    finished_by: tuple[str, str] | None = None
    """(list, key): a usage block is final (R8) on an event whose list is absent or empty, or one
    of whose elements has `key` set (`choices`, `finish_reason`). None: on the end events."""
    omits_zero_counts: bool = False
    """Its JSON leaves a zero count out (proto3): a count a block does not carry is 0, not
    unreported (a report's sum over such steps is whole, not a lower bound)."""
    absent_headline: Literal["unreported", "invalid", "zero"] = "unreported"
    """A headline count left out while another is reported: unknown (`unreported:KEY`, the
    response unmeasured), a malformed block (`invalid_usage`), or 0 (proto3 omits zeros). With
    `zero`, one sent as `null` is still no number: unknown, as with `unreported`."""
    final_events: tuple[str, ...] = ()
    """The events whose usage is final (R8), when `finished_by` is None and they are not the end
    events (Anthropic's `message_delta`, before `message_stop`)."""
    skips: Literal["no_count", "no_key", "nothing"] = "no_count"
    """Which usage blocks are no snapshot at all: one without a headline count (absent or null:
    unmeasured, not invalid), one without any of the field map's keys (Vertex's
    `{"trafficType": …}`-only snapshots), or none (Anthropic: absent counts are 0)."""
    count_keys: str | None = None
    """When a count was negative (I4), every negative number whose key fully matches this pattern
    becomes 0, at any depth outside `untouched`. None: only the counts the field map reads."""
    price_provider: str | None = None
    """The genai-prices provider id of the models this dialect's own upstream serves, tried after
    the upstream's URL and before the model's name alone; None when it has none (local models,
    priced only by their name or the user's `usage_prices`)."""
    model_in_path: bool = False
    """The path names the model (`…/models/NAME:method`, `/model/ID/…`) when the body does not."""
    priced_by_name: bool = True
    """Whether a model name genai-prices knows says what an exchange cost. False for a dialect
    whose models run on the user's own machine (Ollama): `deepseek-r1:7b` there is not the hosted
    DeepSeek's price; only the upstream's URL or the user's `usage_prices` price it."""

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
