"""Tests for what the proxy says: the start banner, the line per response, the summary at exit."""

from pathlib import Path

from usagefix.record import UsageRecord
from usagefix.recordbuild import http_error_record, minimal_record
from usagefix.talk import Listener, Tally, banner, capture_path, live_line
from usagefix.usage import CanonicalUsage

CA = "/home/u/.mitmproxy/mitmproxy-ca-cert.pem"


def founding_bug() -> UsageRecord:
    return UsageRecord.model_validate(
        {
            "dialect": "openai_chat",
            "streamed": True,
            "status": "rewritten",
            "final_seen": True,
            "usage_before": {"input_total": 1678, "cache_read": 105530, "output_total": 370},
            "usage_after": {"input_total": 107208, "cache_read": 105530, "output_total": 370},
            "upstream_usage": {"prompt_tokens": 1678, "completion_tokens": 370, "total_tokens": 2048},
            "emitted_usage": {"prompt_tokens": 107208, "completion_tokens": 370, "total_tokens": 107578},
            "rules": [
                {"rule": "R1", "reason": "cache reads were left out of prompt_tokens"},
                {"rule": "I3", "reason": "total raised"},
                {"rule": "R1", "reason": "again"},
            ],
        }
    )


def test_the_banner_says_the_mode_the_capture_and_what_to_paste() -> None:
    reverse = banner([Listener("reverse", "http://127.0.0.1:8317", "127.0.0.1", 8080)], "/c.mitm", CA)
    assert reverse == [
        "usagefix: reverse proxy in front of http://127.0.0.1:8317, listening at 127.0.0.1:8080",
        "usagefix: point a client here with:",
        "    export OPENAI_BASE_URL=http://127.0.0.1:8080/v1      # OpenAI SDKs, LiteLLM, Open WebUI",
        "    export ANTHROPIC_BASE_URL=http://127.0.0.1:8080      # Anthropic SDKs, Claude Code",
        "usagefix: capture: /c.mitm",
    ]
    trust = f"    export SSL_CERT_FILE={CA} REQUESTS_CA_BUNDLE={CA} NODE_EXTRA_CA_CERTS={CA}"
    regular = banner([Listener("regular", "", "0.0.0.0", 9000)], "x", CA)
    assert regular[2:4] == [
        "    export HTTPS_PROXY=http://127.0.0.1:9000 HTTP_PROXY=http://127.0.0.1:9000",
        trust,
    ]
    upstream = banner([Listener("upstream", "http://corp:3128", "::1", 8080)], "x", CA)
    assert upstream[0] == "usagefix: upstream proxy (through http://corp:3128), listening at [::1]:8080"
    assert upstream[2] == "    export HTTPS_PROXY=http://[::1]:8080 HTTP_PROXY=http://[::1]:8080"
    assert (
        banner([Listener("socks5", "", "::", 1080)], "x", CA)[2]
        == "    export ALL_PROXY=socks5://127.0.0.1:1080"
    )
    wireguard = banner([Listener("wireguard", "", "0.0.0.0", 51820)], "x", CA)
    assert wireguard[2].startswith("    (connect clients with the WireGuard configuration")
    transparent = banner([Listener("transparent", "", "127.0.0.1", 8080)], "x", CA)
    assert transparent[2:] == [
        "    (no client setting in transparent mode: traffic is redirected to it; for HTTPS:)",
        trust,
        "usagefix: capture: x",
    ]


def test_the_capture_path_is_absolute_and_dated(tmp_path: Path) -> None:
    when = 1_800_000_000.0  # 2027-01-15
    import time

    day = time.strftime("%Y%m%d", time.localtime(when))
    assert capture_path("+flows/c-%Y%m%d.mitm", tmp_path, when) == f"{tmp_path}/flows/c-{day}.mitm (appended)"
    assert capture_path("/abs/out.mitm", tmp_path) == "/abs/out.mitm"
    assert capture_path(None, tmp_path) == "not saved (no -w)"


def test_one_line_per_response_leads_with_what_changed() -> None:
    assert live_line(founding_bug(), "gpt-4o", 200) == (
        "usagefix: openai_chat gpt-4o 200 rewritten prompt_tokens 1678→107208, total_tokens 2048→107578 (R1, I3)"
    )
    bare = founding_bug().model_copy(update={"rules": [], "upstream_usage": {"a": None}, "emitted_usage": {}})
    assert live_line(bare, None, None) == "usagefix: openai_chat rewritten a ∅→∅"
    unchanged = founding_bug().model_copy(update={"status": "unchanged"})
    assert live_line(unchanged, "m", 200) == "usagefix: openai_chat m 200 unchanged"
    unmeasured = founding_bug().model_copy(update={"status": "unmeasured"})
    assert (
        live_line(unmeasured, "m", 200) == "usagefix: openai_chat m 200 unmeasured: no usage in the response"
    )
    cut = unmeasured.model_copy(update={"error": "x" * 100})
    assert live_line(cut, "m", 200) == "usagefix: openai_chat m 200 unmeasured: " + "x" * 79 + "…"
    failed = minimal_record("anthropic", True, "boom")
    assert live_line(failed, "claude", 200) == "usagefix: anthropic claude 200 passthrough_error: boom"
    refused = http_error_record("openai_chat", None, 401, "Unauthorized", "the upstream")
    assert live_line(refused, "gpt-4o", 401) == "usagefix: openai_chat gpt-4o 401 http_error"


def test_the_summary_counts_responses_and_the_tokens_restored() -> None:
    tally = Tally()
    assert tally.summary() == "usagefix: 0 LLM responses: 0 rewritten, 0 unmeasured; 0 tokens restored"
    tally.add(founding_bug())
    assert tally.summary() == "usagefix: 1 LLM response: 1 rewritten, 0 unmeasured; 105,530 tokens restored"
    tally.add(founding_bug())
    tally.add(founding_bug().model_copy(update={"status": "unchanged"}))
    tally.add(founding_bug().model_copy(update={"usage_before": None}))  # unknown before: nothing counted
    tally.add(http_error_record("openai_chat", None, 500, "", "the upstream"))
    tally.add(
        founding_bug().model_copy(
            update={"status": "unmeasured", "usage_after": CanonicalUsage(input_total=1, output_total=1)}
        )
    )
    assert tally.summary() == (
        "usagefix: 6 LLM responses: 3 rewritten, 1 unmeasured, 1 http_error, 1 unchanged; 211,060 tokens restored"
    )
