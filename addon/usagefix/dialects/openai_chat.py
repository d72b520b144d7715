"""OpenAI Chat Completions (and every OpenAI-compatible server that speaks it).

Usage is inclusive (usage-semantics §1, §8.5): `prompt_tokens` ⊇ `cached_tokens` +
`cache_write_tokens`, `completion_tokens` ⊇ `reasoning_tokens`, `total = prompt + completion`.
In a stream, the usage chunk is the one whose `usage` is not null, whatever its `choices` (Azure
sends a first chunk with empty `choices` and no usage; Google puts usage on a content chunk; vLLM
with `continuous_usage_stats` puts a cumulative snapshot on every chunk).
"""

from __future__ import annotations

import json
import re

from usagefix.dialects.base import Context, Tally
from usagefix.dialects.inclusive import CHAT, model_of, rewrite_json_usage, rewrite_usage
from usagefix.jsonedit import replace_at

__all__ = ["OpenAIChat"]

# `"usage":null` as the upstream writes it, with the comma that joins it to its neighbour.
_NULL_USAGE = re.compile(r'\s*,\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')


class OpenAIChat:
    name = "openai_chat"
    end_markers: tuple[bytes, ...] = (b"[DONE]",)

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        return rewrite_json_usage(text, tally, ctx, CHAT)

    def stream_session(self, tally: Tally, ctx: Context) -> _ChatStream:
        return _ChatStream(tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        return data.strip() == "[DONE]"


class _ChatStream:
    def __init__(self, tally: Tally, ctx: Context) -> None:
        self.tally = tally
        self.ctx = ctx

    def might_carry_usage(self, raw: bytes) -> bool:
        # Every chunk of a stream that asked for usage has `"usage":null` except the usage chunk.
        # Inside a JSON string a quote is escaped, so `"usage"` only occurs as a key (or as the
        # exact string value "usage", a harmless false positive that gets parsed and dropped).
        i = raw.find(b'"usage"')
        if i < 0:
            return False
        if self.ctx.strip_usage_chunk:
            return True  # the `"usage":null` keys we caused must go too
        rest = raw[i + 7 : i + 16].lstrip(b" \t:")
        return not rest.startswith(b"null") or raw.find(b'"usage"', i + 7) >= 0

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        if data.strip() == "[DONE]":
            return None
        obj = json.loads(data)
        if not isinstance(obj, dict) or "usage" not in obj:
            return None
        usage = obj["usage"]
        if self.ctx.strip_usage_chunk:
            # The client did not ask for usage; we did. Record it, and give the client the
            # stream it asked for: no usage chunk, no `"usage":null` keys.
            if isinstance(usage, dict):
                rewrite_usage(usage, self.tally, self.ctx, CHAT, model=model_of(obj))
                if obj.get("choices") == []:
                    return ""  # the whole event goes
            text = data if usage is None else replace_at(data, ["usage"], None)
            new = _NULL_USAGE.sub("", text, count=1)
            return new if new != data else None
        if not isinstance(usage, dict):
            return None
        emitted = rewrite_usage(usage, self.tally, self.ctx, CHAT, model=model_of(obj))
        return None if emitted is None else replace_at(data, ["usage"], emitted)
