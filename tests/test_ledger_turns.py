"""WebSocket turns in the ledger: one row per recorded turn (`<flow id>#<message index>`), live when
the WebSocket ends and from flow files alike, with the upgrade request's headers as the request's
(where Codex names its session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mitmproxy import http, websocket
from mitmproxy import io as mio
from mitmproxy.test import taddons, tflow

from usagefix.addon import UsageFix
from usagefix.flowfacts import rows_from_flows, turn_snapshots
from usagefix.ledger import open_store, parse_target

SESSION = "019a5e2b-7c1d-7f00-8a3b-6e2d9c4f1a07"


def completed(n: int, cached: int, fresh: int) -> str:
    usage = {"input_tokens": fresh, "input_tokens_details": {"cached_tokens": cached},
             "output_tokens": 40, "total_tokens": fresh + 40}  # fmt: skip
    response = {"id": f"resp_{n}", "model": "gpt-5-codex", "status": "completed", "usage": usage}
    return json.dumps({"type": "response.completed", "response": response})


def codex_socket(addon: UsageFix) -> http.HTTPFlow:
    """A Codex-shaped WebSocket: two turns, the first with the cache reads left out (R1); each
    server message handed to the addon as mitmproxy would, live."""
    f = tflow.twebsocketflow(messages=False)
    f.request.path = "/backend-api/codex/responses"
    f.request.headers["user-agent"] = "codex_cli_rs/0.120.0"
    f.request.headers["session-id"] = SESSION
    assert f.websocket is not None
    f.websocket.messages.clear()
    script: list[tuple[bool, Any]] = [
        (True, {"type": "response.create", "model": "gpt-5-codex", "input": "hi"}),
        (False, {"type": "response.created", "response": {"id": "resp_0"}}),
        (False, completed(0, 9000, 100)),
        (True, {"type": "response.create", "model": "gpt-5-codex", "previous_response_id": "resp_0"}),
        (False, completed(1, 9000, 9200)),
    ]
    for i, (from_client, payload) in enumerate(script):
        text = payload if isinstance(payload, str) else json.dumps(payload)
        f.websocket.messages.append(websocket.WebSocketMessage(1, from_client, text.encode(), 1000.0 + i))
        addon.websocket_message(f)
    return f


def test_each_turn_is_a_row_from_a_flow_file(tmp_path: Path) -> None:
    with taddons.context(UsageFix()) as tctx:
        f = codex_socket(tctx.master.addons.get("usagefix"))
    path = tmp_path / "ws.mitm"
    with path.open("wb") as out:
        mio.FlowWriter(out).add(f)
    rows = list(rows_from_flows([path]))
    assert [r.id for r in rows] == [f"{f.id}#2", f"{f.id}#4"]  # the upgrade itself is no exchange
    assert {(r.session_key, r.session_source, r.client) for r in rows} == {
        (f"codex:{SESSION}", "header", "codex")
    }
    assert [r.usagefix_status for r in rows] == ["rewritten", "unchanged"]
    assert rows[0].usage_after is not None and rows[0].usage_after["input_total"] == 9100
    assert (rows[0].ts_start, rows[0].ts_end) == (1000.0, 1002.0)  # the turn's ask and its answer
    assert rows[1].previous_response_id == "resp_0" and rows[1].response_id == "resp_1"
    assert rows[0].model_requested == "gpt-5-codex" and rows[0].cost_after is not None
    assert rows[0].cost_before is not None and rows[0].cost_before != rows[0].cost_after
    assert rows[0].status_code == 101 and rows[0].path == "/backend-api/codex/responses"


def realtime_done(n: int) -> str:
    usage = {"total_tokens": 300, "input_tokens": 200, "output_tokens": 100,
             "input_token_details": {"cached_tokens": 50, "text_tokens": 150, "audio_tokens": 50},
             "output_token_details": {"text_tokens": 50, "audio_tokens": 50}}  # fmt: skip
    response = {"id": f"resp_{n}", "object": "realtime.response", "status": "completed", "usage": usage}
    return json.dumps({"type": "response.done", "event_id": f"ev_{n}", "response": response})


def test_the_turns_of_a_realtime_socket_are_one_session(tmp_path: Path) -> None:
    # Realtime names no session on its upgrade, and each turn's ask differs: the connection is
    # what makes them one conversation (`ws:<flow id>`), not one session per turn or none.
    with taddons.context(UsageFix()) as tctx:
        addon = tctx.master.addons.get("usagefix")
        f = tflow.twebsocketflow(messages=False)
        f.request.path = "/v1/realtime?model=gpt-realtime"
        assert f.websocket is not None
        f.websocket.messages.clear()
        ask = {"type": "conversation.item.create", "item": {"type": "message", "role": "user"}}
        script = [
            (False, json.dumps({"type": "session.created", "session": {"id": "sess_1"}})),
            (
                True,
                json.dumps(
                    {**ask, "item": {**ask["item"], "content": [{"type": "input_text", "text": "hi"}]}}
                ),
            ),
            (False, realtime_done(0)),
            (
                True,
                json.dumps(
                    {**ask, "item": {**ask["item"], "content": [{"type": "input_text", "text": "so?"}]}}
                ),
            ),
            (False, realtime_done(1)),
        ]
        for i, (from_client, text) in enumerate(script):
            f.websocket.messages.append(websocket.WebSocketMessage(1, from_client, text.encode(), 1000.0 + i))
            addon.websocket_message(f)
    path = tmp_path / "rt.mitm"
    with path.open("wb") as out:
        mio.FlowWriter(out).add(f)
    rows = list(rows_from_flows([path]))
    assert [r.id for r in rows] == [f"{f.id}#2", f"{f.id}#4"]
    assert {(r.session_key, r.session_source) for r in rows} == {(f"ws:{f.id}", "connection")}


def test_turn_snapshots_skip_what_does_not_name_a_message() -> None:
    f = tflow.twebsocketflow(messages=False)
    assert turn_snapshots(f) == [] and turn_snapshots(tflow.tflow()) == []
    assert f.websocket is not None
    f.websocket.messages.clear()
    f.websocket.messages.append(websocket.WebSocketMessage(1, False, b"{}", 5.0))
    f.metadata["usagefix_turns"] = [{"message_index": 7}, "odd", {"message_index": 0, "record": {}}]
    (snap,) = turn_snapshots(f)
    assert (snap.flow_id, snap.request_raw, snap.ts_start) == (f"{f.id}#0", None, f.request.timestamp_start)


def test_live_turns_are_written_when_the_websocket_ends(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, usage_ledger=str(ledger))
        ended = codex_socket(addon)
        addon.websocket_end(ended)
        addon.websocket_end(ended)  # once only
        still_open = codex_socket(addon)  # shut down before it closed: its turns are kept too
        addon.done()
    store = open_store(parse_target(str(ledger)))
    try:
        ids = sorted(r.id for r in store.rows())
    finally:
        store.close()
    assert ids == sorted(f"{f.id}#{i}" for f in (ended, still_open) for i in (2, 4))
