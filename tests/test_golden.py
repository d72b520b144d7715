"""Golden corpus: every upstream body in flows/golden/ gives exactly the expected client body.

Streamed cases run whole, byte-at-a-time and under any chunking (hypothesis); all must agree.
"""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import bytewise, chunkings
from usagefix.dialects import DIALECTS
from usagefix.framing import Framing
from usagefix.record import build_record, rebuild_upstream
from usagefix.rewriter import Rewrite, StreamRewriter, rewrite_body, rewrite_stream

GOLDEN = Path(__file__).parent.parent / "flows" / "golden"
CASES = sorted(GOLDEN.glob("*/*.upstream.*"))


def case_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name.split('.')[0]}"


STREAMED: dict[str, Framing] = {".sse": "sse", ".jsonarray": "json_array"}


def stream_through(
    dialect: str, chunks: list[bytes], framing: Framing = "sse"
) -> tuple[bytes, StreamRewriter]:
    rw = StreamRewriter(DIALECTS[dialect], framing=framing)
    out = b""
    for c in chunks:
        for piece in rw.feed(c):
            assert piece, "an empty piece would end an HTTP/1.1 client's body"
            out += piece
    out += b"".join(rw.finish())
    return out, rw


def normalize_whole(dialect: str, body: bytes, suffix: str) -> tuple[bytes, Rewrite]:
    if suffix in STREAMED:
        out, rw = rewrite_stream(DIALECTS[dialect], body, framing=STREAMED[suffix])
        return out, rw.outcome
    result = rewrite_body(DIALECTS[dialect], body)
    return (body if result.body is None else result.body), result.outcome


def expected_client(upstream: Path) -> bytes:
    client = upstream.with_name(upstream.name.replace(".upstream.", ".client."))
    return client.read_bytes() if client.exists() else upstream.read_bytes()


def test_corpus_is_there() -> None:
    assert len(CASES) >= 10
    for p in CASES:
        assert p.parent.name in DIALECTS
        assert p.with_name(p.name.split(".")[0] + ".expect.json").exists()
        if p.name.startswith("ok-"):
            assert not p.with_name(p.name.replace(".upstream.", ".client.")).exists()


@pytest.mark.parametrize("upstream", CASES, ids=case_id)
def test_golden(upstream: Path) -> None:
    dialect = upstream.parent.name
    body = upstream.read_bytes()
    expect = json.loads(upstream.with_name(upstream.name.split(".")[0] + ".expect.json").read_text())
    if upstream.suffix in STREAMED:
        framing = STREAMED[upstream.suffix]
        out, rw = stream_through(dialect, [body], framing)
        assert stream_through(dialect, bytewise(body), framing)[0] == out
        outcome = rw.outcome
    else:
        result = rewrite_body(DIALECTS[dialect], body)
        out = body if result.body is None else result.body
        outcome = result.outcome
    assert out == expected_client(upstream)
    record = build_record(outcome)
    assert record.status == expect["status"]
    assert [r.rule for r in record.rules] == expect["rules"]
    after = record.usage_after.model_dump() if record.usage_after else None
    if after:
        after = {k: v for k, v in after.items() if v is not None}
    assert after == expect["usage_after"]
    # What the client got is self-consistent: every invariant holds.
    if record.usage_after:
        assert record.usage_after.violations() == []
    # The record is enough to rebuild the upstream's body exactly.
    assert rebuild_upstream(out, record.model_dump(mode="json")) == body
    # Idempotence: normalizing what the client got changes nothing more.
    again = normalize_whole(dialect, out, upstream.suffix)
    assert again[0] == out
    assert build_record(again[1]).status in ("unchanged", "unmeasured")


STREAM_CASES = [p for p in CASES if p.suffix in STREAMED]


@pytest.mark.parametrize("upstream", STREAM_CASES, ids=case_id)
@given(data=st.data())
def test_any_chunking_gives_the_whole_streams_output(upstream: Path, data: st.DataObject) -> None:
    body = upstream.read_bytes()
    chunks = data.draw(chunkings(body))
    out, _ = stream_through(upstream.parent.name, chunks, STREAMED[upstream.suffix])
    assert out == expected_client(upstream)


def test_a_cut_off_tail_is_counted_once_as_incomplete_not_oversize() -> None:
    body = (GOLDEN / "gemini" / "ok-cut-off.upstream.jsonarray").read_bytes()
    _, rw = stream_through("gemini", [body], "json_array")
    anomalies = build_record(rw.outcome).anomalies
    assert any(a.startswith("incomplete_tail_bytes:") for a in anomalies)
    assert not any(a.startswith("oversize_events") for a in anomalies)
