"""Wire dialects, and how to tell which one a request speaks."""

from __future__ import annotations

from usagefix.dialects.anthropic import Anthropic
from usagefix.dialects.base import NO_CONTEXT, Context, Dialect, StreamSession, Tally
from usagefix.dialects.bedrock import Bedrock
from usagefix.dialects.gemini import Gemini
from usagefix.dialects.openai_chat import OpenAIChat
from usagefix.dialects.openai_responses import OpenAIResponses
from usagefix.framing import Framing

__all__ = [
    "DIALECTS",
    "NO_CONTEXT",
    "Context",
    "Dialect",
    "StreamSession",
    "Tally",
    "detect",
    "framing_for",
    "model_from_path",
]

OPENAI_CHAT = OpenAIChat()
OPENAI_RESPONSES = OpenAIResponses()
ANTHROPIC = Anthropic()
GEMINI = Gemini()
BEDROCK = Bedrock()
DIALECTS: dict[str, Dialect] = {
    d.name: d for d in (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI, BEDROCK)
}


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
    if "/model/" in p and p.rsplit("/", 1)[-1] in _BEDROCK_ACTIONS:
        return BEDROCK
    return None


_BEDROCK_ACTIONS = ("converse", "converse-stream", "invoke", "invoke-with-response-stream")


def framing_for(dialect: Dialect, media_type: str, path: str) -> Framing | None:
    """How a response body is framed: a stream we rewrite event by event, or None for a whole body."""
    if media_type == "text/event-stream":
        return "sse"
    if media_type == "application/vnd.amazon.eventstream":
        return "eventstream"
    if dialect is GEMINI and ":streamGenerateContent" in path and "alt=sse" not in path:
        return "json_array"  # AI Studio streams one JSON array unless asked for SSE
    return None


def model_from_path(path: str) -> str | None:
    """The model named in a Gemini/Vertex (`…/models/NAME:method`) or Bedrock (`/model/ID/…`) path."""
    p = path.split("?", 1)[0]
    if "/models/" in p:
        return p.rsplit("/models/", 1)[1].split(":", 1)[0] or None
    if "/model/" in p:
        return p.split("/model/", 1)[1].split("/", 1)[0] or None
    return None
