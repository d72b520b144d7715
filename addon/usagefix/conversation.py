"""What a request body says about the conversation it continues. Pure; never raises.

- the tool results at its end, by the ids of the tool calls they answer;
- the response it continues on the server's side (a Responses `previous_response_id`);
- the text of a prefix fingerprint: the first system prompt and the first real user message
  (agents resend the whole history, so both stay the same over a session's steps).

Where each dialect keeps them is its own module's business (`dialects.readers`, found through the
registry): this module names no dialect. What is here is about clients: the boilerplate they
inject, and the fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from usagefix.dialects.readers import NO_READERS, dicts
from usagefix.dialects.registry import READERS

__all__ = ["RequestFacts", "read_request"]

# Blocks clients inject into user turns that say nothing about the conversation (Claude Code's
# reminders, Codex's environment and AGENTS.md preambles): skipped when looking for the first
# real user message.
_BOILERPLATE = ("<system-reminder>", "<environment_context>", "<user_instructions>", "# AGENTS.md")


@dataclasses.dataclass(frozen=True, slots=True)
class RequestFacts:
    tool_result_ids: tuple[str, ...] = ()
    """The tool calls the trailing tool results answer, in order."""
    previous_response_id: str | None = None
    fingerprint: str | None = None
    """sha256 (hex, 32 chars) of the first system prompt and the first real user message; None
    when the request has no user message of its own."""


def _text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined (boilerplate dropped)."""
    if isinstance(content, str):
        return "" if content.lstrip().startswith(_BOILERPLATE) else content
    parts = []
    for part in dicts(content):
        text = part.get("text")
        if isinstance(text, str) and not text.lstrip().startswith(_BOILERPLATE):
            parts.append(text)
    return "\n".join(parts)


def read_request(dialect: str, body: Any | None) -> RequestFacts:
    """The request's trailing tool results, previous response id and fingerprint."""
    reader = READERS.get(dialect, NO_READERS).request
    if reader is None or not isinstance(body, dict):
        return RequestFacts()
    says = reader(body)
    system = _text(says.system)
    user = next((text for turn in says.user_turns if (text := _text(turn)).strip()), "")
    fingerprint = None
    if user.strip():
        digest = hashlib.sha256(f"{len(system)}:{system}\0{user}".encode("utf-8", "surrogatepass"))
        fingerprint = digest.hexdigest()[:32]
    return RequestFacts(says.tool_result_ids, says.previous_response_id, fingerprint)
