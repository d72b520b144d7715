"""Golden corpus: every upstream body in flows/golden/ gives exactly the expected client body and
record (status, final_seen, rules, anomalies, usage_after, emitted_usage).

The expectations are checked by `scripts/golden.py`'s own `drift()`, the check `scripts/golden
--check` runs: one mechanism. Streamed cases also run byte-at-a-time and under any chunking
(hypothesis); all must agree.
"""

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import bytewise, chunkings
from usagefix.dialects import DIALECTS, Context
from usagefix.framing import Framing
from usagefix.prior import rebuild_upstream
from usagefix.recordbuild import build_record
from usagefix.rewriter import StreamRewriter

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import golden  # scripts/golden.py: the corpus and its check

CASES = golden.cases()
case_id = golden.case_id


def stream_through(
    dialect: str, chunks: list[bytes], framing: Framing = "sse", ctx: Context | None = None
) -> tuple[bytes, StreamRewriter]:
    rw = StreamRewriter(DIALECTS[dialect], framing=framing, ctx=ctx or Context())
    out = b""
    for c in chunks:
        for piece in rw.feed(c):
            assert piece, "an empty piece would end an HTTP/1.1 client's body"
            out += piece
    out += b"".join(rw.finish())
    return out, rw


def test_corpus_is_there() -> None:
    assert len(CASES) >= 10
    for p in CASES:
        assert p.parent.name in DIALECTS
        assert golden.expect_path(p).exists()
        if p.name.startswith("ok-"):
            assert not golden.client_path(p).exists()
        else:
            assert golden.client_path(p).exists(), "a fix- case changes the client's body"


@pytest.mark.parametrize("upstream", CASES, ids=case_id)
def test_golden(upstream: Path) -> None:
    assert golden.drift(upstream) == []
    result = golden.run(upstream)
    out, record = result.client, result.record
    framing = golden.framing_of(upstream)
    if framing is not None:
        ctx = golden.context_of(upstream)
        assert stream_through(upstream.parent.name, bytewise(upstream.read_bytes()), framing, ctx)[0] == out
    # What the client got is self-consistent: every invariant holds, or the record says why not.
    if record.usage_after:
        broken = record.usage_after.violations()
        assert broken == [] or "reasoning_exceeds_completion" in record.anomalies, broken
    # A total is never lowered.
    if record.usage_before and record.usage_after:
        assert record.usage_after.total >= record.usage_before.total
    # The record is enough to rebuild the upstream's body exactly.
    assert rebuild_upstream(out, record.model_dump(mode="json")) == upstream.read_bytes()
    # Idempotence: normalizing what the client got changes nothing more. (Not where a profile
    # declares what the numbers cannot show: there, a second pass applies the declaration again,
    # which is why a replay re-normalizes the upstream's original, rebuilt from the record.)
    profile = golden.context_of(upstream).profile
    declares = profile is not None and any(
        (profile.prompt_cache_reads, profile.prompt_cache_writes, profile.completion_reasoning)
    )
    if not declares or not record.rules:
        again = golden.run(upstream, out)
        assert again.client == out
        assert again.record.status in ("unchanged", "unmeasured")


STREAM_CASES = [p for p in CASES if golden.framing_of(p) is not None]


@pytest.mark.parametrize("upstream", STREAM_CASES, ids=case_id)
@given(data=st.data())
def test_any_chunking_gives_the_whole_streams_output(upstream: Path, data: st.DataObject) -> None:
    body = upstream.read_bytes()
    chunks = data.draw(chunkings(body))
    framing = golden.framing_of(upstream)
    assert framing is not None
    out, _ = stream_through(upstream.parent.name, chunks, framing, golden.context_of(upstream))
    assert out == golden.expected_client(upstream)


def test_a_cut_off_tail_is_counted_once_as_incomplete_not_oversize() -> None:
    body = (golden.GOLDEN / "gemini" / "ok-cut-off.upstream.jsonarray").read_bytes()
    _, rw = stream_through("gemini", [body], "json_array")
    anomalies = build_record(rw.result).anomalies
    assert any(a.startswith("incomplete_tail_bytes:") for a in anomalies)
    assert not any(a.startswith("oversize_events") for a in anomalies)


def test_the_check_fails_on_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scripts/golden --check` is not a rubber stamp: a changed expectation is reported."""
    case = tmp_path / "openai_chat"
    case.mkdir()
    src = golden.GOLDEN / "openai_chat"
    for name in (
        "fix-founding-bug.upstream.json",
        "fix-founding-bug.client.json",
        "fix-founding-bug.expect.json",
    ):
        (case / name).write_bytes((src / name).read_bytes())
    monkeypatch.setattr(golden, "GOLDEN", tmp_path)
    assert golden.main(["--check"]) == 0
    expect = case / "fix-founding-bug.expect.json"
    expect.write_text(expect.read_text().replace('"R1"', '"R2"'))
    assert golden.main(["--check"]) == 1
    assert golden.main(["--regen"]) == 0 and golden.main(["--check"]) == 0
    (case / "fix-founding-bug.client.json").write_bytes(b"{}")
    assert golden.main(["--check"]) == 1
