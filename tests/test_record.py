"""Tests for the record: rebuilding the upstream's body from what the client got and the changes."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagefix.prior import read_prior, rebuild_upstream
from usagefix.recordbuild import build_record
from usagefix.rewriter import EventChange, RewriteResult

# An event as the upstream sent it, and what the client got instead: None = untouched, "" = dropped.
Event = tuple[str, str | None]


def as_recorded(events: list[Event]) -> tuple[bytes, bytes, dict[str, Any]]:
    """The upstream's body, the client's body and the record, as the rewriter builds them: a
    change's offset is the count of bytes the client was sent before it."""
    upstream, client, changes = "", b"", []
    for index, (original, rewritten) in enumerate(events):
        upstream += original
        if rewritten is not None:
            changes.append(
                {"index": index, "offset": len(client), "original": original, "rewritten": rewritten}
            )
        client += (original if rewritten is None else rewritten).encode()
    return upstream.encode(), client, {"changes": changes}


CHUNK = 'data: {"choices":[{"delta":{"content":"hé"}}],"usage":null}\n\n'
STRIPPED = 'data: {"choices":[{"delta":{"content":"hé"}}]}\n\n'
USAGE = 'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n'
DONE = "data: [DONE]\n\n"


@pytest.mark.parametrize(
    "events",
    [
        # usage_request_stream_usage: the dropped usage chunk shares its offset with the change after it.
        [(CHUNK, STRIPPED), (USAGE, ""), (CHUNK, STRIPPED), (DONE, None)],
        # Two dropped events in a row, then a change: three changes at one offset.
        [(CHUNK, STRIPPED), (USAGE, ""), (USAGE, ""), (CHUNK, STRIPPED)],
        # A dropped first event, and a dropped last one.
        [(USAGE, ""), (CHUNK, STRIPPED), (USAGE, "")],
    ],
)
def test_a_dropped_event_beside_another_change_rebuilds_the_upstream_body(events: list[Event]) -> None:
    upstream, client, record = as_recorded(events)
    assert len({c["offset"] for c in record["changes"]}) < len(record["changes"])  # offsets tie
    assert rebuild_upstream(client, record) == upstream
    random.Random(7).shuffle(record["changes"])  # the record's order is not relied on
    assert rebuild_upstream(client, record) == upstream


_TEXT = st.text(alphabet="ab é\n{}:", max_size=6)


@given(st.lists(st.tuples(_TEXT, st.one_of(st.none(), st.just(""), _TEXT)), max_size=10), st.randoms())
def test_any_sequence_of_changes_and_drops_rebuilds_the_upstream_body(
    events: list[Event], rnd: random.Random
) -> None:
    upstream, client, record = as_recorded(events)
    rnd.shuffle(record["changes"])
    assert rebuild_upstream(client, record) == upstream


@given(st.binary(max_size=40))
def test_any_held_back_bytes_are_rebuilt_exactly(held: bytes) -> None:
    # A cut inside a multi-byte character, or bytes that are no text at all: the record shows
    # them as text (`\xNN` for what is not UTF-8) and keeps them exactly (base64) for the rebuild.
    out = RewriteResult("openai_chat", streamed=True)
    rec = build_record(out, cut_off="the upstream closed the connection", held_back=held).model_dump(
        mode="json"
    )
    assert rebuild_upstream(b"", rec) == held
    assert rec["held_back"] == (held.decode("utf-8", "backslashreplace") or None)
    assert (rec["held_back_base64"] is None) == _is_text(held)


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_a_tampered_held_back_base64_is_refused() -> None:
    with pytest.raises(ValueError):
        rebuild_upstream(b"", {"held_back_base64": "not base64!"})


def test_a_cut_off_stream_gets_its_held_back_tail_again() -> None:
    upstream, client, record = as_recorded([(CHUNK, STRIPPED), (USAGE, "")])
    record["held_back"] = 'data: {"cho'
    assert rebuild_upstream(client, record) == upstream + b'data: {"cho'


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda r: r["changes"][0].update(rewritten="something else"), id="text edited"),
        pytest.param(lambda r: r["changes"][1].update(offset=r["changes"][0]["offset"] + 1), id="overlap"),
        pytest.param(lambda r: r["changes"][1].update(offset=10**6, rewritten=""), id="past the end"),
    ],
)
def test_a_record_that_does_not_match_the_body_is_refused(edit: Any) -> None:
    _, client, record = as_recorded([(CHUNK, STRIPPED), (USAGE, ""), (CHUNK, STRIPPED)])
    edit(record)
    with pytest.raises(ValueError):
        rebuild_upstream(client, record)


@pytest.mark.parametrize(
    ("saved", "reason"),
    [
        ("garbage", "record: Input should be a valid dictionary"),
        ({"changes": [{"index": 0, "offset": "12", "original": "a", "rewritten": "b"}]}, "changes.0.offset"),
        ({"changes": [{"index": 0, "offset": True, "original": "a", "rewritten": "b"}]}, "changes.0.offset"),
        ({"changes": [{"index": 0, "offset": 0, "rewritten": "b"}]}, "changes.0.original: Field required"),
        ({"stream_usage_added": "yes"}, "stream_usage_added"),
        ({"content_encoding": 5}, "content_encoding"),
        ({"held_back": b"bytes"}, "held_back"),
    ],
)
def test_a_record_of_the_wrong_types_is_refused_with_its_reason(saved: object, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        read_prior(saved)
    with pytest.raises(ValueError):
        rebuild_upstream(b"ab", saved)  # type: ignore[arg-type]


def test_a_record_with_keys_of_a_later_schema_is_read() -> None:
    _, client, record = as_recorded([(CHUNK, STRIPPED)])
    record |= {"schema_version": 9, "costs": {"before": -1}}
    record["changes"][0]["span"] = [0, 3]
    prior = read_prior(record)
    assert prior.changes[0].original == CHUNK and read_prior(prior) is prior
    assert rebuild_upstream(client, prior) == CHUNK.encode()


def _broken_tally(out: RewriteResult) -> RewriteResult:
    out.tally = None  # type: ignore[assignment]  # a bug of ours, somewhere before the record
    return out


def test_a_record_that_cannot_be_built_says_why_and_keeps_its_sound_changes() -> None:
    change = EventChange(index=0, offset=5, original='"usage":null', rewritten="")
    rec = build_record(_broken_tally(RewriteResult("openai_chat", streamed=True, changes=[change])))
    assert rec.status == "passthrough_error" and not rec.final_seen and rec.usage_after is None
    assert rec.error is not None and rec.error.startswith("the record could not be built: AttributeError")
    # Enough to rebuild the upstream's body from the client's.
    assert rebuild_upstream(b"data:\n\n", rec.model_dump(mode="json")) == b'data:"usage":null\n\n'


def test_a_record_whose_changes_are_unsound_keeps_none_of_them() -> None:
    unsound = EventChange(index=None, offset=5, original="a", rewritten="b")  # type: ignore[arg-type]
    rec = build_record(RewriteResult("openai_chat", streamed=True, changes=[unsound]))
    assert rec.status == "passthrough_error" and rec.changes == []
    assert rec.error is not None and rec.error.startswith("the record could not be built: ValidationError")
