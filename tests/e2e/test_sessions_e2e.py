"""Issue 11, end to end: three agent loops through a real mitmdump, with the real SDKs, then
`usagefix report --json` over the ledger and over the flow file.

- a Claude-Code-shaped Anthropic tool loop (session header, 1h cache writes then reads, streamed);
- a Codex-shaped Responses loop (`session-id` header, streamed);
- an OpenAI-compatible chat loop with no session id at all, found by tool-call continuation, whose
  first step carries the founding bug (`prompt_tokens: 1678` beside `cached_tokens: 105530`).

Expected costs are computed here, independently, with genai-prices' own `calc_price` on each
step's corrected usage: the report must agree to the last digit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from genai_prices import Usage, calc_price
from upstream import Scenario, Upstream

from conftest import ROOT, start_mitmdump, stop

pytestmark = pytest.mark.e2e

USAGEFIX = Path(sys.executable).with_name("usagefix")
CLAUDE_SESSION = "5d1c7a36-2f7e-4c55-9a8e-0c6f3b1d2e4a"
CODEX_SESSION = "019a5e2b-7c1d-7f00-8a3b-6e2d9c4f1a07"


def sse(*events: tuple[str | None, dict[str, Any]]) -> bytes:
    out = b""
    for name, data in events:
        if name is not None:
            out += f"event: {name}\n".encode()
        out += b"data: " + json.dumps(data).encode() + b"\n\n"
    return out


def anthropic_step(
    n: int, *, fresh: int, write_1h: int, read: int, output: int, tool_id: str | None
) -> bytes:
    """A Claude Code step as Anthropic streams it: the prompt-side counts in message_start, and a
    message_delta that carries only `output_tokens` (the full snapshot is R4's to restore)."""
    start_usage = {
        "input_tokens": fresh,
        "cache_creation_input_tokens": write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": 1,
    }
    msg = {
        "id": f"msg_loop_{n}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    block: dict[str, Any] = (
        {"type": "tool_use", "id": tool_id, "name": "read_file", "input": {}}
        if tool_id
        else {"type": "text", "text": ""}
    )
    delta: dict[str, Any] = (
        {"type": "input_json_delta", "partial_json": '{"path": "a.py"}'}
        if tool_id
        else {"type": "text_delta", "text": "Done."}
    )
    return sse(
        ("message_start", {"type": "message_start", "message": msg}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if tool_id else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    )


def responses_step(n: int, *, input_total: int, cached: int, output: int, call_id: str | None) -> bytes:
    item: dict[str, Any] = (
        {
            "type": "function_call",
            "id": f"fc_{n}",
            "call_id": call_id,
            "name": "shell",
            "arguments": '{"cmd": "ls"}',
            "status": "completed",
        }
        if call_id
        else {
            "type": "message",
            "id": f"msg_{n}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
        }
    )
    base = {"id": f"resp_loop_{n}", "object": "response", "model": "gpt-5-codex", "created_at": 1764633600}
    usage = {
        "input_tokens": input_total,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": output // 2},
        "total_tokens": input_total + output,
    }
    return sse(
        (
            "response.created",
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": {**base, "status": "in_progress", "output": [], "usage": None},
            },
        ),
        (
            "response.output_item.done",
            {"type": "response.output_item.done", "sequence_number": 1, "output_index": 0, "item": item},
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": 2,
                "response": {**base, "status": "completed", "output": [item], "usage": usage},
            },
        ),
    )


def chat_step(n: int, usage: dict[str, Any], call_id: str | None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": None if call_id else "Done."}
    if call_id:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": "grep", "arguments": "{}"}}
        ]
    return json.dumps(
        {
            "id": f"chatcmpl-loop-{n}",
            "object": "chat.completion",
            "created": 1764633600,
            "model": "claude-sonnet-4-5",
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if call_id else "stop"}
            ],
            "usage": usage,
        }
    ).encode()


