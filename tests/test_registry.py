"""The dialect registry and the spec engine: routing derives from the specs, each provider is one
module, and the engine reads, normalizes and writes back only what a rule changed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from usagefix.dialects import DIALECTS, NAMES, SPECS, Context, Tally, detect, detect_websocket, framing_for
from usagefix.dialects.engine import FieldMapDialect, read_fields
from usagefix.dialects.registry import FILE_SUFFIXES
from usagefix.dialects.spec import DialectSpec, Field
from usagefix.profiles import Profile
from usagefix.rewriter import rewrite_body, rewrite_stream

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "addon" / "usagefix"


def spec(**kw: object) -> DialectSpec:
    base: dict[str, object] = {
        "name": "test",
        "rank": 1,
        "title": "t",
        "paths": (r"/t",),
        "shown_paths": "`/t`",
        "framing_shown": "JSON",
        "usage_at": ("usage",),
        "end_events": ("end",),
        "cumulative": "final_once",
        "fields": (
            Field(key="in", unit="input_total", kind="headline"),
            Field(key="out", unit="output_total", kind="headline"),
        ),
        "emits": ("in", "out"),
        "repairs": "nothing",
    }
    return DialectSpec.model_validate({**base, **kw})


def test_the_registry_holds_every_dialect_module_once_in_rank_order() -> None:
    assert NAMES == tuple(SPECS) == tuple(DIALECTS)
    assert NAMES[:2] == ("openai_chat", "openai_responses") and {
        "ollama",
        "cohere",
        "openai_realtime",
    } <= set(NAMES)
    ranks = [s.rank for s in SPECS.values()]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert all(DIALECTS[n].name == n for n in NAMES)
    assert set(FILE_SUFFIXES.values()) == {"sse", "json_array", "ndjson"}


def test_a_spec_is_strict_and_frozen() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        spec(surprise=True)
    with pytest.raises(ValidationError):
        spec(paths=("(unclosed",))
    s = spec()
    with pytest.raises(ValidationError):
        s.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/api/chat", "ollama"),
        ("/ollama/api/generate", "ollama"),
        ("/v2/chat", "cohere"),
        ("/compat/v2/chat/", "cohere"),
    ],
)
def test_new_providers_are_routed_by_their_spec_alone(path: str, dialect: str) -> None:
    found = detect("POST", path)
    assert found is not None and found.name == dialect


@pytest.mark.parametrize("path", ["/api/chats", "/api/chat/x", "/v2/chatx", "/v1/chat", "/api/embed"])
def test_look_alikes_of_the_new_providers_are_not(path: str) -> None:
    assert detect("POST", path) is None


def test_websockets_are_routed_by_their_spec() -> None:
    assert (
        d := detect_websocket("/backend-api/codex/responses")
    ) is not None and d.name == "openai_responses"
    assert (
        d := detect_websocket("/v1/realtime?model=gpt-realtime")
    ) is not None and d.name == "openai_realtime"
    assert detect_websocket("/socket.io/") is None
    assert detect("POST", "/v1/realtime") is None  # Realtime has no HTTP endpoint


def test_framing_derives_from_the_spec() -> None:
    ollama = DIALECTS["ollama"]
    assert framing_for(ollama, "application/x-ndjson", "/api/chat") == "ndjson"
    assert framing_for(ollama, "application/json", "/api/chat") is None
    assert framing_for(DIALECTS["cohere"], "text/event-stream", "/v2/chat") == "sse"
    assert framing_for(DIALECTS["gemini"], "application/json", "/m/g:streamGenerateContent?alt=sse") is None


# -- which modules name a dialect ---------------------------------------------------------------

# Modules of the package that name a dialect outside its own module, and why. A new provider adds
# nothing here: its module, its golden files and its tests are all it touches. What a dialect's
# requests and responses say (sessions, transcript) and its price provider live in its own module
# (`READERS`, `SPEC.price_provider`): transcript.py, conversation.py and price_models.py read them
# through the registry and name no dialect.
NAMED_ELSEWHERE = {
    # stream usage is asked for in Chat only; a log line's example; Responses shares Chat's hooks
    "openai_chat": {"addon.py", "talk.py", "dialects/openai_responses.py"},
    "openai_responses": set(),
    # InvokeModel answers Claude in Anthropic's own body; `x-api-key` is Anthropic's secret header;
    # `anthropic-beta` tells Claude Code, and turns on the 1M context window; the genai-prices
    # provider in an override's example; vendor prefixes of model names (`anthropic/claude-…`).
    "anthropic": {
        "dialects/bedrock.py",
        "redaction.py",
        "sessions.py",
        "price_overrides.py",
        "price_models.py",
    },
    # a Gemini model behind an OpenAI dialect (R3); Gemini CLI's User-Agent; `models/gemini-…`
    # names, with the prefix a price lookup peels
    "gemini": {"dialects/openai_chat.py", "sessions.py", "price_models.py"},
    "bedrock": {"dialects/base.py"},  # InvokeModel's counts in response headers
}


def modules_naming(name: str) -> set[str]:
    """The package's modules that say `name` (as a word), relative to the package."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    return {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if word.search(p.read_text(encoding="utf-8"))
    }


@pytest.mark.parametrize("name", NAMES)
def test_each_dialect_is_named_by_its_own_module_and_nothing_unlisted(name: str) -> None:
    own = f"dialects/{name}.py"
    assert own in modules_naming(name)
    assert modules_naming(name) - {own} <= NAMED_ELSEWHERE.get(name, set())
    assert set(NAMED_ELSEWHERE) <= set(NAMES)  # no entry left for a dialect that is gone


