"""`usagefix ledger import`: a thousand exchanges in seconds, idempotent, errors that name the file."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy import io as mio
from mitmproxy.io import tnetstring

from usagefix.cli import main
from usagefix.flowfacts import facts_from_flow, iter_flows, rows_from_flows
from usagefix.ledger import read_rows

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "flows" / "synthetic-founding-bug.mitm"


def thousand(path: Path) -> int:
    """A flow file of 1000 LLM exchanges (the demo's four, again and again, each its own id) and
    one that is not an LLM's."""
    demo = [f.get_state() for f in iter_flows([DEMO])]
    with path.open("wb") as f:
        for i in range(1000):  # written as mitmproxy's FlowWriter does, without a copy per flow
            tnetstring.dump({**demo[i % len(demo)], "id": str(uuid.UUID(int=i))}, f)
        other = mio.read_flows_from_paths([DEMO])[0].copy()
        other.id = str(uuid.uuid4())
        other.request.path = "/health"
        other.metadata.clear()
        mio.FlowWriter(f).add(other)
    return 1000


def test_a_thousand_exchanges_import_in_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "many.mitm"
    n = thousand(flows)
    ledger = tmp_path / "ledger.sqlite"
    t0 = time.monotonic()
    assert main(["ledger", "import", str(flows), "--ledger", str(ledger)]) == 0
    took = time.monotonic() - t0
    assert f"{n} exchanges read, {n} new rows" in capsys.readouterr().err
    assert took < 20, f"{took:.1f} s"  # about 1-2 s here; the bound leaves room for a busy machine
    assert len(list(read_rows(ledger))) == n  # twice over, the same rows: tests/e2e/test_ledger_e2e.py


def test_rows_from_the_demo_file_carry_its_records() -> None:
    rows = list(rows_from_flows([DEMO]))
    assert [r.usagefix_status for r in rows] == ["rewritten", "rewritten", "unchanged", "rewritten"]
    assert rows[0].usage_before is not None and rows[0].usage_before["input_total"] == 1678
    assert rows[0].usage_after is not None and rows[0].usage_after["input_total"] == 107208
    assert {r.dialect for r in rows} == {"openai_chat", "anthropic"}
    facts = facts_from_flow(next(iter_flows([DEMO])))
    assert isinstance(facts.request_body, dict) and facts.request_body.get("model")
    assert dict(facts.request_headers).get("authorization", "<redacted>").endswith("<redacted>")


def test_the_host_is_the_name_the_client_asked_for_in_transparent_mode() -> None:
    from mitmproxy.proxy.mode_specs import ProxyMode
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.request.host = "104.18.6.192"
    flow.request.headers["host"] = "api.openai.com:443"
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.client_conn.sni = None
    assert facts_from_flow(flow).host == "api.openai.com"
    flow.client_conn.sni = "api.anthropic.com"
    assert facts_from_flow(flow).host == "api.anthropic.com"
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:http://104.18.6.192")
    assert facts_from_flow(flow).host == "104.18.6.192"  # the upstream the proxy stands in front of
    flow.client_conn.proxy_mode = ProxyMode.parse("regular")
    flow.request.host = "api.example.com"
    assert facts_from_flow(flow).host == "api.example.com"


def test_a_file_cut_short_gives_the_rows_before_the_cut_and_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = DEMO.read_bytes()
    cut = tmp_path / "cut.mitm"
    cut.write_bytes(whole[: len(whole) - 100])  # the last flow torn, as by kill -9 mid-write
    ledger = tmp_path / "l.sqlite"
    assert main(["ledger", "import", str(cut), "--ledger", str(ledger)]) == 2
    assert str(cut) in capsys.readouterr().err
    assert len(list(read_rows(ledger))) == 3


def test_import_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.mitm"
    bad.write_bytes(b"this is not a flow file")
    assert main(["ledger", "import", str(bad), "--ledger", str(tmp_path / "l.sqlite")]) == 2
    assert str(bad) in capsys.readouterr().err
    assert (
        main(["ledger", "import", str(tmp_path / "none.mitm"), "--ledger", str(tmp_path / "l.sqlite")]) == 2
    )
    assert "none.mitm: no such file or directory" in capsys.readouterr().err
    # A bad file among good ones is named; the others are still imported.
    both = tmp_path / "both.sqlite"
    assert main(["ledger", "import", str(bad), str(DEMO), "--ledger", str(both)]) == 2
    assert str(bad) in capsys.readouterr().err and len(list(read_rows(both))) == 4
    assert main(["ledger", "import", str(DEMO), "--ledger", "mysql://h/db"]) == 2
    assert "mysql:// is not a ledger" in capsys.readouterr().err
    assert main(["ledger", "import", str(DEMO), "--ledger", "off"]) == 2
    assert main(["ledger", "import", str(DEMO), "--ledger", "postgresql://x@127.0.0.1:1/none"]) == 2
    assert "cannot open the ledger postgresql://x@127.0.0.1:1/none" in capsys.readouterr().err


def test_a_flow_without_a_response_is_an_error_row(tmp_path: Path) -> None:
    from mitmproxy.test import tflow

    flow = tflow.tflow(err=True)
    flow.request.method, flow.request.path = "POST", "/v1/messages"
    assert isinstance(flow, http.HTTPFlow)
    path = tmp_path / "err.mitm"
    with path.open("wb") as f:
        mio.FlowWriter(f).add(flow)
    (row,) = rows_from_flows([path])
    assert row.usagefix_status == "error" and row.status_code is None and row.dialect == "anthropic"
    assert row.error == flow.error.msg and row.ts_end == flow.error.timestamp  # type: ignore[union-attr]