def price(model: str, provider: str, **counts: int) -> Decimal:
    return calc_price(Usage(**counts), model, provider_id=provider).total_price  # type: ignore[arg-type]


# Each step: (fresh input, 1h cache write, cache read, output, the tool call it emits).
CLAUDE_STEPS = [
    (12, 30000, 0, 80, "toolu_01A"),
    (40, 500, 30000, 120, "toolu_01B"),
    (30, 0, 30500, 200, None),
]
CODEX_STEPS = [(9000, 0, 300, "call_codex_1"), (9400, 8960, 500, None)]  # (input, cached, output, call)
FOUNDING = {"prompt_tokens": 1678, "completion_tokens": 370, "total_tokens": 2048,
            "prompt_tokens_details": {"cached_tokens": 105530}}  # fmt: skip
CHAT_FINAL = {"prompt_tokens": 107400, "completion_tokens": 90, "total_tokens": 107490,
              "prompt_tokens_details": {"cached_tokens": 107208}}  # fmt: skip


def run_claude_loop(url: str, upstream: Upstream) -> None:
    client = anthropic.Anthropic(
        base_url=url,
        api_key="sk-ant-test",
        max_retries=0,
        timeout=20,
        default_headers={
            "User-Agent": "claude-cli/2.1.90 (external, cli)",
            "X-Claude-Code-Session-Id": CLAUDE_SESSION,
            "anthropic-beta": "claude-code-20250219",
            "x-app": "cli",
        },
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix the bug in a.py"}]
    for n, (fresh, write, read, output, tool_id) in enumerate(CLAUDE_STEPS):
        body = anthropic_step(n, fresh=fresh, write_1h=write, read=read, output=output, tool_id=tool_id)
        upstream.scenario = Scenario(
            body=body, content_type="text/event-stream", chunks=[body[:97], body[97:]]
        )
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=1000, messages=messages) as s:  # type: ignore[arg-type]
            final = s.get_final_message()
        assert final.usage.cache_read_input_tokens == read  # the client got the full snapshot (R4)
        if tool_id:
            messages += [
                {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "read_file", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}]},
            ]  # fmt: skip


def run_codex_loop(url: str, upstream: Upstream) -> None:
    client = openai.OpenAI(
        base_url=url + "/v1",
        api_key="sk-test",
        max_retries=0,
        timeout=20,
        default_headers={
            "User-Agent": "codex_cli_rs/0.50.0 (Debian 12; x86_64) xterm-256color",
            "originator": "codex_cli_rs",
            "session-id": CODEX_SESSION,
            "thread-id": CODEX_SESSION,
        },
    )
    items: list[dict[str, Any]] = [{"role": "user", "content": "list the files"}]
    for n, (input_total, cached, output, call_id) in enumerate(CODEX_STEPS):
        body = responses_step(n, input_total=input_total, cached=cached, output=output, call_id=call_id)
        upstream.scenario = Scenario(body=body, content_type="text/event-stream", chunks=[body])
        stream = client.responses.create(model="gpt-5-codex", input=items, stream=True)  # type: ignore[arg-type]
        done = [e for e in stream if e.type == "response.completed"]
        assert done and done[0].response.usage is not None
        if call_id:
            items += [
                {"type": "function_call", "call_id": call_id, "name": "shell", "arguments": '{"cmd": "ls"}'},
                {"type": "function_call_output", "call_id": call_id, "output": "a.py"},
            ]


def run_chat_loop(url: str, upstream: Upstream) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0, timeout=20)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a grep agent."},
        {"role": "user", "content": "where is usage computed?"},
    ]
    upstream.scenario = Scenario(body=chat_step(0, FOUNDING, "call_grep_1"))
    r = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)  # type: ignore[arg-type]
    assert r.usage is not None and r.usage.prompt_tokens == 107208  # R1, in flight
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_grep_1", "type": "function", "function": {"name": "grep", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_grep_1", "content": "addon/usagefix/normalize.py"},
    ]  # fmt: skip
    upstream.scenario = Scenario(body=chat_step(1, CHAT_FINAL, None))
    client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)  # type: ignore[arg-type]


