"""AWS Bedrock: Converse / ConverseStream, InvokeModel / InvokeModelWithResponseStream. Observe-only.

Usage is exclusive, like Anthropic (usage-semantics §5): `inputTokens` leaves out
`cacheReadInputTokens` and `cacheWriteInputTokens`, while `totalTokens` includes them. In
ConverseStream it is in the `metadata` event; InvokeModelWithResponseStream wraps the vendor's
own chunks as `{"bytes": "<base64>"}`, the last with `amazon-bedrock-invocationMetrics`.
InvokeModel returns the vendor's own body: a Claude model's is an Anthropic Messages body
(`usage.input_tokens`, …), Nova's has a Converse-shaped `usage`; every InvokeModel response also
carries the counts in `x-amzn-bedrock-input-token-count` / `-output-token-count` (and
`-cache-read-input-token-count` / `-cache-write-input-token-count`) headers, read when the body
says nothing (Llama, Titan, Mistral, …).
We record it and check it; rewriting a signed binary stream is left alone (§8.5: observe-only),
though the framer can re-encode a frame with both CRCs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from usagefix.dialects import anthropic
from usagefix.dialects.base import Context, NeedleSession, Tally, unapplied
from usagefix.dialects.engine import FieldMapDialect
from usagefix.dialects.fieldmap import Read, read_fields
from usagefix.dialects.readers import Readers, RequestSays, ResponseNotes, contents, dicts, ids
from usagefix.dialects.spec import DialectSpec, Field
from usagefix.normalize import Outcome

__all__ = ["DIALECT", "SPEC", "Bedrock"]

HEADER_COUNTS = {
    "inputTokens": "x-amzn-bedrock-input-token-count",
    "outputTokens": "x-amzn-bedrock-output-token-count",
    "cacheReadInputTokens": "x-amzn-bedrock-cache-read-input-token-count",
    "cacheWriteInputTokens": "x-amzn-bedrock-cache-write-input-token-count",
}


def check_total(outcome: Outcome, read: Read, ctx: Context, model: str | None, tally: Tally) -> None:
    """`totalTokens` includes the cache counts `inputTokens` leaves out: a total that says
    otherwise is flagged (observe-only: never repaired)."""
    total = read.count("total", "headline")
    if total is not None and total != outcome.after.total:
        tally.flag("bedrock_total_mismatch")


def observe_invocation_metrics(
    dialect: FieldMapDialect, metrics: Mapping[str, Any], tally: Tally, ctx: Context
) -> None:
    usage = {
        "inputTokens": metrics.get("inputTokenCount"),
        "outputTokens": metrics.get("outputTokenCount"),
        "cacheReadInputTokens": metrics.get("cacheReadInputTokenCount"),
        "cacheWriteInputTokens": metrics.get("cacheWriteInputTokenCount"),
    }
    dialect.normalize_usage(usage, tally, ctx, model=None, final=True)


def observe_headers(dialect: FieldMapDialect, ctx: Context, tally: Tally) -> bool:
    """Observe InvokeModel's token-count headers; False when there are none."""
    values: dict[str, Any] = {}
    for key, name in HEADER_COUNTS.items():
        raw = ctx.header(name)
        if raw is None:
            continue
        try:
            values[key] = int(raw.strip())
        except ValueError:
            tally.flag(f"bedrock_header_not_a_count:{name}")
    if "inputTokens" not in values or "outputTokens" not in values:
        return False
    dialect.normalize_usage(values, tally, ctx, model=None, final=True)
    return True


