"""End to end over WebSocket: Responses over WebSocket (Codex CLI's transport: many turns on one
connection) and the Realtime API's `response.done`, with a real WebSocket server (`websockets`)
behind a real mitmdump and a real WebSocket client in front of it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy import io as mio
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from conftest import ROOT, start_mitmdump, stop

pytestmark = pytest.mark.e2e


def completed(n: int, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "response.completed",
        "sequence_number": 3,
        "response": {"id": f"resp_{n}", "model": "claude-sonnet-4-5", "status": "completed", "usage": usage},
    }


# Turn 1: a translator left the cache reads out of input_tokens (R1); turn 2 is correct.
TURN_USAGE = [
    {
        "input_tokens": 13,
        "input_tokens_details": {"cached_tokens": 22000},
        "output_tokens": 40,
        "total_tokens": 53,
    },
    {
        "input_tokens": 22100,
        "input_tokens_details": {"cached_tokens": 22000},
        "output_tokens": 7,
        "total_tokens": 22107,
    },
]
REALTIME_DONE = {
    "type": "response.done",
    "event_id": "event_1",
    "response": {
        "id": "resp_rt",
        "status": "completed",
        "usage": {
            "total_tokens": 120,
            "input_tokens": 300,
            "output_tokens": 20,
            "input_token_details": {"cached_tokens": 256, "text_tokens": 300, "audio_tokens": 0},
            "output_token_details": {"text_tokens": 20, "audio_tokens": 0},
        },
    },
}


def _handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request else ""
    turn = 0
    for raw in ws:
        msg = json.loads(raw)
        if path.startswith("/v1/realtime"):
            ws.send(json.dumps({"type": "response.created", "response": {"id": "resp_rt", "usage": None}}))
            ws.send(json.dumps(REALTIME_DONE))
        elif msg.get("type") == "response.create":
            ws.send(json.dumps({"type": "response.created", "response": {"id": f"resp_{turn}"}}))
            ws.send(json.dumps({"type": "response.output_text.delta", "delta": "response.completed"}))
            ws.send(json.dumps(completed(turn, TURN_USAGE[turn])))
            turn += 1


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[Server]:
    server = serve(_handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def ws_proxy(ws_upstream: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("ws")
    flows = tmp / "flows.mitm"
    port = ws_upstream.socket.getsockname()[1]
    args = ["--mode", f"reverse:http://127.0.0.1:{port}", "-s", str(ROOT / "addon" / "normalize_usage.py")]
    proc, listen = start_mitmdump([*args, "-w", str(flows)], tmp)
    yield f"ws://127.0.0.1:{listen}", flows
    stop(proc)


def saved_ws_flows(flows: Path, count: int) -> list[http.HTTPFlow]:
    deadline = time.monotonic() + 5
    while True:
        found = []
        if flows.exists():
            with flows.open("rb") as f:
                found = [
                    x for x in mio.FlowReader(f).stream() if isinstance(x, http.HTTPFlow) and x.websocket
                ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_responses_over_websocket_each_turn_normalized_and_recorded(ws_proxy: tuple[str, Path]) -> None:
    url, flows = ws_proxy
    n = len(saved_ws_flows(flows, 0))
    finals = []
    with connect(url + "/backend-api/codex/responses") as ws:
        for _ in range(2):
            ws.send(json.dumps({"type": "response.create", "response": {"input": "hi"}}))
            while True:
                msg = json.loads(ws.recv(timeout=10))
                if msg["type"] == "response.completed":
                    finals.append(msg["response"]["usage"])
                    break
                if msg["type"] == "response.output_text.delta":
                    assert msg["delta"] == "response.completed"  # text that only looks terminal
    assert finals[0]["input_tokens"] == 22013 and finals[0]["total_tokens"] == 22053  # R1
    assert finals[1] == TURN_USAGE[1]  # a correct turn passes unchanged
    (flow,) = saved_ws_flows(flows, n + 1)[n:]
    turns = flow.metadata["usagefix_turns"]
    assert [t["record"]["status"] for t in turns] == ["rewritten", "unchanged"]
    assert [r["rule"] for r in turns[0]["record"]["rules"]] == ["R1", "I3"]
    assert turns[0]["record"]["usage_after"]["input_total"] == 22013
    assert flow.websocket is not None
    assert [flow.websocket.messages[t["message_index"]].from_client for t in turns] == [False, False]
    assert flow.comment.startswith(
        "2 WebSocket turns, 1 rewritten; last rewritten: input 13→22013 · R1; last: usage correct"
    )


def test_realtime_response_done_usage_is_normalized(ws_proxy: tuple[str, Path]) -> None:
    url, flows = ws_proxy
    n = len(saved_ws_flows(flows, 0))
    with connect(url + "/v1/realtime?model=gpt-realtime") as ws:
        ws.send(json.dumps({"type": "response.create"}))
        created = json.loads(ws.recv(timeout=10))
        done = json.loads(ws.recv(timeout=10))
    assert created["response"]["usage"] is None
    usage = done["response"]["usage"]
    assert (usage["input_tokens"], usage["total_tokens"]) == (300, 320)  # I3: the total raised
    assert usage["input_token_details"] == REALTIME_DONE["response"]["usage"]["input_token_details"]
    (flow,) = saved_ws_flows(flows, n + 1)[n:]
    (turn,) = flow.metadata["usagefix_turns"]
    assert (turn["record"]["dialect"], turn["record"]["status"]) == ("openai_realtime", "rewritten")
    assert [r["rule"] for r in turn["record"]["rules"]] == ["I3"]


CODEX_SESSION = "019a5e2b-7c1d-7f00-8a3b-6e2d9c4f1a07"


def report_json(target: Path) -> dict[str, Any]:
    usagefix = Path(sys.executable).with_name("usagefix")
    out = subprocess.run(
        [str(usagefix), "report", "--json", str(target)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_websocket_turns_are_ledger_rows_and_steps_of_the_session_the_upgrade_names(
    ws_upstream: Server, tmp_path: Path
) -> None:
    flows, ledger = tmp_path / "codex.mitm", tmp_path / "ledger.sqlite"
    port = ws_upstream.socket.getsockname()[1]
    args = ["--mode", f"reverse:http://127.0.0.1:{port}", "-s", str(ROOT / "addon" / "normalize_usage.py")]
    args += ["-w", str(flows), "--set", f"usage_ledger={ledger}"]
    proc, listen = start_mitmdump(args, tmp_path)
    try:
        # Codex names its session on the upgrade request, then sends many turns on one socket.
        with connect(
            f"ws://127.0.0.1:{listen}/backend-api/codex/responses",
            user_agent_header="codex_cli_rs/0.120.0 (Debian; x86_64)",
            additional_headers={"session-id": CODEX_SESSION},
        ) as ws:
            for n in range(2):
                ask: dict[str, Any] = {"type": "response.create", "model": "claude-sonnet-4-5", "input": "hi"}
                if n:
                    ask["previous_response_id"] = "resp_0"
                ws.send(json.dumps(ask))
                while json.loads(ws.recv(timeout=10))["type"] != "response.completed":
                    pass
    finally:
        stop(proc)  # `done` flushes the ledger

    from_ledger, from_flows = report_json(ledger), report_json(flows)
    assert from_ledger == from_flows  # live rows and rows from the flow file agree
    (session,) = from_ledger["sessions"]
    assert session["session"] == f"codex:{CODEX_SESSION}"
    assert (session["source"], session["client"], session["steps"]) == ("header", "codex", 2)
    # The sum over both turns, as corrected: turn 1's cache reads restored to its input (R1).
    assert session["tokens"]["input"] == 22013 + 22100
    assert session["cost_usd"]["after"] is not None and session["cost_usd"]["before"] is not None
    assert Decimal(session["cost_usd"]["before"]) < Decimal(session["cost_usd"]["after"])
    assert session["context"]["tokens"] == 22100  # the last turn's full input, not the sum

    # `usagefix diff` shows each turn as its own entry, with the ledger's id, cost and session.
    usagefix = Path(sys.executable).with_name("usagefix")
    out = subprocess.run(
        [str(usagefix), "diff", "--all", "--json", str(flows)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    entries = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(e["method"], e["record"]["status"]) for e in entries] == [
        ("WS", "rewritten"),
        ("WS", "unchanged"),
    ]
    assert len({e["flow_id"].split("#")[0] for e in entries}) == 1 and all(
        "#" in e["flow_id"] for e in entries
    )
    assert all(e["model"] == "claude-sonnet-4-5" for e in entries)
    assert {e["session"]["key"] for e in entries} == {f"codex:{CODEX_SESSION}"}
    assert entries[0]["comment"] == "input 13→22013 · R1" and entries[1]["comment"] == "usage correct"
    text = subprocess.run([str(usagefix), "diff", str(flows)], capture_output=True, text=True, timeout=60)
    assert "== WS " in text.stdout and "WebSocket turn, message" in text.stdout, text.stdout
    assert f"{entries[0]['flow_id'][:8]}#{entries[0]['flow_id'].split('#')[1]}]" in text.stdout
    assert "(openai_responses, WebSocket turn)" in text.stdout and "JSON body" not in text.stdout
