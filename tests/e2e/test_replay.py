"""End to end: recording, redaction, re-normalizing files, server and client replay, mitmweb."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import zlib
from pathlib import Path

import httpx
import openai
import pytest
from mitmproxy import http
from mitmproxy import io as mio
from upstream import Scenario, Upstream, awkward_cuts

from conftest import MITMDUMP, ROOT, start_mitmdump, stop

pytestmark = pytest.mark.e2e

GOLDEN = ROOT / "flows" / "golden"
ADDON = str(ROOT / "addon" / "normalize_usage.py")
PLANTED = "sk-live-PLANTED0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]


def read(path: Path) -> list[http.HTTPFlow]:
    with path.open("rb") as f:
        return [fl for fl in mio.FlowReader(f).stream() if isinstance(fl, http.HTTPFlow)]


def mitmdump(*args: str, cwd: Path = ROOT) -> None:
    """Run a mitmdump that exits by itself (-nr, -n -C)."""
    r = subprocess.run([str(MITMDUMP), *args], cwd=cwd, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def exchange(base_url: str, upstream: Upstream, prompt_tokens: int) -> None:
    """The founding bug twice, streamed and not, through the OpenAI SDK, with a planted key."""
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=PLANTED, max_retries=0, timeout=20)
    upstream.scenario = Scenario(body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes())
    r = client.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
    assert r.usage is not None and r.usage.prompt_tokens == prompt_tokens
    body = (GOLDEN / "openai_chat/fix-founding-bug-stream.upstream.sse").read_bytes()
    upstream.scenario = Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body))
    usage = [
        c.usage
        for c in client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        if c.usage
    ]
    assert usage[0].prompt_tokens == prompt_tokens


@pytest.fixture(scope="module")
def recordings(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One capture made with the addon, one with plain mitmdump."""
    tmp = tmp_path_factory.mktemp("rec")
    files = {"addon": tmp / "addon.mitm", "plain": tmp / "plain.mitm"}
    for name, extra in (("addon", ["-s", ADDON]), ("plain", [])):
        proc, port = start_mitmdump(
            ["--mode", f"reverse:{upstream.url}", *extra, "-w", str(files[name])], tmp, f"{name}.log"
        )
        try:
            exchange(f"http://127.0.0.1:{port}", upstream, 107208 if extra else 1678)
            time.sleep(0.3)  # the last flow is saved once the client's connection is done with it
        finally:
            stop(proc)
    return files


def test_capture_has_bodies_and_records_and_no_secret(recordings: dict[str, Path]) -> None:
    raw = recordings["addon"].read_bytes()
    assert PLANTED.encode() not in raw
    flows = read(recordings["addon"])
    assert [f.metadata["usagefix"]["status"] for f in flows] == ["rewritten", "rewritten"]
    assert all(f.request.headers["authorization"] == "Bearer <redacted>" for f in flows)
    assert all(f.response is not None and b"107208" in (f.response.content or b"") for f in flows)
    # Without the addon the key is there: the test would catch a leak.
    assert PLANTED.encode() in recordings["plain"].read_bytes()


def test_renormalizing_a_file_is_idempotent(recordings: dict[str, Path], tmp_path: Path) -> None:
    once, twice = tmp_path / "once.mitm", tmp_path / "twice.mitm"
    mitmdump("-nr", str(recordings["addon"]), "-s", ADDON, "-w", str(once))
    mitmdump("-nr", str(once), "-s", ADDON, "-w", str(twice))
    a, b, c = read(recordings["addon"]), read(once), read(twice)
    for x, y, z in zip(a, b, c, strict=True):
        assert x.metadata == y.metadata == z.metadata
        assert x.comment == y.comment == z.comment
        assert x.response and y.response and z.response
        assert x.response.content == y.response.content == z.response.content


def test_the_shipped_demo_capture_is_what_the_addon_writes_today(tmp_path: Path) -> None:
    # The README's "try it offline" file: re-normalizing it changes nothing, so it is current
    # (regenerate it with scripts/make_demo_flows.py when the record changes).
    demo, again = ROOT / "flows" / "synthetic-founding-bug.mitm", tmp_path / "again.mitm"
    mitmdump("--set", f"confdir={tmp_path / 'conf'}", "-nr", str(demo), "-s", ADDON, "-w", str(again))
    a, b = read(demo), read(again)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        assert x.metadata == y.metadata and x.comment == y.comment
        assert x.response and y.response and x.response.content == y.response.content


def test_renormalizing_a_plain_capture_fixes_it(recordings: dict[str, Path], tmp_path: Path) -> None:
    fixed = tmp_path / "fixed.mitm"
    mitmdump("-nr", str(recordings["plain"]), "-s", ADDON, "-w", str(fixed))
    flows = read(fixed)
    assert [f.metadata["usagefix"]["status"] for f in flows] == ["rewritten", "rewritten"]
    assert PLANTED.encode() not in fixed.read_bytes()  # re-saving redacts too
    # The same facts as a live capture.
    live = read(recordings["addon"])
    for f, g in zip(flows, live, strict=True):
        assert f.metadata["usagefix"]["usage_after"] == g.metadata["usagefix"]["usage_after"]
        assert f.response is not None and g.response is not None
        assert f.response.content == g.response.content


