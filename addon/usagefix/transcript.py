"""What a request and its response say beside usage: the model, ids, tool calls. Pure.

STUB (contract only): the sessions work replaces this whole module. Signatures are the contract.
"""

from __future__ import annotations

from typing import Any

from usagefix.exchange import ResponseFacts

__all__ = ["model_requested", "read_response"]


def model_requested(dialect: str, path: str, body: Any | None) -> str | None:  # pragma: no cover - stub
    """The model the client asked for: the body's `model`, or the path's (Gemini, Bedrock)."""
    return body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None


def read_response(  # pragma: no cover - stub
    dialect: str, content_type: str | None, body: bytes | None
) -> ResponseFacts:
    """The model the upstream reported, the response id, the tool calls it emitted, its own cost."""
    return ResponseFacts()
