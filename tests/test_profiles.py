"""Upstream profiles, dialect detection, and asking streams for usage on the client's behalf."""

import json
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from usagefix.addon import UsageFix
from usagefix.dialects import DIALECTS, Context, detect, framing_for, model_from_path
from usagefix.profiles import BUILTIN_PROFILES, Profile, ProfileError, ProfileSet, load_profiles
from usagefix.recordbuild import build_record
from usagefix.rewriter import rewrite_body, rewrite_stream

GOLDEN = Path(__file__).parent.parent / "flows" / "golden"

AMBIGUOUS = (
    b'{"model":"claude-sonnet-4-5","choices":[],"usage":{"prompt_tokens":1678,"completion_tokens":370,'
    b'"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":1500}}}'
)


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/v1/chat/completions", "openai_chat"),
        ("/openai/deployments/gpt4o/chat/completions?api-version=2025-01-01", "openai_chat"),
        ("/api/v1/chat/completions", "openai_chat"),
        ("/v1/responses", "openai_responses"),
        ("/v1/messages", "anthropic"),
        ("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "gemini"),
        ("/v1/projects/p/locations/us/publishers/google/models/gemini-2.5-pro:generateContent", "gemini"),
        (
            "/v1/projects/p/locations/us/publishers/anthropic/models/claude-sonnet-4-5:streamRawPredict",
            "anthropic",
        ),
        ("/model/amazon.nova-pro-v1%3A0/converse-stream", "bedrock"),
        ("/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke", "bedrock"),
    ],
)
def test_detection(path: str, dialect: str) -> None:
    found = detect("POST", path)
    assert found is not None and found.name == dialect


@pytest.mark.parametrize("path", ["/v1/models", "/v1/messages/count_tokens", "/v1/embeddings", "/"])
def test_not_llm(path: str) -> None:
    assert detect("POST", path) is None
    assert detect("GET", "/v1/chat/completions") is None


def test_framing_and_model_from_path() -> None:
    gemini = DIALECTS["gemini"]
    assert framing_for(gemini, "application/json", "/v1beta/models/g:streamGenerateContent") == "json_array"
    assert framing_for(gemini, "text/event-stream", "/v1beta/models/g:streamGenerateContent?alt=sse") == "sse"
    assert framing_for(gemini, "application/json", "/v1beta/models/g:generateContent") is None
    assert framing_for(DIALECTS["bedrock"], "application/vnd.amazon.eventstream", "/model/x/converse-stream")
    assert model_from_path("/v1beta/models/gemini-2.5-pro:generateContent") == "gemini-2.5-pro"
    assert model_from_path("/model/amazon.nova-pro-v1:0/converse") == "amazon.nova-pro-v1:0"


def test_profile_file_is_validated_with_key_and_line(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[[profile]]\nname = "cli"\nhost = "127.0.0.1:8317"\nmodel = "claude-*"\nprompt_cache_reads = "excluded"\n'
    )
    (p,) = load_profiles(good)
    assert p.matches("127.0.0.1", 8317, "/v1/chat/completions", "claude-opus-4-1")
    assert not p.matches("127.0.0.1", 8318, "/v1/chat/completions", "claude-opus-4-1")
    assert not p.matches("127.0.0.1", 8317, "/v1/chat/completions", "gpt-5")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[profile]]\nname = "cli"\n\nprompt_cache_read = "excluded"\n')
    with pytest.raises(ProfileError, match=r"profile\.0\.prompt_cache_read \(line 4\): Extra inputs"):
        load_profiles(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[[profile]]\nname = "x"\ncompletion_reasoning = "sometimes"\n')
    with pytest.raises(ProfileError, match=r"completion_reasoning \(line 3\)"):
        load_profiles(wrong)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[profile]\n")
    with pytest.raises(ProfileError, match="broken.toml"):
        load_profiles(broken)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profiles(tmp_path / "missing.toml")


def test_bad_profile_option_stops_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[profile]]\nname = "x"\nhots = "a"\n')
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"usage_profiles: .*hots \(line 3\)"):
            tctx.configure(addon, usage_profiles=str(bad))


def test_builtin_profiles() -> None:
    profiles = ProfileSet()
    assert profiles.match("api.x.ai", 443, "/v1/chat/completions", "grok-4") == BUILTIN_PROFILES[0]
    assert profiles.match("example.com", 443, "/v1/chat/completions", None) is None
    user = Profile(name="mine", host="api.x.ai", completion_reasoning="included")
    assert ProfileSet([user]).match("api.x.ai", 443, "/", None) == user  # user profiles come first