def test_server_replay_serves_the_recording_through_the_addon(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    # Offline: the reverse target is a closed port; every answer comes from the recording, which
    # was made without the addon, so the client sees the addon fix the founding bug again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    out = tmp_path / "replayed.mitm"
    args = ["--mode", f"reverse:http://127.0.0.1:{dead}", "--server-replay", str(recordings["plain"])]
    args += ["--set", "connection_strategy=lazy", "--set", "server_replay_ignore_host=true"]
    args += ["--set", "server_replay_ignore_port=true", "-s", ADDON, "-w", str(out)]
    proc, port = start_mitmdump(args, tmp_path, "replay.log")
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=PLANTED, max_retries=0, timeout=20
        )
        r = client.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
        assert r.usage is not None and r.usage.prompt_tokens == 107208
        chunks = client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        assert [c.usage.total_tokens for c in chunks if c.usage] == [107578]
        time.sleep(0.3)
    finally:
        stop(proc)
    flows = read(out)
    assert [f.metadata["usagefix"]["status"] for f in flows] == ["rewritten", "rewritten"]
    assert all(f.is_replay == "response" for f in flows)


def test_client_replay_resends_through_the_addon(
    recordings: dict[str, Path], upstream: Upstream, tmp_path: Path
) -> None:
    body = (GOLDEN / "openai_chat/fix-founding-bug-stream.upstream.sse").read_bytes()
    upstream.scenario = Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body))
    out = tmp_path / "creplay.mitm"
    mitmdump(
        "-n", "-C", str(recordings["plain"]), "-s", ADDON, "-w", str(out), "--set", f"confdir={tmp_path}"
    )
    flows = read(out)
    assert len(flows) == 2 and all(f.is_replay == "request" for f in flows)
    assert all(f.metadata["usagefix"]["status"] == "rewritten" for f in flows)
    assert PLANTED.encode() not in out.read_bytes()


def read_once(path: Path) -> list[http.HTTPFlow]:
    """The flows of a file, each once: mitmproxy's Save writes a flow in `response` and again in
    `error`, so `-nr` writes a cut-off flow (it has both) twice, identically."""
    return list({f.id: f for f in read(path)}.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mitmweb_shows_the_usage_diff(recordings: dict[str, Path], tmp_path: Path) -> None:
    web = free_port()
    log = tmp_path / "web.log"
    mitmweb = MITMDUMP.with_name("mitmweb")
    args = [str(mitmweb), "-r", str(recordings["addon"]), "-s", ADDON, "--set", f"confdir={tmp_path}"]
    args += ["--listen-host", "127.0.0.1", "-p", "0", "--web-host", "127.0.0.1", "--web-port", str(web)]
    args += ["--set", "web_open_browser=false", "--set", "web_password=usagefix-test"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{web}"
        params = {"token": "usagefix-test"}
        with httpx.Client(timeout=10) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    flows = c.get(f"{base}/flows", params=params).json()
                    if len(flows) == 2:
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            assert "usage diff" in c.get(f"{base}/state", params=params).json()["contentViews"]
            for f in flows:
                assert f["comment"] == "prompt 1678→107208 · R1"
                view = c.get(f"{base}/flows/{f['id']}/response/content/auto.json", params=params).json()
                assert view["view_name"] == "usage diff"
                assert "R1: cache reads were left out of prompt_tokens" in view["text"]
    finally:
        stop(proc)


# -- re-normalizing with every option that changes what is recorded --------------------------------

PROFILES = """
[[profile]]
name = "watch-only"
path = "/watch/*"
observe_only = true

[[profile]]
name = "cliproxy-claude"
model = "claude-*"
prompt_cache_reads = "excluded"
"""
OPTION_SETS = {
    "defaults": [],
    "every option": [
        *("--set", "usage_request_stream_usage=true", "--set", "usage_redact_secrets=false"),
        *("--set", "usage_profiles=PROFILES", "--set", "usage_max_event_bytes=4096"),
    ],
}


def _chunk(choices: list[object], usage: object) -> bytes:
    obj = {"id": "chatcmpl-synthetic-9", "object": "chat.completion.chunk", "model": "claude-sonnet-4-5"}
    return b"data: " + json.dumps({**obj, "choices": choices, "usage": usage}).encode() + b"\n\n"


def _gzip_chunks(body: bytes) -> list[bytes]:
    comp = zlib.compressobj(wbits=31)
    return [comp.compress(c) + comp.flush(zlib.Z_SYNC_FLUSH) for c in awkward_cuts(body)] + [comp.flush()]


def _traffic(base: str, upstream: Upstream) -> None:
    """One exchange of each kind whose record an option changes."""
    founding_json = (GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
    founding_sse = (GOLDEN / "openai_chat/fix-founding-bug-stream.upstream.sse").read_bytes()
    usage = json.loads(founding_json)["usage"]
    usage_before_finish = (  # a dropped usage chunk shares its offset with the next change
        _chunk([{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], None)
        + _chunk([], usage)
        + _chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], None)
        + b"data: [DONE]\n\n"
    )
    ambiguous = json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "choices": [],
            "usage": {**usage, "prompt_tokens_details": {"cached_tokens": 1500}},
        }
    )
    sse = "text/event-stream"
    stream = {"model": "claude-sonnet-4-5", "messages": MESSAGES, "stream": True}
    plain = {"model": "claude-sonnet-4-5", "messages": MESSAGES}
    exchanges: list[tuple[str, dict[str, object], Scenario]] = [
        (
            "/v1/chat/completions",
            stream,
            Scenario(body=founding_sse, content_type=sse, chunks=awkward_cuts(founding_sse)),
        ),
        (
            "/v1/chat/completions",
            stream,
            Scenario(body=usage_before_finish, content_type=sse, chunks=awkward_cuts(usage_before_finish)),
        ),
        ("/v1/chat/completions", plain, Scenario(body=ambiguous.encode())),
        (
            "/watch/v1/chat/completions",  # asks for usage itself: nothing is added to strip
            {**stream, "stream_options": {"include_usage": True}},
            Scenario(body=founding_sse, content_type=sse, chunks=awkward_cuts(founding_sse)),
        ),
        ("/v1/chat/completions", plain, Scenario(body=founding_json, gzip=True)),
        (
            "/v1/chat/completions",
            stream,
            Scenario(
                body=founding_sse,
                content_type=sse,
                chunks=_gzip_chunks(founding_sse),
                headers={"content-encoding": "gzip"},
            ),
        ),
        (
            "/v1/chat/completions",
            stream,
            Scenario(body=founding_sse, content_type=sse, chunks=awkward_cuts(founding_sse), cut_after=12),
        ),
    ]
    credentials = {"authorization": f"Bearer {PLANTED}", "x-amz-security-token": PLANTED}
    with httpx.Client(timeout=20, headers=credentials) as c:
        for path, request, scenario in exchanges:
            upstream.scenario = scenario
            try:
                with c.stream("POST", base + path, json=request) as r:
                    assert r.status_code == 200
                    r.read()
            except httpx.RemoteProtocolError:
                assert scenario.cut_after is not None
    time.sleep(0.3)


