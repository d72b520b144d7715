"""AWS Bedrock: Converse / ConverseStream, InvokeModel / InvokeModelWithResponseStream. Observe-only.

Usage is exclusive, like Anthropic (usage-semantics §5): `inputTokens` leaves out
`cacheReadInputTokens` and `cacheWriteInputTokens`, while `totalTokens` includes them. In
ConverseStream it is in the `metadata` event; InvokeModelWithResponseStream wraps the vendor's
own chunks as `{"bytes": "<base64>"}`, the last with `amazon-bedrock-invocationMetrics`.
We record it and check it; rewriting a signed binary stream is left alone (§8.5: observe-only),
though the framer can re-encode a frame with both CRCs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from usagefix.dialects.base import Context, Tally
from usagefix.normalize import ExclusiveReport, Reader, normalize_exclusive

__all__ = ["Bedrock"]


def observe_converse(usage: Mapping[str, Any], tally: Tally, *, final: bool = True) -> None:
    rd = Reader()
    report = ExclusiveReport(
        uncached=rd.count(usage, "inputTokens") or 0,
        output=rd.count(usage, "outputTokens") or 0,
        cache_read=rd.count(usage, "cacheReadInputTokens") or 0,
        cache_write=rd.count(usage, "cacheWriteInputTokens") or 0,
    )
    outcome = normalize_exclusive(report, rd)
    total = rd.count(usage, "totalTokens")
    if total is not None and total != outcome.after.total:
        tally.flag("bedrock_total_mismatch")
    tally.observe(outcome, dict(usage), None, final=final)


def observe_invocation_metrics(metrics: Mapping[str, Any], tally: Tally) -> None:
    observe_converse(
        {
            "inputTokens": metrics.get("inputTokenCount"),
            "outputTokens": metrics.get("outputTokenCount"),
            "cacheReadInputTokens": metrics.get("cacheReadInputTokenCount"),
            "cacheWriteInputTokens": metrics.get("cacheWriteInputTokenCount"),
        },
        tally,
    )


def _base64_needles(text: bytes) -> tuple[bytes, ...]:
    """What `text` looks like inside base64, at each of its three possible alignments."""
    return tuple(base64.b64encode(text[k : k + (len(text) - k) // 3 * 3]) for k in range(3))


_METRICS = "amazon-bedrock-invocationMetrics"


class Bedrock:
    name = "bedrock"
    # ConverseStream ends with messageStop then metadata (named in a header); InvokeModel
    # streams end with a chunk whose base64 payload carries the invocation metrics.
    end_markers: tuple[bytes, ...] = (b"messageStop", b"metadata", *_base64_needles(_METRICS.encode()))

    def rewrite_json(self, text: str, tally: Tally, ctx: Context) -> str | None:
        obj = json.loads(text)
        usage = obj.get("usage") if isinstance(obj, dict) else None
        if isinstance(usage, dict) and "inputTokens" in usage:
            observe_converse(usage, tally)
        elif isinstance(obj, dict) and isinstance(obj.get("amazon-bedrock-invocationMetrics"), dict):
            observe_invocation_metrics(obj["amazon-bedrock-invocationMetrics"], tally)
        return None

    def stream_session(self, tally: Tally, ctx: Context) -> _BedrockStream:
        return _BedrockStream(tally)

    def is_end(self, name: str | None, data: str) -> bool:
        if name in ("messageStop", "metadata"):
            return True
        try:
            obj = json.loads(data)
            inner = json.loads(base64.b64decode(obj["bytes"], validate=True)) if name == "chunk" else None
        except (binascii.Error, ValueError, TypeError, KeyError):
            return False
        return isinstance(inner, dict) and _METRICS in inner


class _BedrockStream:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def might_carry_usage(self, raw: bytes) -> bool:
        # metadata frames name themselves in a header; invocation metrics hide in base64, so
        # every `chunk` frame is a candidate (they are few and small).
        return b"metadata" in raw or b"chunk" in raw

    def rewrite_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        if name == "metadata" and isinstance(obj.get("usage"), dict):
            observe_converse(obj["usage"], self.tally)
        elif name == "chunk" and isinstance(obj.get("bytes"), str):
            try:
                inner = json.loads(base64.b64decode(obj["bytes"], validate=True))
            except (binascii.Error, ValueError):
                self.tally.flag("bedrock_chunk_not_json")
                return None
            metrics = inner.get("amazon-bedrock-invocationMetrics") if isinstance(inner, dict) else None
            if isinstance(metrics, dict):
                observe_invocation_metrics(metrics, self.tally)
        return None
