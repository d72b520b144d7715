"""Usage on a WebSocket, one turn per usage-bearing server message (pure; the addon only hands
messages over): read, normalized, recorded; anything else goes as it came."""

from __future__ import annotations

import json

import pytest

from usagefix.dialects import DIALECTS, Context
from usagefix.prior import rebuild_upstream
from usagefix.wsturns import read_turn, turns_summary

RESPONSES = DIALECTS["openai_responses"]
REALTIME = DIALECTS["openai_realtime"]


def completed(usage: object) -> str:
    return json.dumps({"type": "response.completed", "response": {"id": "r", "model": "m", "usage": usage}})


def test_a_turn_is_normalized_and_its_record_rebuilds_the_message() -> None:
    text = completed({"input_tokens": 5, "input_tokens_details": {"cached_tokens": 90}, "output_tokens": 1})
    turn = read_turn(RESPONSES, text, 7, Context())
    assert turn is not None and turn.text is not None
    assert json.loads(turn.text)["response"]["usage"]["input_tokens"] == 95  # R1
    record = turn.entry["record"]
    assert turn.entry["message_index"] == 7 and record["changes"][0]["index"] == 7
    assert rebuild_upstream(turn.text.encode(), record) == text.encode()
    assert turns_summary([turn.entry], turn) == "1 WebSocket turn, 1 rewritten; last: input 5→95 · R1"


def test_the_comment_keeps_the_last_rewritten_turn_in_view() -> None:
    fixed = read_turn(
        RESPONSES,
        completed({"input_tokens": 5, "input_tokens_details": {"cached_tokens": 90}, "output_tokens": 1}),
        3,
        Context(),
    )
    fine = read_turn(
        RESPONSES, completed({"input_tokens": 95, "output_tokens": 1, "total_tokens": 96}), 9, Context()
    )
    assert fixed is not None and fine is not None
    assert turns_summary([fixed.entry, fine.entry], fine) == (
        f"2 WebSocket turns, 1 rewritten; last rewritten: input 5→95 · R1; last: {fine.line}"
    )
    # A record edited in the file (not a record any more): the count, without its numbers.
    tampered = {"message_index": 3, "record": {"status": "rewritten", "dialect": 5}}
    assert turns_summary([tampered, fine.entry], fine) == f"2 WebSocket turns, 1 rewritten; last: {fine.line}"


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "response.created", "response": {"usage": null}}',
        '{"type": "response.output_text.delta", "delta": "hi"}',
        completed(None),
    ],
)
def test_messages_without_usage_are_no_turn(text: str) -> None:
    assert read_turn(RESPONSES, text, 0, Context()) is None


def test_a_correct_turn_is_recorded_unchanged() -> None:
    usage = {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
    done = json.dumps({"type": "response.done", "response": {"usage": usage}})
    turn = read_turn(REALTIME, done, 0, Context())
    assert turn is not None and turn.text is None and turn.entry["record"]["status"] == "unchanged"


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ('{"type": "response.completed", "response": {"usage": {', "unparseable_event"),
        (completed({"input_tokens": "many", "output_tokens": 1}), "invalid_usage"),
    ],
)
def test_bad_messages_go_as_they_came_and_are_flagged(text: str, flag: str) -> None:
    turn = read_turn(RESPONSES, text, 0, Context())
    assert turn is not None and turn.text is None
    assert any(a.startswith(flag) for a in turn.entry["record"]["anomalies"])


def test_a_failing_dialect_costs_the_turn_not_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(type(REALTIME), "normalize_object", boom)
    done = json.dumps(
        {"type": "response.done", "response": {"usage": {"input_tokens": 1, "output_tokens": 1}}}
    )
    turn = read_turn(REALTIME, done, 0, Context())
    assert turn is not None and turn.text is None
    assert turn.entry["record"]["status"] == "passthrough_error"
