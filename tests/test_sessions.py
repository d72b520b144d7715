"""Sessions from each client's own keys, generic keys, and the three fallbacks; lanes; bounded memory."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagefix.exchange import ExchangeFacts, ResponseFacts, SessionInfo
from usagefix.sessions import SessionTracker, recognise_client

UUID = "3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f60718"


def facts(headers: dict[str, str] | None = None, body: Any = None, flow_id: str = "f1") -> ExchangeFacts:
    return ExchangeFacts(
        flow_id=flow_id,
        ts_start=0.0,
        ts_end=1.0,
        method="POST",
        scheme="https",
        host="api.example.com",
        port=443,
        path="/v1/messages",
        request_headers=tuple((headers or {}).items()),
        request_body=body,
        status_code=200,
        response_content_type="application/json",
        response_body=b"{}",
    )


def one(headers: dict[str, str], body: Any = None, dialect: str = "anthropic", **kw: Any) -> SessionInfo:
    return SessionTracker(**kw).step(facts(headers, body), dialect, ResponseFacts())


CLAUDE_UA = {"User-Agent": "claude-cli/2.1.90 (external, cli)"}
CODEX_UA = {"user-agent": "codex_cli_rs/0.120.0 (Debian 12; x86_64) xterm"}


@pytest.mark.parametrize(
    ("headers", "body", "client", "key", "source"),
    [
        ({**CLAUDE_UA, "X-Claude-Code-Session-Id": UUID}, None, "claude-code", f"claude:{UUID}", "header"),
        ({"x-claude-code-session-id": UUID}, None, "claude-code", f"claude:{UUID}", "header"),
        (
            CLAUDE_UA,
            {
                "metadata": {
                    "user_id": json.dumps({"device_id": "d", "account_uuid": "a", "session_id": UUID})
                }
            },
            "claude-code",
            f"claude:{UUID}",
            "body",
        ),
        (
            CLAUDE_UA,
            {"metadata": {"user_id": f"user_{'ab' * 32}_account__session_{UUID}"}},
            "claude-code",
            f"claude:{UUID}",
            "body",
        ),
        ({**CODEX_UA, "session-id": "sess-1", "thread-id": "th-1"}, None, "codex", "codex:sess-1", "header"),
        (
            {**CODEX_UA, "session_id": "sess-2", "conversation_id": "sess-2"},
            None,
            "codex",
            "codex:sess-2",
            "header",
        ),
        ({"originator": "codex_cli_rs", "conversation_id": "c-3"}, None, "codex", "codex:c-3", "header"),
        ({**CODEX_UA, "thread-id": "th-only"}, None, "codex", "codex:th-only", "header"),
        (
            {"User-Agent": "opencode/1.2.3", "x-session-affinity": "ses_1", "X-Session-Id": "ses_1"},
            None,
            "opencode",
            "opencode:ses_1",
            "header",
        ),
        (
            {"User-Agent": "opencode/1.2.3", "x-opencode-session": "ses_z"},
            None,
            "opencode",
            "opencode:ses_z",
            "header",
        ),
        (
            {"User-Agent": "opencode/1.2.3", "X-Session-Id": "ses_y"},
            None,
            "opencode",
            "opencode:ses_y",
            "header",
        ),
        ({"User-Agent": "mux/0.9.0 ai-sdk", "X-Mux-Workspace-Id": "ws-1"}, None, "mux", "mux:ws-1", "header"),
        (
            {"User-Agent": "Kilo-Code/4.1", "X-KiloCode-TaskId": "task-9"},
            None,
            "kilo",
            "kilo:task-9",
            "header",
        ),
        (
            {"User-Agent": "GitHubCopilotChat/0.30", "x-interaction-id": "int-1"},
            None,
            "copilot",
            "copilot:int-1",
            "header",
        ),
        (
            {"User-Agent": "copilot/1.0", "X-Client-Session-Id": "cs-1"},
            None,
            "copilot",
            "copilot:cs-1",
            "header",
        ),
        (
            {"User-Agent": "OpenAI/Python 1.99", "x-session-id": "or-1"},
            None,
            None,
            "session-id:or-1",
            "header",
        ),
        ({}, {"session_id": "or-body", "messages": []}, None, "session-id:or-body", "body"),
        ({"x-litellm-session-id": "ll-1"}, None, None, "litellm:ll-1", "header"),
        ({"Helicone-Session-Id": "hh-1"}, None, None, "helicone:hh-1", "header"),
        ({"x-qwen-code-session-id": "abcdefgh12"}, None, None, "x-qwen-code-session-id:abcdefgh12", "header"),
        ({"User-Agent": "roo-code/3.0"}, None, "roo", None, None),
        ({"User-Agent": "GeminiCLI/0.9/gemini-2.5-pro (linux)"}, None, "gemini-cli", None, None),
        ({"anthropic-beta": "claude-code-20250219,oauth", "x-app": "cli"}, None, "claude-code", None, None),
    ],
)
def test_each_clients_key(
    headers: dict[str, str], body: Any, client: str | None, key: str | None, source: str | None
) -> None:
    info = one(headers, body)
    assert (info.client, info.key, info.source) == (client, key, source)


def test_one_clients_key_is_never_read_as_anothers() -> None:
    # Codex's bare `session-id` means nothing from another client; opencode's `X-Session-Id` is
    # opencode's own, while from anyone else it is OpenRouter's.
    assert one({"User-Agent": "curl/8", "session-id": "s-1"}).key is None
    assert one({"User-Agent": "opencode/1", "X-Session-Id": "x1"}).key == "opencode:x1"
    assert one({"User-Agent": "curl/8", "X-Session-Id": "x1"}).key == "session-id:x1"
    # A Claude Code request that also carries a gateway's key: the client's own comes first.
    assert (
        one({**CLAUDE_UA, "X-Claude-Code-Session-Id": UUID, "x-litellm-session-id": "ll"}).key
        == f"claude:{UUID}"
    )
    # Its own keys absent: generic keys still apply.
    assert one({**CLAUDE_UA, "Helicone-Session-Id": "h1"}).key == "helicone:h1"


def test_bad_values_are_not_keys() -> None:
    assert one({"x-qwen-code-session-id": "short"}).key is None  # LiteLLM's value rule: 8+ id chars
    assert one({"x-parent-session-id": "abcdefgh12"}).key is None
    assert one({"x-litellm-session-id": "   "}).key is None
    assert one({"x-litellm-session-id": "x" * 257}).key is None
    assert one({}, {"session_id": " "}).key is None
    for user_id in ("{not json", json.dumps(["x"]), json.dumps({"session_id": ""}), "user_abc", 7):
        assert one(CLAUDE_UA, {"metadata": {"user_id": user_id}}).key is None


def test_a_user_named_header_comes_before_the_generic_ones() -> None:
    headers = {"X-My-Run": "run-7", "x-litellm-session-id": "ll"}
    assert one(headers, extra_headers=["X-My-Run", " "]).key == "x-my-run:run-7"
    assert one(headers).key == "litellm:ll"
    assert one({"x-litellm-session-id": "ll"}, extra_headers=["X-My-Run"]).key == "litellm:ll"


@pytest.mark.parametrize(
    ("headers", "lane", "parent"),
    [
        ({**CLAUDE_UA, "X-Claude-Code-Session-Id": UUID}, "main", None),
        (
            {**CLAUDE_UA, "X-Claude-Code-Session-Id": UUID, "x-claude-code-agent-id": "agent-1"},
            "agent-1",
            "main",
        ),
        (
            {
                **CLAUDE_UA,
                "X-Claude-Code-Session-Id": UUID,
                "x-claude-code-agent-id": "a-2",
                "x-claude-code-parent-agent-id": "agent-1",
            },
            "a-2",
            "agent-1",
        ),
        (
            {**CODEX_UA, "session-id": "root", "thread-id": "t-2", "x-codex-parent-thread-id": "root"},
            "t-2",
            "main",
        ),
        (
            {**CODEX_UA, "session-id": "root", "thread-id": "t-3", "x-codex-parent-thread-id": "t-2"},
            "t-3",
            "t-2",
        ),
        ({**CODEX_UA, "session-id": "root", "x-openai-subagent": "compact"}, "compact", "main"),
        ({**CODEX_UA, "session-id": "root", "x-codex-parent-thread-id": "root"}, "subagent", "main"),
        (
            {"User-Agent": "opencode/1", "x-session-affinity": "child", "x-parent-session-id": "root"},
            "child",
            "main",
        ),
        (
            {"User-Agent": "opencode/1", "X-Session-Id": "child", "x-parent-session-id": "root"},
            "child",
            "main",
        ),
        ({"User-Agent": "opencode/1", "x-parent-session-id": "root"}, "subagent", "main"),
    ],
)
def test_lanes(headers: dict[str, str], lane: str, parent: str | None) -> None:
    info = one(headers)
    assert (info.lane, info.parent_lane) == (lane, parent)


def test_opencode_subagents_roll_up_to_the_root_session() -> None:
    t = SessionTracker()
    ua = {"User-Agent": "opencode/1"}
    child = t.step(
        facts({**ua, "x-session-affinity": "child", "x-parent-session-id": "root"}),
        "openai_chat",
        ResponseFacts(),
    )
    grandchild = t.step(
        facts({**ua, "x-session-affinity": "gc", "x-parent-session-id": "child"}),
        "openai_chat",
        ResponseFacts(),
    )
    assert child.key == grandchild.key == "opencode:root"
    assert (grandchild.lane, grandchild.parent_lane) == ("gc", "main")


CHAT_FIRST = {
    "messages": [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "fix it"}]
}


def chat_step(n: int, call_ids: list[str]) -> dict[str, Any]:
    msgs = [*CHAT_FIRST["messages"]]
    msgs.append({"role": "assistant", "tool_calls": [{"id": c} for c in call_ids]})
    msgs += [{"role": "tool", "tool_call_id": c, "content": "r"} for c in call_ids]
    return {"messages": msgs}


def test_tool_call_continuation_links_each_step_to_the_exchange_that_asked() -> None:
    t = SessionTracker()
    first = t.step(facts({}, CHAT_FIRST, "x1"), "openai_chat", ResponseFacts(tool_call_ids=("call_1",)))
    assert first.source == "fingerprint" and first.key is not None and first.key.startswith("fp:")
    second = t.step(
        facts({}, chat_step(1, ["call_1"]), "x2"),
        "openai_chat",
        ResponseFacts(tool_call_ids=("call_2", "call_3")),
    )
    third = t.step(facts({}, chat_step(2, ["call_2", "call_3"]), "x3"), "openai_chat", ResponseFacts())
    assert (second.key, second.source, second.parent_exchange_id) == (first.key, "tool_call", "x1")
    assert (third.key, third.source, third.parent_exchange_id) == (first.key, "tool_call", "x2")
    # An unknown tool-call id: not a continuation; the fingerprint still finds the session.
    stray = t.step(facts({}, chat_step(3, ["call_zzz"]), "x4"), "openai_chat", ResponseFacts())
    assert (stray.key, stray.source, stray.parent_exchange_id) == (first.key, "fingerprint", None)


def test_tool_call_continuation_without_any_prefix_to_fingerprint() -> None:
    t = SessionTracker()
    t.step(
        facts({"Helicone-Session-Id": "h-1"}, None, "a1"),
        "anthropic",
        ResponseFacts(tool_call_ids=("toolu_1",)),
    )
    body = {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}]}
    info = t.step(facts({}, body, "a2"), "anthropic", ResponseFacts())
    assert (info.key, info.source, info.parent_exchange_id) == ("helicone:h-1", "tool_call", "a1")
    # A header session still records the exchange it continues.
    named = t.step(facts({"Helicone-Session-Id": "h-2"}, body, "a3"), "anthropic", ResponseFacts())
    assert (named.key, named.source, named.parent_exchange_id) == ("helicone:h-2", "header", "a1")


def test_previous_response_id_chains_and_a_subagent_lane_carries_over() -> None:
    t = SessionTracker()
    first = t.step(
        facts({}, {"input": "hello", "instructions": "sys"}, "r1"),
        "openai_responses",
        ResponseFacts(response_id="resp_1"),
    )
    second = t.step(
        facts({}, {"previous_response_id": "resp_1", "input": []}, "r2"),
        "openai_responses",
        ResponseFacts(response_id="resp_2"),
    )
    third = t.step(
        facts({}, {"previous_response_id": "resp_2", "input": []}, "r3"), "openai_responses", ResponseFacts()
    )
    assert first.source == "fingerprint"
    assert (second.key, second.source, second.previous_response_id) == (first.key, "chain", "resp_1")
    assert (third.key, third.source) == (first.key, "chain")
    # The chain's start was never seen: the chain is named after it.
    orphan = t.step(
        facts({}, {"previous_response_id": "resp_unseen", "input": []}, "r4"),
        "openai_responses",
        ResponseFacts(),
    )
    assert (orphan.key, orphan.source) == ("chain:resp_unseen", "chain")
    # A keyless continuation of a subagent's exchange stays in the subagent's lane.
    sub = {**CLAUDE_UA, "X-Claude-Code-Session-Id": UUID, "x-claude-code-agent-id": "ag"}
    t.step(facts(sub, None, "s1"), "anthropic", ResponseFacts(tool_call_ids=("toolu_s",)))
    cont = t.step(
        facts(
            {},
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_s"}]}]},
            "s2",
        ),
        "anthropic",
        ResponseFacts(),
    )
    assert (cont.key, cont.lane, cont.parent_lane) == (f"claude:{UUID}", "ag", "main")


def test_a_websocket_turn_nothing_else_places_is_in_its_connection_s_session() -> None:
    # A Realtime connection names no session on its upgrade, and its turns carry no chain, tool
    # result or prefix: the connection is what they share. Everything else still comes first,
    # since one socket may carry several conversations (the Agents SDK shares one).
    t = SessionTracker()

    def turn(
        i: int, headers: dict[str, str], body: Any, connection: str = "ws1", dialect: str = "openai_realtime"
    ) -> SessionInfo:
        f = dataclasses.replace(facts(headers, body, f"{connection}#{i}"), connection=connection)
        return t.step(f, dialect, ResponseFacts(response_id=f"resp_{connection}_{i}"))

    first, second = turn(3, {}, {"type": "response.create"}), turn(6, {}, {"input": "and then?"})
    assert (first.key, first.source) == (second.key, second.source) == ("ws:ws1", "connection")
    assert turn(2, {}, {"type": "response.create"}, "ws2").key == "ws:ws2"  # another connection
    named = turn(4, {**CODEX_UA, "session-id": UUID}, {"type": "response.create"}, "ws4")
    assert (named.key, named.source) == (f"codex:{UUID}", "header")
    # Responses turns on one shared socket: each conversation by its prefix, as over HTTP; a
    # chain joins the session of the response it continues, on whatever connection.
    a = turn(1, {}, {"instructions": "sys", "input": "task A"}, "ws6", "openai_responses")
    b = turn(2, {}, {"instructions": "sys", "input": "task B"}, "ws6", "openai_responses")
    assert a.source == b.source == "fingerprint" and a.key != b.key
    chained = turn(1, {}, {"previous_response_id": "resp_ws6_1", "input": []}, "ws7", "openai_responses")
    assert (chained.key, chained.source) == (a.key, "chain")


def test_nothing_to_go_on_gives_no_session() -> None:
    assert one({}, {"messages": []}) == SessionInfo(key=None, source=None, client=None)
    assert one({}, None, dialect="unknown").key is None


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=80))
def test_memory_is_bounded_and_the_oldest_is_forgotten_first(bound: int, steps: int) -> None:
    t = SessionTracker(max_index=bound)
    for i in range(steps):
        response = ResponseFacts(response_id=f"resp_{i}", tool_call_ids=(f"c{i}a", f"c{i}b"))
        t.step(facts({"x-litellm-session-id": f"ll-{i}"}, None, f"e{i}"), "openai_chat", response)
        child = {"User-Agent": "opencode/1", "x-session-affinity": f"ch{i}", "x-parent-session-id": f"p{i}"}
        t.step(facts(child, None, f"o{i}"), "openai_chat", ResponseFacts())
    assert len(t._responses.items) <= bound and len(t._tool_calls.items) <= bound and len(t._roots) <= bound
    if steps:
        last = steps - 1
        body = {"messages": [{"role": "tool", "tool_call_id": f"c{last}b"}]}
        assert t.step(facts({}, body, "z"), "openai_chat", ResponseFacts()).parent_exchange_id == f"e{last}"
    if steps > bound:  # the first exchange's ids are gone
        body = {"messages": [{"role": "tool", "tool_call_id": "c0a"}]}
        assert t.step(facts({}, body, "y"), "openai_chat", ResponseFacts()).key is None


def test_recognise_client_reads_only_headers_it_knows() -> None:
    assert recognise_client({}) is None
    assert recognise_client({"user-agent": "Agents/Python 0.3.0"}) == "openai-agents"
    assert recognise_client({"user-agent": "zed/0.200"}) == "zed"
    assert recognise_client({"x-app": "cli", "anthropic-beta": "oauth"}) is None
