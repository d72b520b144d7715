"""What a request body says about the conversation it continues. Pure; never raises.

- the tool results at its end, by the ids of the tool calls they answer (Anthropic
  `tool_result.tool_use_id`, Chat `role: tool` `tool_call_id`, Responses
  `function_call_output.call_id`, Gemini `functionResponse.id`, Bedrock `toolResult.toolUseId`);
- the Responses `previous_response_id`;
- the text of a prefix fingerprint: the first system prompt and the first real user message
  (agents resend the whole history, so both stay the same over a session's steps).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

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


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined (boilerplate dropped)."""
    if isinstance(content, str):
        return "" if content.lstrip().startswith(_BOILERPLATE) else content
    parts = []
    for part in _dicts(content):
        text = part.get("text")
        if isinstance(text, str) and not text.lstrip().startswith(_BOILERPLATE):
            parts.append(text)
    return "\n".join(parts)


def _first_user(messages: list[dict[str, Any]], key: str = "content") -> str:
    for message in messages:
        if message.get("role") == "user" and (text := _text(message.get(key))).strip():
            return text
    return ""


def _first_system(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        if message.get("role") in ("system", "developer"):
            return _text(message.get("content"))
    return ""


def _ids(items: list[dict[str, Any]], key: str) -> tuple[str, ...]:
    return tuple(v for item in items if isinstance(v := item.get(key), str) and v)


def _anthropic(body: dict[str, Any]) -> tuple[tuple[str, ...], str, str]:
    messages = _dicts(body.get("messages"))
    results: tuple[str, ...] = ()
    if messages and messages[-1].get("role") == "user":
        blocks = [b for b in _dicts(messages[-1].get("content")) if b.get("type") == "tool_result"]
        results = _ids(blocks, "tool_use_id")
    return results, _text(body.get("system")), _first_user(messages)


def _openai_chat(body: dict[str, Any]) -> tuple[tuple[str, ...], str, str]:
    messages = _dicts(body.get("messages"))
    trailing: list[dict[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        trailing.insert(0, message)
    return _ids(trailing, "tool_call_id"), _first_system(messages), _first_user(messages)


def _openai_responses(body: dict[str, Any]) -> tuple[tuple[str, ...], str, str]:
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else _dicts(raw)
    trailing: list[dict[str, Any]] = []
    for item in reversed(items):
        if item.get("type") not in ("function_call_output", "custom_tool_call_output"):
            break
        trailing.insert(0, item)
    instructions = body.get("instructions")
    system = instructions if isinstance(instructions, str) else _first_system(items)
    return _ids(trailing, "call_id"), system, _first_user(items)


def _gemini(body: dict[str, Any]) -> tuple[tuple[str, ...], str, str]:
    contents = _dicts(body.get("contents"))
    results: tuple[str, ...] = ()
    if contents:
        parts = _dicts(contents[-1].get("parts"))
        results = _ids(
            [p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)], "id"
        )
    system = body.get("systemInstruction", body.get("system_instruction"))
    system_text = _text(system.get("parts")) if isinstance(system, dict) else ""
    return results, system_text, _first_user(contents, key="parts")


def _bedrock(body: dict[str, Any]) -> tuple[tuple[str, ...], str, str]:
    if "anthropic_version" in body:  # a Claude model through InvokeModel: Anthropic's own body
        return _anthropic(body)
    messages = _dicts(body.get("messages"))
    results: tuple[str, ...] = ()
    if messages and messages[-1].get("role") == "user":
        blocks = [
            b["toolResult"]
            for b in _dicts(messages[-1].get("content"))
            if isinstance(b.get("toolResult"), dict)
        ]
        results = _ids(blocks, "toolUseId")
    return results, _text(body.get("system")), _first_user(messages)


_READERS = {
    "anthropic": _anthropic,
    "openai_chat": _openai_chat,
    "openai_responses": _openai_responses,
    "gemini": _gemini,
    "bedrock": _bedrock,
}


def read_request(dialect: str, body: Any | None) -> RequestFacts:
    """The request's trailing tool results, previous response id and fingerprint."""
    reader = _READERS.get(dialect)
    if reader is None or not isinstance(body, dict):
        return RequestFacts()
    results, system, user = reader(body)
    previous = body.get("previous_response_id")
    fingerprint = None
    if user.strip():
        digest = hashlib.sha256(f"{len(system)}:{system}\0{user}".encode("utf-8", "surrogatepass"))
        fingerprint = digest.hexdigest()[:32]
    return RequestFacts(results, previous if isinstance(previous, str) and previous else None, fingerprint)
