"""Wire dialects, and how to tell which one a request speaks."""

from __future__ import annotations

import re
from urllib.parse import unquote

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

    Each dialect is recognised by its endpoint's own last segments, so any gateway prefix in front
    of them works (`/openai/v1/…`, `/api/v1/…`, a Cloudflare or LiteLLM route, a base URL with a
    path): see tests/test_detect.py for the shapes, and what is not taken for an LLM endpoint.
    """
    if method.upper() != "POST":
        return None
    segs = path.split("?", 1)[0].rstrip("/").split("/")
    last, parent = segs[-1], segs[-2] if len(segs) > 1 else ""
    if ":" in last:  # Google's custom methods: `…/models/NAME:generateContent`
        return _google_method(segs)
    if [parent, last] == ["chat", "completions"]:
        return OPENAI_CHAT
    if last == "responses" and (parent == "" or parent == "openai" or _VERSION.fullmatch(parent)):
        # `/v1/responses`, Azure's `/openai/responses` and `/openai/v1/responses`, LiteLLM's bare
        # `/responses`; not `/api/forms/42/responses` or `/v3/surveys/7/responses`.
        return OPENAI_RESPONSES
    if last == "messages" and parent == "v1" and segs[-3:-2] != ["threads"]:
        # Anthropic's SDK always appends `/v1/messages` to its base URL, whatever the gateway's
        # path; OpenAI Assistants' `/v1/threads/{id}/messages` has the thread there instead.
        return ANTHROPIC
    if last in _BEDROCK_ACTIONS and (segs[-3:-2] == ["model"] or "/model/arn:" in path):
        return BEDROCK  # `/model/{id}/{action}`; an unencoded inference-profile ARN has slashes
    return None


# A version segment: v1, v2, v1beta, v1beta1, v1alpha.
_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d*)?")
_BEDROCK_ACTIONS = ("converse", "converse-stream", "invoke", "invoke-with-response-stream")


def _google_method(segs: list[str]) -> Dialect | None:
    name, _, method = segs[-1].rpartition(":")
    if method in ("generateContent", "streamGenerateContent"):  # Gemini API, Vertex AI
        return GEMINI
    if (
        method in ("rawPredict", "streamRawPredict")
        and segs[-4:-1] == ["publishers", "anthropic", "models"]
        and name != "count-tokens"
    ):
        # Claude on Vertex speaks Anthropic. Other publishers' rawPredict (Mistral, Llama, AI21,
        # custom endpoints) do not, and `count-tokens:rawPredict` answers with a count only.
        return ANTHROPIC
    return None


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
    """The model named in a Gemini/Vertex (`…/models/NAME:method`) or Bedrock (`/model/ID/…`) path,
    percent-decoded (Bedrock's SDKs send `amazon.nova-pro-v1%3A0`)."""
    p = path.split("?", 1)[0]
    if "/models/" in p:
        return unquote(p.rsplit("/models/", 1)[1].split(":", 1)[0]) or None
    if "/model/" in p:
        rest = p.split("/model/", 1)[1]  # ID/action, where an unencoded ARN's ID has a slash
        return unquote(rest.rsplit("/", 1)[0] if "/" in rest else rest) or None
    return None
