"""OpenAI Responses API.

Usage is inclusive, like Chat, under other names (usage-semantics §2.1). It lives in
`response.usage` of the terminal events only: `response.completed`, `response.incomplete`,
`response.failed` (`response.created` / `in_progress` carry the same object before usage is
known); a non-streamed response has it at the top. Detail objects the upstream left out stay
out: the SDK reads a response without them (as None), and most correct upstreams omit them.
"""

from __future__ import annotations

from usagefix.dialects.engine import FieldMapDialect
from usagefix.dialects.openai_chat import check_deepseek, from_gemini, judge_translated
from usagefix.dialects.spec import Copy, DialectSpec, Field

__all__ = ["DIALECT", "SPEC"]

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


# What the README's dialect table says is repaired (generated from here: scripts/readme_tables.py).
_REPAIRS = (
    "R1, R2, R3, R5, I3, I4 as above. Detail objects the upstream left out stay out (the SDK "
    "reads a response without them)."
)

SPEC = DialectSpec(
    name="openai_responses",
    rank=20,
    title="OpenAI Responses",
    # `/v1/responses`, Azure's `/openai/responses` and `/openai/v1/responses`, LiteLLM's bare
    # `/responses`; not `/api/forms/42/responses` or `/v3/surveys/7/responses`.
    paths=(r"(?:.*/(?:openai|v\d+(?:(?:alpha|beta)\d*)?)?)?/responses",),
    shown_paths="`POST …/v1/responses`, `…/openai/responses` (Azure), `/responses`",
    # Codex CLI talks Responses over a persistent WebSocket to `…/responses`.
    websocket_paths=(r"(?:.*/)?responses",),
    framing_shown=(
        "JSON, SSE (`response.completed` / `incomplete` / `failed`), and WebSocket messages on "
        "`…/responses` (Codex CLI: many turns on one connection, one record per turn)"
    ),
    usage_at=("usage", "response.usage"),
    end_events=TERMINAL,
    cumulative="final_once",
    fields=(
        Field(key="input_tokens", unit="input_total", kind="headline"),
        Field(key="output_tokens", unit="output_total", kind="headline"),
        # Inclusive, like Chat (§2.1), and read with Chat's aliases (translators write them here too).
        Field(
            key="input_tokens_details.cached_tokens",
            unit="cache_read",
            kind="subset",
            aliases=("cache_read_input_tokens", "prompt_cache_hit_tokens"),
            pick="largest",
            added_by=("R1", "R2"),
            copies=(Copy(alias="prompt_cache_hit_tokens", rule="R6", by="DeepSeek"),),
            alias_note="LiteLLM #11364",
        ),
        Field(
            key="input_tokens_details.cache_write_tokens",
            unit="cache_write",
            kind="subset",
            aliases=(
                "input_tokens_details.cached_creation_tokens",
                "input_tokens_details.cache_creation_tokens",
                "cache_creation_input_tokens",
            ),
            pick="first_nonzero",
            added_by=("R2",),
            alias_note="LiteLLM #11364",
        ),
        Field(key="output_tokens_details.reasoning_tokens", unit="reasoning", kind="subset"),
        Field(key="total_tokens", unit="total", kind="headline"),
    ),
    emits=("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details", "total_tokens"),
    repairs=_REPAIRS,
    # Only the terminal events carry usage (`response.created` / `in_progress` carry the object
    # before it is known).
    usage_events=TERMINAL,
    absent_headline="invalid",
    count_keys=r".*_tokens",
)

DIALECT = FieldMapDialect(SPEC, check_deepseek, from_gemini=from_gemini, judge=judge_translated)
