"""Asking an OpenAI Chat stream for its usage (`usage_request_stream_usage`): the request's side.

The response's side, dropping the usage chunk the client did not ask for, is the dialect's
(`Context.strip_usage_chunk`). Pure: the glue (addon.py) puts the new body on the request.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ask_for_stream_usage"]


def ask_for_stream_usage(body: dict[str, Any]) -> bytes | None:
    """The request body with `stream_options.include_usage` added, for a stream request that lacks
    it; None when the request is not a stream or already asks for usage."""
    if body.get("stream") is not True:
        return None
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return None
    asked = {
        **body,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }
    return json.dumps(asked, ensure_ascii=False, separators=(",", ":")).encode()
