"""The record as the flow saves it: always one (usagefix.saving; the addon tests prove it on flows)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import usagefix.saving
from usagefix.dialects import Context
from usagefix.profiles import Profile
from usagefix.recordbuild import minimal_record
from usagefix.saving import MAX_RECORD_DEPTH, saveable, untouched_record


def deep(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = {"x": value}
    return value


@pytest.mark.parametrize("block", ["upstream_usage", "emitted_usage"])
def test_a_usage_block_nested_past_the_bound_is_left_out_and_the_record_says_why(
    block: str, caplog: pytest.LogCaptureFixture
) -> None:
    record = minimal_record("openai_chat", False, "e").model_copy(
        update={block: {"prompt_tokens": 1, "x": deep(MAX_RECORD_DEPTH + 5)}}
    )
    with caplog.at_level(logging.WARNING):
        saved, state = saveable(record, "POST /x")
    assert saved.upstream_usage is None and state["upstream_usage"] is None
    assert saved.emitted_usage is None and state["emitted_usage"] is None
    assert any(a.startswith("usage_blocks_not_recorded: ValueError") for a in state["anomalies"])
    assert "POST /x: cannot write the record as it is" in caplog.text


@pytest.mark.parametrize("failures", [2, 3])
def test_a_record_that_cannot_be_written_still_leaves_a_minimal_one(
    failures: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = usagefix.saving._state
    calls = []

    def flaky(record: Any) -> dict[str, Any]:
        calls.append(record)
        if len(calls) <= failures:
            raise RuntimeError(f"planted {len(calls)}")
        return real(record)

    monkeypatch.setattr(usagefix.saving, "_state", flaky)
    saved, state = saveable(minimal_record("openai_chat", True, "e"), "POST /x")
    assert state["status"] == "passthrough_error" and state["streamed"] is True
    assert state["error"] == f"the record could not be written: RuntimeError: planted {failures}"
    assert saved.error == state["error"]


def test_a_stream_passed_through_before_its_first_byte_records_nothing_read() -> None:
    ctx = Context(profile=Profile(name="p", dialect="openai_chat"))
    rec = untouched_record("openai_chat", ctx, "undecodable_encoding", "why", "x-custom")
    assert rec.status == "undecodable_encoding" and rec.profile == "p" and rec.events is None
    assert rec.anomalies == ["undecodable_encoding:x-custom"]
    assert untouched_record("openai_chat", Context(), "passthrough_error", "why").anomalies == []
