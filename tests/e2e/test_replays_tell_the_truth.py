"""End to end: what a replay records is true of the replay (issue 9 §3), through a real mitmdump."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from test_replay import ADDON, GOLDEN, MESSAGES, PLANTED, exchange, mitmdump, read
from upstream import Scenario, Upstream

from conftest import start_mitmdump, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Upstream]]:
    """A capture made with the addon (both flows `rewritten`), and the upstream it was made against."""
    tmp = tmp_path_factory.mktemp("truth")
    path = tmp / "addon.mitm"
    up = Upstream()
    proc, port = start_mitmdump(["--mode", f"reverse:{up.url}", "-s", ADDON, "-w", str(path)], tmp)
    try:
        exchange(f"http://127.0.0.1:{port}", up, 107208)
        time.sleep(0.3)
    finally:
        stop(proc)
    assert [f.metadata["usagefix"]["status"] for f in read(path)] == ["rewritten", "rewritten"]
    yield path, up
    up.close()


def client_replay(capture: Path, tmp_path: Path) -> list[object]:
    out = tmp_path / "out.mitm"
    mitmdump("-n", "-C", str(capture), "-s", ADDON, "-w", str(out), "--set", f"confdir={tmp_path}")
    flows = read(out)
    assert len(flows) == 2 and all(f.is_replay == "request" for f in flows)
    return flows  # type: ignore[return-value]


def test_client_replay_gets_a_fresh_record_from_the_new_response(
    capture: tuple[Path, Upstream], tmp_path: Path
) -> None:
    path, up = capture
    # The upstream answers correctly now: the replayed flows say so, not what the old ones said.
    up.scenario = Scenario(body=(GOLDEN / "openai_chat/fix-founding-bug.client.json").read_bytes())
    flows = client_replay(path, tmp_path)
    assert [f.metadata["usagefix"]["status"] for f in flows] == ["unchanged", "unchanged"]  # type: ignore[attr-defined]
    assert all(f.comment == "usage correct" for f in flows)  # type: ignore[attr-defined]


def test_client_replay_answered_401_records_the_401_not_rewritten(
    capture: tuple[Path, Upstream], tmp_path: Path
) -> None:
    path, up = capture
    # A redacted capture replayed: the upstream refuses the `<redacted>` key.
    up.scenario = Scenario(body=b'{"error":{"message":"Invalid API key"}}', status=401)
    flows = client_replay(path, tmp_path)
    for f in flows:
        assert f.response is not None and f.response.status_code == 401  # type: ignore[attr-defined]
        rec = f.metadata["usagefix"]  # type: ignore[attr-defined]
        assert (rec["status"], rec["usage_after"], rec["changes"]) == ("http_error", None, [])
        assert "rewritten" not in f.comment and "401 Unauthorized" in f.comment  # type: ignore[attr-defined]
    assert up.requests[-1]["headers"]["authorization"] == "Bearer <redacted>"


def test_client_replay_to_a_gone_upstream_leaves_no_stale_record(
    capture: tuple[Path, Upstream], tmp_path: Path
) -> None:
    path, _ = capture
    # The same capture, its upstream now gone (a port nothing listens on).
    gone = tmp_path / "gone.mitm"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    flows = read(path)
    for f in flows:
        f.request.port = dead
    from mitmproxy import io as mio

    with gone.open("wb") as fh:
        w = mio.FlowWriter(fh)
        for f in flows:
            w.add(f)
    for f in client_replay(gone, tmp_path):
        assert f.response is None and f.error is not None  # type: ignore[attr-defined]
        assert "usagefix" not in f.metadata  # type: ignore[attr-defined]
        assert f.comment == "" and not f.marked  # type: ignore[attr-defined]


class Listener:
    """A TCP port that counts the connections it gets: the reverse target that must stay untouched."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def serve(capture: Path, tmp_path: Path, target: int, *extra: str) -> tuple[list[object], str]:
    """Server-replay `capture` in front of port `target`; one recorded request, one unmatched."""
    out = tmp_path / "served.mitm"
    args = ["--mode", f"reverse:http://127.0.0.1:{target}", "--server-replay", str(capture)]
    args += ["--set", "connection_strategy=lazy", "--set", "server_replay_ignore_host=true"]
    args += ["--set", "server_replay_ignore_port=true", *extra, "-s", ADDON, "-w", str(out)]
    proc, port = start_mitmdump(args, tmp_path, "serve.log")
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=PLANTED, max_retries=0, timeout=20
        )
        r = client.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
        assert r.usage is not None and r.usage.prompt_tokens == 107208
        unmatched = ""
        try:
            client.chat.completions.create(model="not-recorded", messages=MESSAGES)  # type: ignore[arg-type]
        except openai.APIStatusError as e:
            unmatched = f"{e.status_code}"
        except openai.APIConnectionError:
            unmatched = "connection"
        time.sleep(0.3)
    finally:
        stop(proc)
    return read(out), unmatched  # type: ignore[return-value]


def test_server_replay_never_contacts_the_reverse_target(
    capture: tuple[Path, Upstream], tmp_path: Path
) -> None:
    path, _ = capture
    target = Listener()
    try:
        flows, unmatched = serve(path, tmp_path, target.port, "--set", "server_replay_extra=404")
        assert (unmatched, target.connections) == ("404", 0)
        rec = flows[1].metadata["usagefix"]  # type: ignore[attr-defined]
        assert (rec["status"], rec["error"]) == (
            "http_error",
            "server replay answered HTTP 404 Not Found: no usage read",
        )
        # Without it (mitmproxy's default, `forward`), the unmatched request goes to the target.
        _, unmatched = serve(path, tmp_path, target.port)
        assert unmatched != "404" and target.connections > 0
    finally:
        target.close()


def test_server_replay_of_an_addon_capture_records_what_the_original_did(
    capture: tuple[Path, Upstream], tmp_path: Path
) -> None:
    path, _ = capture
    target = Listener()
    try:
        flows, _ = serve(path, tmp_path, target.port, "--set", "server_replay_extra=404")
    finally:
        target.close()
    original = read(path)[0].metadata["usagefix"]
    served = flows[0].metadata["usagefix"]  # type: ignore[attr-defined]
    assert served["status"] == "rewritten"  # normalized anew from the upstream's original
    for key in ("usage_before", "usage_after", "upstream_usage", "emitted_usage", "changes", "rules"):
        assert served[key] == original[key], key
    assert flows[0].is_replay == "response"  # type: ignore[attr-defined]