@pytest.mark.parametrize("module", ["transcript.py", "conversation.py", "price_models.py"])
def test_sessions_transcript_and_prices_key_nothing_by_a_dialects_name(module: str) -> None:
    """They read each dialect's facts through the registry (`READERS`, `SPEC.price_provider`):
    no dialect's name as a word in the first two, none as a string (a table's key) in any."""
    text = (PACKAGE / module).read_text(encoding="utf-8")
    assert not any(re.search(rf"[\"']{re.escape(n)}[\"']", text) for n in NAMES)
    if module != "price_models.py":  # its comments name vendors' model prefixes (`anthropic/…`)
        assert not any(module in modules_naming(n) for n in NAMES)


# -- the engine ---------------------------------------------------------------------------------


def test_the_engine_reads_the_first_reported_key_or_alias() -> None:
    fields = (Field(key="a.x", unit="input_total", kind="headline", aliases=("y",)),)
    assert read_fields({"a": None, "y": 3}, fields).counts == {"input_total/headline": (3, "y")}
    assert read_fields({"a": {"x": -1}}, fields).counts == {"input_total/headline": (0, "a.x")}


def test_an_exclusive_field_map_is_normalized_as_exclusive() -> None:
    fields = (
        Field(key="in", unit="input_total", kind="headline"),
        Field(key="read", unit="cache_read", kind="beside"),
        Field(key="out", unit="output_total", kind="headline"),
        Field(key="billed.in", unit="input_total", kind="headline"),
    )
    d = FieldMapDialect(spec(fields=fields, untouched=("billed",)))
    tally = Tally()
    body = '{"usage": {"in": -2, "read": 10, "out": 3}}'
    assert d.normalize_body(body, tally, Context()) == '{"usage": {"in": 0, "read": 10, "out": 3}}'
    assert tally.after is not None and tally.after.input_total == 10
    # Never written under `untouched`, even where a count would change.
    assert d.normalize_body('{"usage": {"billed": {"in": -1}, "out": 1}}', Tally(), Context()) is None


def test_the_engine_leaves_what_is_not_its_usage() -> None:
    d = FieldMapDialect(spec())
    for body in ("[]", '{"usage": 3}', '{"other": {}}', '{"usage": {"in": null, "out": null}}'):
        tally = Tally()
        assert d.normalize_body(body, tally, Context()) is None
        assert tally.snapshots == 0
    assert not d.is_end(None, "not json") and not d.is_end(None, "[1]")
    assert d.is_end("end", "{}") and not d.is_end("other", '{"type": "x"}')
    session = d.stream_session(Tally(), Context())
    assert session.normalize_event(None, "[]") is None


def test_observe_only_records_what_would_be_repaired() -> None:
    watch = Context(profile=Profile(name="watch", observe_only=True))
    body = b'{"message": {}, "done": true, "prompt_eval_count": -1, "eval_count": 2}'
    result = rewrite_body(DIALECTS["ollama"], body, watch)
    assert result.body is None
    t = result.result.tally
    assert t.final_seen and "would_repair:I4" in t.anomalies


def test_an_ndjson_stream_is_rewritten_by_the_spec() -> None:
    body = b'{"done":false}\n{"done":true,"prompt_eval_count":5,"eval_count":-4}\n'
    out, rw = rewrite_stream(DIALECTS["ollama"], body, framing="ndjson")
    assert json.loads(out.splitlines()[1]) == {"done": True, "prompt_eval_count": 5, "eval_count": 0}
    assert rw.ended and rw.result.tally.final_seen


def test_a_chat_block_with_one_headline_and_not_the_other_is_invalid() -> None:
    result = rewrite_body(DIALECTS["openai_chat"], b'{"usage": {"prompt_tokens": 3, "total_tokens": 3}}')
    assert result.body is None
    assert result.result.tally.anomalies == ["invalid_usage: usage has no completion_tokens"]


def test_an_invalid_chat_block_is_told_by_what_it_lacks_and_what_it_sent_as_null() -> None:
    body = b'{"usage": {"prompt_tokens": null, "completion_tokens": 3, "total_tokens": 3}}'
    result = rewrite_body(DIALECTS["openai_chat"], body)
    assert result.body is None
    assert result.result.tally.anomalies == ["invalid_usage: usage has prompt_tokens null"]
    result = rewrite_body(DIALECTS["openai_chat"], b'{"usage": {"prompt_tokens": null, "total_tokens": 5}}')
    assert result.result.tally.anomalies == [
        "invalid_usage: usage has prompt_tokens null and no completion_tokens"
    ]


def test_the_i4_pattern_clamps_every_negative_count_but_what_is_untouched() -> None:
    d = FieldMapDialect(spec(untouched=("billed",), count_keys=r".*"))
    body = '{"usage": {"in": -1, "out": 2, "billed": {"in": -3}, "extra": {"n": -2}}}'
    new = d.normalize_body(body, Tally(), Context())
    assert new == '{"usage": {"in": 0, "out": 2, "billed": {"in": -3}, "extra": {"n": 0}}}'


def test_cohere_checks_billed_units_only_beside_tokens() -> None:
    from usagefix.dialects.cohere import check_billed

    for usage in ({"billed_units": {"input_tokens": 9}}, {"tokens": {"input_tokens": 1}}):
        tally = Tally()
        check_billed(usage, tally)
        assert tally.anomalies == []
    tally = Tally()
    check_billed({"billed_units": {"output_tokens": 3}, "tokens": {"output_tokens": 2}}, tally)
    assert tally.anomalies == ["billed_exceeds_processed:output_tokens"]


def test_a_profile_names_only_a_dialect_the_registry_knows() -> None:
    assert Profile(name="p", dialect="ollama").dialect == "ollama"
    with pytest.raises(ValidationError, match="Input should be 'openai_chat', 'openai_responses'"):
        Profile(name="p", dialect="openai")
