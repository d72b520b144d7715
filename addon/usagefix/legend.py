"""Every anomaly code a record can carry, in words, for the usage diff view's legend.

A code is `name`, `name:detail` (`negative_count:prompt_tokens`, `body_not_saved:70000000`) or
`name: detail` (a message), or `<reason>_events:N` for events passed through unparsed. A code
this table does not know (a later version's) is shown as it is, never hidden.
"""

from __future__ import annotations

__all__ = ["MARK", "describe"]

MARK = "⚠ marks such a flow in the list"
"""Said where the anomalies or the error are listed: the mark in mitmweb's flow list is why."""

_WORDS: dict[str, str] = {
    "ambiguous_inclusivity": "cache reads fit inside the prompt count: nothing says whether they are counted "
    "there; left alone (a profile settles it)",
    "ambiguous_total_gap": "the total counts more than prompt + completion, and either cache reads or "
    "reasoning could explain it: left alone",
    "bad_crc_events": "event-stream frames that failed their CRC check, passed through unparsed",
    "bedrock_chunk_not_json": "a Bedrock chunk whose payload is not JSON",
    "bedrock_header_not_a_count": "a Bedrock token-count header that is not a number",
    "bedrock_total_mismatch": "Bedrock's totalTokens does not add up from its parts",
    "body_not_saved": "the stream outgrew usage_max_saved_body_bytes: saved without its body (bytes)",
    "cache_creation_split_mismatch": "the 5m/1h cache-write split does not add up to the cache-write count",
    "cut_off": "the stream was cut off before it ended",
    "declaration_contradicted": "a profile's declaration is contradicted by the numbers: not applied",
    "deepseek_hit_plus_miss_is_not_prompt": "DeepSeek's cache hit + miss tokens differ from prompt_tokens",
    "exclusive_prompt_repaired": "the upstream left cache reads out of the prompt count (as Anthropic "
    "counts) in a dialect that includes them: repaired",
    "incomplete_tail_bytes": "bytes of an event the body ended inside: handed to the client as they "
    "came, unread",
    "invalid_usage": "a usage block that is not a valid one (a count that is not a number…): left alone",
    "negative_count": "a negative count (raised to 0, I4)",
    "no_final_usage": "the stream ended without its final usage: unmeasured",
    "oversize_events": "events over usage_max_event_bytes, forwarded untouched and not parsed",
    "reasoning_exceeds_completion": "reasoning tokens above completion_tokens, and the total does not "
    "say which is right: left alone",
    "reasoning_exceeds_output": "reasoning tokens above the output count",
    "snapshot_decreased": "the final cumulative snapshot is below an earlier one",
    "total_exceeds_parts": "the total counts tokens no headline explains: kept in the total, never lowered",
    "undecodable_encoding": "compressed in a coding that cannot be decoded: streamed untouched",
    "unparseable_body": "the body is not JSON: passed untouched",
    "unparseable_event": "an event that is not JSON: passed untouched",
    "usage_blocks_not_recorded": "the verbatim usage blocks could not be saved with the flow",
    "would_repair": "observe-only profile: this rule would have repaired the usage",
}


def describe(code: str) -> str:
    """The code with its meaning: `cut_off — the stream was cut off before it ended`; a code this
    version does not know, as it is."""
    words = _WORDS.get(code.split(":", 1)[0].strip())
    return f"{code} — {words}" if words else code
