"""Wire dialects: one module each (see `registry`), and the model named in a request's path."""

from __future__ import annotations

from urllib.parse import unquote

from usagefix.dialects.base import NO_CONTEXT, Context, Dialect, StreamSession, Tally
from usagefix.dialects.registry import DIALECTS, NAMES, SPECS, detect, detect_websocket, framing_for

__all__ = [
    "DIALECTS",
    "NAMES",
    "NO_CONTEXT",
    "SPECS",
    "Context",
    "Dialect",
    "StreamSession",
    "Tally",
    "detect",
    "detect_websocket",
    "framing_for",
    "model_from_path",
]


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