@pytest.mark.parametrize("option_set", list(OPTION_SETS))
def test_renormalizing_twice_changes_nothing_whatever_the_options(
    option_set: str, upstream: Upstream, tmp_path: Path
) -> None:
    (tmp_path / "profiles.toml").write_text(PROFILES)
    options = [o.replace("PROFILES", str(tmp_path / "profiles.toml")) for o in OPTION_SETS[option_set]]
    capture, once, twice = tmp_path / "capture.mitm", tmp_path / "once.mitm", tmp_path / "twice.mitm"
    proc, port = start_mitmdump(
        ["--mode", f"reverse:{upstream.url}", "-s", ADDON, *options, "-w", str(capture)], tmp_path
    )
    try:
        _traffic(f"http://127.0.0.1:{port}", upstream)
    finally:
        stop(proc)
    mitmdump("-nr", str(capture), "-s", ADDON, *options, "-w", str(once))
    mitmdump("-nr", str(once), "-s", ADDON, *options, "-w", str(twice))
    assert upstream.requests[-1]["headers"]["x-amz-security-token"] == PLANTED  # the upstream's is real
    assert (PLANTED.encode() in capture.read_bytes()) is (option_set != "defaults")  # the saved one not
    a, b, c = read_once(capture), read_once(once), read_once(twice)
    statuses = " ".join(f.metadata["usagefix"]["status"] for f in a)
    if option_set == "defaults":  # the ambiguous block (3rd) is flagged, the watched one (4th) fixed
        assert statuses == "rewritten rewritten unchanged rewritten rewritten rewritten unmeasured"
    else:  # the profile settles the ambiguous block, and only watches the 4th
        assert statuses == "rewritten rewritten rewritten unchanged rewritten rewritten unmeasured"
        assert a[1].metadata["usagefix"]["stream_usage_added"] is True
        assert a[3].metadata["usagefix"]["profile"] == "watch-only"
        assert all(f.request.headers["authorization"] == f"Bearer {PLANTED}" for f in a)
    assert a[5].metadata["usagefix"]["content_encoding"] == "gzip"
    assert a[6].metadata["usagefix"]["held_back"]
    for x, y, z in zip(a, b, c, strict=True):
        assert x.get_state() == y.get_state() == z.get_state()