def test_ambiguous_block_is_flagged_without_a_profile_and_repaired_with_one() -> None:
    chat = DIALECTS["openai_chat"]
    plain = rewrite_body(chat, AMBIGUOUS)
    assert plain.body is None and "ambiguous_inclusivity" in build_record(plain.result).anomalies
    cli = Profile(name="cli", prompt_cache_reads="excluded")
    fixed = rewrite_body(chat, AMBIGUOUS, Context(profile=cli))
    assert fixed.body is not None
    assert json.loads(fixed.body)["usage"]["prompt_tokens"] == 3178
    rec = build_record(fixed.result)
    assert rec.profile == "cli" and [r.rule for r in rec.rules] == ["R1", "I3"]
    assert "ambiguous_inclusivity" not in rec.anomalies
    inclusive = rewrite_body(
        chat, AMBIGUOUS, Context(profile=Profile(name="in", prompt_cache_reads="included"))
    )
    assert inclusive.body is None and "ambiguous_inclusivity" not in build_record(inclusive.result).anomalies


def test_observe_only_profile_records_without_rewriting() -> None:
    body = (GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
    result = rewrite_body(
        DIALECTS["openai_chat"], body, Context(profile=Profile(name="watch", observe_only=True))
    )
    rec = build_record(result.result)
    assert result.body is None and rec.status == "unchanged" and "would_repair:R1" in rec.anomalies


def test_declared_reasoning_outside_completion_applies_where_the_numbers_are_silent() -> None:
    body = b'{"usage":{"prompt_tokens":10,"completion_tokens":50,"completion_tokens_details":{"reasoning_tokens":20}}}'
    xai = Context(profile=BUILTIN_PROFILES[0])
    result = rewrite_body(DIALECTS["openai_chat"], body, xai)
    assert result.body is not None and json.loads(result.body)["usage"]["completion_tokens"] == 70
    assert "total_tokens" not in json.loads(result.body)["usage"]  # R5 names no total: none added


def test_a_declaration_the_total_contradicts_does_not_apply() -> None:
    # total = prompt + completion: by its own arithmetic the upstream counts reasoning inside.
    body = b'{"usage":{"prompt_tokens":10,"completion_tokens":50,"total_tokens":60,"completion_tokens_details":{"reasoning_tokens":20}}}'
    result = rewrite_body(DIALECTS["openai_chat"], body, Context(profile=BUILTIN_PROFILES[0]))
    rec = build_record(result.result)
    assert result.body is None and rec.status == "unchanged" and rec.rules == []
    assert "declaration_contradicted:completion_reasoning" in rec.anomalies


def test_the_xai_profile_does_not_reach_xais_responses_api() -> None:
    profiles = ProfileSet()
    assert profiles.match("api.x.ai", 443, "/v1/chat/completions", "grok-4") is not None
    assert profiles.match("api.x.ai", 443, "/v1/responses", "grok-4") is None
    # xAI's Responses usage counts reasoning inside output_tokens: total = input + output.
    body = b'{"object":"response","usage":{"input_tokens":180,"input_tokens_details":{"cached_tokens":160},"output_tokens":350,"output_tokens_details":{"reasoning_tokens":323},"total_tokens":530}}'
    profile = profiles.match("api.x.ai", 443, "/v1/responses", "grok-4")
    result = rewrite_body(DIALECTS["openai_responses"], body, Context(profile=profile))
    assert result.body is None and build_record(result.result).rules == []
    # Even a profile that says "excluded" does not apply where the total contradicts it.
    forced = rewrite_body(DIALECTS["openai_responses"], body, Context(profile=BUILTIN_PROFILES[0]))
    assert forced.body is None


def test_a_declared_inclusive_upstream_is_not_repaired_by_r5() -> None:
    # OpenRouter: reasoning 11 > completion 10, but total 53 = 43 + 10.
    body = b'{"usage":{"prompt_tokens":43,"completion_tokens":10,"total_tokens":53,"completion_tokens_details":{"reasoning_tokens":11}}}'
    openrouter = ProfileSet().match("openrouter.ai", 443, "/api/v1/chat/completions", "x-ai/grok-4")
    assert openrouter is not None and openrouter.completion_reasoning == "included"
    for ctx in (Context(profile=openrouter), Context()):
        result = rewrite_body(DIALECTS["openai_chat"], body, ctx)
        rec = build_record(result.result)
        assert result.body is None and rec.rules == [] and "reasoning_exceeds_completion" in rec.anomalies


STREAM_ASKED_FOR_NOTHING = (GOLDEN / "openai_chat/fix-founding-bug-stream.upstream.sse").read_bytes()


def test_stream_usage_added_for_us_is_removed_for_the_client() -> None:
    out, rw = rewrite_stream(
        DIALECTS["openai_chat"], STREAM_ASKED_FOR_NOTHING, ctx=Context(strip_usage_chunk=True)
    )
    assert b'"usage"' not in out
    assert out.count(b"data: ") == 4 and out.endswith(b"data: [DONE]\n\n")
    for line in out.splitlines():
        if line.startswith(b"data: {"):
            json.loads(line[6:])
    rec = build_record(rw.result, stream_usage_added=True)
    assert rec.final_seen and rec.usage_after is not None and rec.usage_after.input_total == 107208
    # Measured for the record, but the client got no usage block: the record says none.
    assert rec.emitted_usage is None and rec.upstream_usage is not None


async def test_request_is_asked_for_stream_usage_when_enabled() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, usage_request_stream_usage=True)
        body = {"model": "m", "stream": True, "messages": [], "stream_options": {"other": 1}}
        req = tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=json.dumps(body).encode())
        f = tflow.tflow(req=req)
        addon.requestheaders(f)
        addon.request(f)
        sent = json.loads(f.request.content or b"")
        assert sent["stream_options"] == {"other": 1, "include_usage": True}
        # A client that asked gets its stream as is.
        body["stream_options"] = {"include_usage": True}
        g = tflow.tflow(
            req=tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=json.dumps(body).encode())
        )
        raw = g.request.content
        addon.request(g)
        assert g.request.content == raw
        # Off by default.
        tctx.configure(addon, usage_request_stream_usage=False)
        h = tflow.tflow(
            req=tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=b'{"stream":true}')
        )
        addon.request(h)
        assert h.request.content == b'{"stream":true}'
        assert isinstance(h.request, http.Request)