def report(*targets: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(USAGEFIX), "report", "--json", *map(str, targets)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def session_with(sessions: list[dict[str, Any]], needle: str) -> dict[str, Any]:
    (found,) = [s for s in sessions if needle in s["session"]]
    return found


def test_three_agent_loops_are_three_sessions_with_summed_cost_and_last_step_context(
    upstream: Upstream, tmp_path: Path
) -> None:
    flows, ledger = tmp_path / "loops.mitm", tmp_path / "ledger.sqlite"
    proc, port = start_mitmdump(
        [
            "--mode",
            f"reverse:{upstream.url}",
            "-s",
            str(ROOT / "addon" / "normalize_usage.py"),
            "-w",
            str(flows),
            "--set",
            f"usage_ledger={ledger}",
        ],
        tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        run_claude_loop(url, upstream)
        run_codex_loop(url, upstream)
        run_chat_loop(url, upstream)
    finally:
        stop(proc)  # `done` flushes the ledger

    from_ledger, from_flows = report(ledger), report(flows)
    assert from_ledger == from_flows  # one truth, whichever source the report reads
    sessions = from_ledger["sessions"]
    assert len(sessions) == 3

    claude = session_with(sessions, CLAUDE_SESSION)
    assert (claude["source"], claude["client"], claude["steps"]) == ("header", "claude-code", 3)
    expected = sum(
        price(
            "claude-sonnet-4-5",
            "anthropic",
            input_tokens=fresh + write + read,
            cache_write_tokens=write,
            cache_write_1h_tokens=write,
            cache_read_tokens=read,
            output_tokens=output,
        )
        for fresh, write, read, output, _ in CLAUDE_STEPS
    )
    assert Decimal(claude["cost_usd"]["after"]) == expected
    assert claude["tokens"]["cache_write"] == 30500  # cache-creation tokens are not lost
    assert claude["tokens"]["input"] == sum(f + w + r for f, w, r, _, _ in CLAUDE_STEPS)
    assert claude["context"]["tokens"] == 30 + 0 + 30500  # the last step's full input, not the sum
    assert claude["context"]["window"] == 200_000

    codex = session_with(sessions, CODEX_SESSION)
    assert (codex["source"], codex["client"], codex["steps"]) == ("header", "codex", 2)
    expected = sum(
        price("gpt-5-codex", "openai", input_tokens=i, cache_read_tokens=c, output_tokens=o)
        for i, c, o, _ in CODEX_STEPS
    )
    assert Decimal(codex["cost_usd"]["after"]) == expected
    assert codex["tokens"]["reasoning"] == sum(o // 2 for _, _, o, _ in CODEX_STEPS)
    assert codex["context"]["tokens"] == 9400

    (chat,) = [s for s in sessions if s is not claude and s is not codex]
    assert (chat["source"], chat["steps"]) == ("tool_call", 2)
    after = price("claude-sonnet-4-5", "anthropic", input_tokens=107208, cache_read_tokens=105530,
                  output_tokens=370) + price("claude-sonnet-4-5", "anthropic", input_tokens=107400,
                  cache_read_tokens=107208, output_tokens=90)  # fmt: skip
    assert Decimal(chat["cost_usd"]["after"]) == after
    # The founding bug's block, priced as a standard OpenAI consumer reads it, costs less than
    # nothing: (1678 − 105530) uncached tokens. The session's "before" shows it.
    assert Decimal(chat["cost_usd"]["before"]) < 0 < after
    assert chat["context"]["tokens"] == 107400

    totals = from_ledger["totals"]
    assert Decimal(totals["cost_usd"]["after"]) == sum(
        Decimal(s["cost_usd"]["after"]) for s in (claude, codex, chat)
    )
