"""The "usage diff" contentview (through mitmproxy's contentview API) and the `usagefix` command."""

import io
import json
from pathlib import Path

import pytest
from mitmproxy import contentviews, http
from mitmproxy import io as mio
from mitmproxy.test import taddons, tflow, tutils

from usagefix.addon import UsageFix
from usagefix.cli import main
from usagefix.contentview import UsageDiffContentview

GOLDEN = Path(__file__).parent.parent / "flows" / "golden"


async def recorded_flow(name: str, content_type: str) -> http.HTTPFlow:
    """A flow the addon has handled, as it would be saved."""
    body = (GOLDEN / name).read_bytes()
    req = tutils.treq(method=b"POST", path=b"/v1/chat/completions" if "openai" in name else b"/v1/messages")
    resp = tutils.tresp(headers=http.Headers(content_type=content_type), content=body)
    f = tflow.tflow(req=req, resp=resp, live=False)  # a whole body, as loaded from a file
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        await tctx.cycle(addon, f)
    return f


@pytest.fixture(autouse=True)
def registered() -> None:
    contentviews.add(UsageDiffContentview)


async def test_auto_picks_the_usage_diff_for_rewritten_responses() -> None:
    f = await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json")
    assert f.response is not None
    result = contentviews.prettify_message(f.response, f)
    assert result.view_name == "usage diff"
    lines = result.text.splitlines()
    assert lines[0] == "usagefix: rewritten (openai_chat, JSON body)"
    assert any(
        line.split()[:3] == ["prompt_tokens", "1678", "107208"] and "◀ changed" in line for line in lines
    )
    assert any(line.split() == ["completion_tokens", "370", "370"] for line in lines)
    assert "R1: cache reads were left out of prompt_tokens (input_total 1678→107208)" in result.text
    assert "exclusive_prompt_repaired" in result.text


async def test_auto_leaves_unchanged_responses_and_requests_to_other_views() -> None:
    f = await recorded_flow("openai_chat/ok-prompt-cache.upstream.json", "application/json")
    assert f.response is not None and f.metadata["usagefix"]["status"] == "unchanged"
    assert contentviews.prettify_message(f.response, f).view_name != "usage diff"
    # Chosen by name, it still shows the record.
    assert "usagefix: unchanged" in contentviews.prettify_message(f.response, f, "usage diff").text
    g = await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json")
    assert contentviews.prettify_message(g.request, g).view_name != "usage diff"


async def test_streamed_anthropic_record_renders() -> None:
    f = await recorded_flow("anthropic/fix-old-style-delta.upstream.sse", "text/event-stream")
    assert f.response is not None
    text = contentviews.prettify_message(f.response, f).text
    assert "usagefix: rewritten (anthropic, streamed)" in text
    assert "R4: message_delta lacked input_tokens" in text


def write(flows: list[http.HTTPFlow], path: Path) -> None:
    with path.open("wb") as f:
        w = mio.FlowWriter(f)
        for fl in flows:
            w.add(fl)


async def test_cli_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = [
        await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json"),
        await recorded_flow("openai_chat/ok-prompt-cache.upstream.json", "application/json"),
    ]
    path = tmp_path / "x.mitm"
    write(flows, path)
    assert main(["diff", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("== POST") == 1 and "prompt_tokens" in out and "R1:" in out
    assert main(["diff", "--all", str(path)]) == 0
    assert capsys.readouterr().out.count("== POST") == 2
    assert main(["diff", "--json", str(path)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["record"]["usage_after"]["input_total"] == 107208
    assert row["comment"] == "prompt 1678→107208 · R1"


def test_cli_reports_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.mitm"
    bad.write_bytes(b"not a flow file")
    assert main(["diff", str(bad)]) == 2
    assert "usagefix:" in capsys.readouterr().err
    assert main(["diff", str(tmp_path / "missing.mitm")]) == 2


def test_record_survives_a_real_flow_file() -> None:
    # Every golden record goes through tnetstring: an unserializable value would drop the flow.
    import asyncio

    for p in sorted(GOLDEN.glob("*/*.upstream.*")):
        ctype = "text/event-stream" if p.suffix == ".sse" else "application/json"
        f = asyncio.run(recorded_flow(f"{p.parent.name}/{p.name}", ctype))
        buf = io.BytesIO()
        mio.FlowWriter(buf).add(f)
        buf.seek(0)
        (g,) = list(mio.FlowReader(buf).stream())
        assert g.metadata == f.metadata, p.name


async def test_the_view_shows_cost_before_and_after_and_only_a_named_session() -> None:
    f = await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json")
    assert f.response is not None
    text = " ".join(contentviews.prettify_message(f.response, f).text.split())
    # The founding bug's block gives a negative cost downstream: exact, from genai-prices' rates.
    assert "negative cost downstream); cost -$0.2743 → $0.0422 (claude-sonnet-4-5, genai-prices" in text
    # One flow alone cannot see its run: a fingerprint is not claimed as its session.
    assert "session: not named by this request" in text
    g = await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json")
    g.request.headers["x-litellm-session-id"] = "run-42"
    assert g.response is not None
    assert "session: litellm:run-42 (header)" in contentviews.prettify_message(g.response, g).text


async def test_the_view_prices_once_per_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    from usagefix.ledger.pipeline import Pipeline

    f = await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json")
    assert f.response is not None
    calls: list[str] = []
    real = Pipeline.row
    monkeypatch.setattr(Pipeline, "row", lambda self, *a: calls.append("row") or real(self, *a))
    first = contentviews.prettify_message(f.response, f).text
    assert contentviews.prettify_message(f.response, f).text == first and calls == ["row"]
    f.metadata["usagefix"] = dict(f.metadata["usagefix"])  # a new record: priced anew
    contentviews.prettify_message(f.response, f)
    assert calls == ["row", "row"]
    # Pricing that fails leaves the tokens on screen, without money.
    monkeypatch.setattr(Pipeline, "row", lambda self, *a: 1 / 0)
    f.metadata["usagefix"] = dict(f.metadata["usagefix"])
    text = contentviews.prettify_message(f.response, f).text
    assert "prompt_tokens" in text and "cost -$" not in text


async def test_the_view_honours_usage_prices(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[[price]]\nmodel = "claude-sonnet-4-5"\nprice_as = "gpt-4o"\nprovider = "openai"\n')
    f = await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json")
    assert f.response is not None
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, usage_prices=str(prices))
        text = " ".join(contentviews.prettify_message(f.response, f).text.split())
    assert "(gpt-4o, genai-prices" in text and "-$0.2743" not in text


async def test_cli_diff_shows_cost_and_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = [await recorded_flow("openai_chat/fix-founding-bug.upstream.json", "application/json")]
    flows[0].request.headers["x-run"] = "r-1"
    path = tmp_path / "x.mitm"
    write(flows, path)
    assert main(["diff", "--session-header", "x-run", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "cost -$0.2743 → $0.0422" in out and "session: x-run:r-1 (header)" in out
    assert "cost before" in out and "cost after" in out
    assert main(["diff", "--json", "--session-header", "x-run", str(path)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["cost_usd"] == {"before": "-0.274347", "after": "0.042243"}
    assert row["session"] == {"key": "x-run:r-1", "source": "header"}
    assert main(["diff", "--json", str(path)]) == 0  # nothing else names it: none, not a guess
    assert json.loads(capsys.readouterr().out)["session"] == {"key": None, "source": None}
    with pytest.raises(SystemExit, match="usage_prices"):
        main(["diff", "--prices", str(tmp_path / "missing.toml"), str(path)])
