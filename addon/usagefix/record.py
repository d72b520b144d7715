"""The record of one response: what the upstream said, what the client got, and why.

Stored as plain JSON-able values in `flow.metadata["usagefix"]` (tnetstring-safe: an
unserializable value would make mitmproxy drop the whole flow from the file), and summarized in
one line for `flow.comment`. The model only: built by usagefix.recordbuild, read back by
usagefix.prior, summarized by usagefix.comment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from usagefix.usage import CanonicalUsage

__all__ = [
    "METADATA_KEY",
    "SCHEMA_VERSION",
    "ChangeRecord",
    "RuleRecord",
    "Status",
    "UsageRecord",
]

METADATA_KEY = "usagefix"
SCHEMA_VERSION = 1

Status = Literal[
    "rewritten", "unchanged", "unmeasured", "passthrough_error", "undecodable_encoding", "http_error"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class RuleRecord(_Strict):
    rule: str
    """Rule ID from usage-semantics §8 (R1–R8, I1–I4), or `rename` for a non-standard key."""
    reason: str
    changes: dict[str, list[int]] = {}
    """Canonical field → [before, after]."""


class ChangeRecord(_Strict):
    index: int
    """Position of the event among the response's events (0 for a whole JSON body)."""
    offset: int
    """Byte offset of the rewritten text in the body the client received."""
    original: str
    """The upstream's text there, byte for byte (UTF-8). Only the span that differs is kept (the
    event's common prefix and suffix trimmed), so a change costs O(changed span); records written
    before kept the whole event, which rebuilds the same way."""
    rewritten: str
    """What the client received instead."""


class UsageRecord(_Strict):
    schema_version: int = SCHEMA_VERSION
    dialect: str
    profile: str | None = None
    streamed: bool
    status: Status
    final_seen: bool
    """Whether the usage that ends the response arrived; false means the numbers are unknown."""
    usage_before: CanonicalUsage | None = None
    """The upstream's usage, read as it stands, in canonical terms."""
    usage_after: CanonicalUsage | None = None
    """The usage the client received, in canonical terms."""
    upstream_usage: dict[str, Any] | None = None
    """The upstream's last usage block, verbatim."""
    emitted_usage: dict[str, Any] | None = None
    """The last usage block the client received, verbatim."""
    rules: list[RuleRecord] = []
    anomalies: list[str] = []
    changes: list[ChangeRecord] = []
    events: int | None = None
    """Events in the stream (streamed responses only)."""
    error: str | None = None
    """Why the response passed through untouched, or why it was cut off."""
    content_encoding: str | None = None
    """The upstream's content-encoding, when we decoded it for the client."""
    stream_usage_added: bool = False
    """We asked the upstream for stream usage the client had not asked for, and removed it from
    what the client received (`usage_request_stream_usage`)."""
    held_back: str | None = None
    """The unfinished event the upstream had begun when the stream was cut off: never forwarded.
    As text: a byte that is not UTF-8 (a cut inside a multi-byte character) shows as `\\xNN`."""
    held_back_base64: str | None = None
    """The same bytes exactly, base64, when they are not UTF-8 text (else None: `held_back` is
    exact): what rebuilding the upstream's body appends."""
    body_saved: bool = True
    """False when the stream the client received outgrew `usage_max_saved_body_bytes`: the flow is
    saved without its body (the record still holds every change), and re-normalizing leaves it
    as it is."""