def test_the_readme_example_is_a_valid_profile_file(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "p.toml").write_text(example)
    names = [p.name for p in load_profiles(tmp_path / "p.toml")]
    assert names == ["cliproxy-claude", "lab-gateway", "watch-only"]


def test_a_profile_matches_the_name_the_client_asked_for_not_only_the_address() -> None:
    # Transparent mode: the address is the destination IP, the name comes from Host / SNI.
    mine = Profile(name="mine", host="api.example-llm.com", dialect="openai_chat")
    profiles = ProfileSet([mine])
    assert profiles.match("10.200.1.1", 443, "/v1/chat/completions", None) is None
    assert profiles.match("10.200.1.1", 443, "/x", None, ("api.example-llm.com",)) == mine
    assert profiles.may_set_dialect("10.200.1.1", 443, "/x", ("api.example-llm.com",))
    assert not profiles.may_set_dialect("10.200.1.1", 443, "/x")
    assert (
        ProfileSet().match("10.0.0.9", 443, "/v1/chat/completions", None, ("api.x.ai",))
        == BUILTIN_PROFILES[0]
    )
    port = Profile(name="port", host="llm.internal:8443")
    assert port.matches("10.0.0.9", 8443, "/", None, names=("llm.internal",))


@pytest.mark.parametrize("via", ["host header", "sni"])
def test_the_addon_matches_profiles_by_the_name_asked_for_in_transparent_mode(
    tmp_path: Path, via: str
) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text(
        '[[profile]]\nname = "mine"\nhost = "api.example-llm.com"\nprompt_cache_reads = "excluded"\n'
    )
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, usage_profiles=str(toml))
        req = tutils.treq(
            method=b"POST", host="10.200.1.1", port=443, path=b"/v1/chat/completions", content=b"{}"
        )
        req.headers["host"] = "api.example-llm.com:443" if via == "host header" else "10.200.1.1"
        f = tflow.tflow(req=req)
        f.client_conn.sni = "api.example-llm.com" if via == "sni" else None
        f.response = tutils.tresp(content=AMBIGUOUS, headers=http.Headers(content_type="application/json"))
        addon.requestheaders(f)
        addon.request(f)
        addon.responseheaders(f)
        addon.response(f)
    assert f.metadata["usagefix"]["profile"] == "mine"
    assert f.metadata["usagefix"]["status"] == "rewritten"