def _base64_needles(text: bytes) -> tuple[bytes, ...]:
    """What `text` looks like inside base64, at each of its three possible alignments."""
    return tuple(base64.b64encode(text[k : k + (len(text) - k) // 3 * 3]) for k in range(3))


_METRICS = "amazon-bedrock-invocationMetrics"


class Bedrock(FieldMapDialect):
    """Bedrock's oddities: usage in several places of InvokeModel's vendor bodies and headers,
    and inside the base64 payload of an event-stream chunk."""

    def __init__(self, spec: DialectSpec) -> None:
        super().__init__(spec, judge=check_total)
        # ConverseStream ends with messageStop then metadata (named in a header); InvokeModel
        # streams end with a chunk whose base64 payload carries the invocation metrics.
        self.end_markers = (b"messageStop", b"metadata", *_base64_needles(_METRICS.encode()))

    def normalize_body(self, text: str, tally: Tally, ctx: Context) -> str | None:
        obj = json.loads(text)
        usage = obj.get("usage") if isinstance(obj, dict) else None
        if isinstance(usage, dict) and "inputTokens" in usage:
            self.normalize_usage(usage, tally, ctx, model=None, final=True)
        elif isinstance(usage, dict) and "input_tokens" in usage:
            # A Claude model through InvokeModel answers in Anthropic's own Messages body.
            read = read_fields(usage, anthropic.SPEC.fields)
            unknown = anthropic.DIALECT.unknown_headlines(usage, read)
            if unknown:
                anthropic.DIALECT.unknown(usage, unknown, tally, final=True)
            else:
                outcome = anthropic.DIALECT.normalize_read(read, ctx, None)
                tally.observe(unapplied(outcome), usage, None, final=True)
        elif isinstance(obj, dict) and isinstance(obj.get("amazon-bedrock-invocationMetrics"), dict):
            observe_invocation_metrics(self, obj["amazon-bedrock-invocationMetrics"], tally, ctx)
        else:
            observe_headers(self, ctx, tally)
        return None

    def stream_session(self, tally: Tally, ctx: Context) -> _BedrockStream:  # type: ignore[override]
        return _BedrockStream(self, tally, ctx)

    def is_end(self, name: str | None, data: str) -> bool:
        if name in ("messageStop", "metadata"):
            return True
        try:
            obj = json.loads(data)
            inner = json.loads(base64.b64decode(obj["bytes"], validate=True)) if name == "chunk" else None
        except (binascii.Error, ValueError, TypeError, KeyError):
            return False
        return isinstance(inner, dict) and _METRICS in inner


class _BedrockStream(NeedleSession):
    # metadata frames name themselves in a header; invocation metrics hide in base64, so every
    # `chunk` frame is a candidate (they are few and small).
    _NEEDLES = (b"metadata", b"chunk")

    def __init__(self, dialect: Bedrock, tally: Tally, ctx: Context) -> None:
        super().__init__(self._NEEDLES, dialect.end_markers, tally, ctx)
        self.dialect = dialect

    def normalize_event(self, name: str | None, data: str) -> str | None:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        if name == "metadata" and isinstance(obj.get("usage"), dict):
            self.dialect.normalize_usage(obj["usage"], self.tally, self.ctx, model=None, final=True)
        elif name == "chunk" and isinstance(obj.get("bytes"), str):
            try:
                inner = json.loads(base64.b64decode(obj["bytes"], validate=True))
            except (binascii.Error, ValueError):
                self.tally.flag("bedrock_chunk_not_json")
                return None
            metrics = inner.get("amazon-bedrock-invocationMetrics") if isinstance(inner, dict) else None
            if isinstance(metrics, dict):
                observe_invocation_metrics(self.dialect, metrics, self.tally, self.ctx)
        return None


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "observe-only: usage from the `metadata` event, `amazon-bedrock-invocationMetrics`, "
    "InvokeModel's body (Claude's Messages `usage`, Nova's) or, failing those, its "
    "`x-amzn-bedrock-*-token-count` headers is recorded and checked (`totalTokens` includes "
    "the cache counts); an input or output count absent or `null` (both are required) leaves "
    "the response `unmeasured` (`unreported:KEY`); frames pass byte for byte; a frame failing "
    "its CRC is flagged."
)

SPEC = DialectSpec(
    name="bedrock",
    rank=90,
    title="AWS Bedrock",
    paths=(
        # `/model/{id}/{action}`; an unencoded inference-profile ARN has slashes in its id.
        r"(?:.*/)?model/[^/]*/(?:converse|converse-stream|invoke|invoke-with-response-stream)",
        r".*/model/arn:.*/(?:converse|converse-stream|invoke|invoke-with-response-stream)",
    ),
    shown_paths="`/model/{id}/converse`, `converse-stream`, `invoke`, `invoke-with-response-stream`",
    framing_shown="JSON, `application/vnd.amazon.eventstream` (binary, CRC-checked)",
    usage_at=("usage", "amazon-bedrock-invocationMetrics", "x-amzn-bedrock-*-token-count"),
    end_events=("messageStop", "metadata", _METRICS),
    cumulative="final_once",
    fields=(
        # Exclusive, like Anthropic (§5): totalTokens includes the cache counts inputTokens leaves out.
        Field(key="inputTokens", unit="input_total", kind="headline"),
        Field(key="outputTokens", unit="output_total", kind="headline"),
        # Nova's InvokeModel spells cache counts `…TokenCount`.
        Field(
            key="cacheReadInputTokens",
            unit="cache_read",
            kind="beside",
            aliases=("cacheReadInputTokenCount",),
        ),
        Field(
            key="cacheWriteInputTokens",
            unit="cache_write",
            kind="beside",
            aliases=("cacheWriteInputTokenCount",),
        ),
        Field(key="totalTokens", unit="total", kind="headline"),
    ),
    emits=("inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens"),
    # Rewriting a signed binary stream means re-framing and re-CRCing it: observe-only (§8.5).
    observe_only=True,
    repairs=_REPAIRS,
    # `inputTokens` and `outputTokens` are required (TokenUsage: "Required: Yes"), as are the
    # invocation metrics' counts: one absent or null is unknown (`unreported:KEY`), not 0.
    absent_headline="unreported",
    # Every block found is a snapshot.
    skips="nothing",
    price_provider="aws",
    # `/model/<id>/invoke…`, `/model/<id>/converse…`: the body never names it.
    model_in_path=True,
)

DIALECT = Bedrock(SPEC)


# -- what its requests and responses say (sessions, transcript) --


def _converse_block(block: Any, notes: ResponseNotes) -> None:
    if isinstance(block, dict) and isinstance(block.get("toolUse"), dict):
        notes.tool(block["toolUse"].get("toolUseId"))


def read_event(name: str | None, obj: dict[str, Any], notes: ResponseNotes) -> None:
    """ConverseStream's `contentBlockStart`, Converse's `output.message`, InvokeModel's vendor body
    (a Claude model's is Anthropic's own), InvokeModel stream chunks (base64 vendor JSON)."""
    if name == "chunk" and isinstance(obj.get("bytes"), str):
        try:
            inner = json.loads(base64.b64decode(obj["bytes"], validate=True), parse_float=Decimal)
        except (binascii.Error, ValueError):
            return
        if isinstance(inner, dict):
            anthropic.read_event(None, inner, notes)
    elif name == "contentBlockStart":
        _converse_block(obj.get("start"), notes)
    elif isinstance(obj.get("output"), dict) and isinstance(obj["output"].get("message"), dict):
        for block in dicts(obj["output"]["message"].get("content")):
            _converse_block(block, notes)
    elif name is None:
        anthropic.read_message(obj, notes)


def read_request(body: dict[str, Any]) -> RequestSays:
    """Converse: `toolResult.toolUseId` blocks of the last (user) message, the body's `system`;
    InvokeModel for a Claude model: Anthropic's own body (it says `anthropic_version`)."""
    if "anthropic_version" in body:
        return anthropic.read_request(body)
    messages = dicts(body.get("messages"))
    results: tuple[str, ...] = ()
    if messages and messages[-1].get("role") == "user":
        blocks = dicts(messages[-1].get("content"))
        results = ids([b["toolResult"] for b in blocks if isinstance(b.get("toolResult"), dict)], "toolUseId")
    return RequestSays(results, body.get("system"), contents(messages, "user"))


READERS = Readers(request=read_request, response=read_event)
