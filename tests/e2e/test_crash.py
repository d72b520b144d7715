"""End to end: `kill -9` of mitmdump in the middle of a stream leaves the flow file readable up to
the last finished flow, each with its record."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from upstream import Scenario, Upstream, awkward_cuts

from conftest import ROOT, Proxy, start_mitmdump

pytestmark = pytest.mark.e2e

FOUNDING = (ROOT / "flows" / "golden" / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()


def test_kill_9_mid_stream_leaves_every_finished_flow_readable(upstream: Upstream, tmp_path: Path) -> None:
    flows = tmp_path / "flows.mitm"
    proc, port = start_mitmdump(
        [
            "--mode",
            f"reverse:{upstream.url}",
            "-s",
            str(ROOT / "addon" / "normalize_usage.py"),
            "-w",
            str(flows),
        ],
        tmp_path,
    )
    proxy = Proxy(f"http://127.0.0.1:{port}", flows, tmp_path / "mitmdump.log")
    url = proxy.url + "/v1/chat/completions"
    upstream.scenario = Scenario(
        body=FOUNDING, content_type="text/event-stream", chunks=awkward_cuts(FOUNDING)
    )
    for _ in range(5):
        assert b'"prompt_tokens":107208' in httpx.post(url, json={"stream": True}, timeout=10).content
    assert len(proxy.wait_for_flows(5)) == 5
    # One more, slow: mitmdump is killed while it is streaming.
    upstream.scenario = Scenario(
        body=FOUNDING, content_type="text/event-stream", chunks=awkward_cuts(FOUNDING), delay=1.0
    )
    got: list[bytes] = []

    def slow() -> None:
        try:
            with httpx.stream("POST", url, json={"stream": True}, timeout=10) as r:
                got.extend(r.iter_raw())
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got, "the slow stream never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t.join(timeout=15)
    saved = proxy.flows()  # reads to the end: no torn record
    assert len(saved) == 5
    assert all(f.metadata["usagefix"]["status"] == "rewritten" for f in saved)
