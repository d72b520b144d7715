"""Wire dialects, and how to tell which one a request speaks."""

from __future__ import annotations

from usagefix.dialects.anthropic import Anthropic
from usagefix.dialects.base import NO_CONTEXT, Context, Dialect, StreamSession, Tally
from usagefix.dialects.gemini import Gemini
from usagefix.dialects.openai_chat import OpenAIChat
from usagefix.dialects.openai_responses import OpenAIResponses

__all__ = ["DIALECTS", "NO_CONTEXT", "Context", "Dialect", "StreamSession", "Tally", "detect"]

OPENAI_CHAT = OpenAIChat()
OPENAI_RESPONSES = OpenAIResponses()
ANTHROPIC = Anthropic()
GEMINI = Gemini()
DIALECTS: dict[str, Dialect] = {d.name: d for d in (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI)}


def detect(method: str, path: str) -> Dialect | None:
    """The dialect of an LLM request, from its method and path (query string allowed).

    Paths are matched by their end, so gateway prefixes (`/openai/v1/chat/completions`,
    `/api/v1/...`) are recognised as well as the vendors' own.
    """
    if method.upper() != "POST":
        return None
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return OPENAI_CHAT
    if p.endswith("/responses"):
        return OPENAI_RESPONSES
    if p.endswith("/messages"):  # not /messages/count_tokens, /messages/batches
        return ANTHROPIC
    method_name = p.rsplit(":", 1)[-1] if ":" in p.rsplit("/", 1)[-1] else ""
    if method_name in ("generateContent", "streamGenerateContent"):  # Gemini, Vertex
        return GEMINI
    if method_name in ("rawPredict", "streamRawPredict"):  # Claude on Vertex speaks Anthropic
        return ANTHROPIC
    return None
