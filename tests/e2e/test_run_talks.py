"""End to end: `scripts/run` says what it does, refuses a URL without a scheme, and takes the
caller's relative paths as the caller's (issue 9 §5), run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import openai
import pytest
from test_replay import ADDON, GOLDEN, MESSAGES, read
from upstream import Scenario, Upstream

from conftest import ROOT, start_mitmdump, stop

pytestmark = pytest.mark.e2e

RUN = ROOT / "scripts" / "run"


def start_run(args: list[str], cwd: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`scripts/run ARGS` from `cwd`, on a free port; the process (mitmdump, exec'd) and its log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(RUN), *args, "-p", "0", "--set", f"confdir={cwd / 'conf'}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "usagefix: capture:" in text:
            return proc, text
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"scripts/run did not start:\n{log.read_text(errors='replace')}")


def wait_for(log: Path, needle: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while needle not in (text := log.read_text(errors="replace")):
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    return text


def test_run_refuses_an_upstream_without_a_scheme(tmp_path: Path) -> None:
    for arg in (["--upstream", "127.0.0.1:8317"], ["--upstream=127.0.0.1:8317"]):
        r = subprocess.run([str(RUN), *arg], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (2, "")
        assert r.stderr.splitlines()[-1] == (
            "usagefix: --upstream 127.0.0.1:8317 has no scheme: use http://127.0.0.1:8317 or https://127.0.0.1:8317"
        )


PROFILE = '[[profile]]\nname = "relative-profile"\nmodel = "claude-*"\n'


def test_run_in_reverse_mode_talks_and_takes_relative_paths_as_the_callers(
    upstream: Upstream, tmp_path: Path
) -> None:
    (tmp_path / "profiles.toml").write_text(PROFILE)
    log = tmp_path / "run.log"
    args = ["--upstream", upstream.url, "--set", "usage_profiles=profiles.toml", "-w", "out.mitm"]
    proc, text = start_run(args, tmp_path, log)
    try:
        # The banner: the mode, the capture, and the lines to paste, with the port really in use.
        port = re.search(r"listening at 127\.0\.0\.1:(\d+)\.", text)
        assert port, text
        base = f"http://127.0.0.1:{port.group(1)}"
        assert (
            f"usagefix: reverse proxy in front of {upstream.url}, listening at 127.0.0.1:{port.group(1)}\n"
            in text
        )
        assert f"    export OPENAI_BASE_URL={base}/v1 " in text
        assert f"    export ANTHROPIC_BASE_URL={base} " in text
        assert f"usagefix: capture: {tmp_path / 'out.mitm'}\n" in text
        client = openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0, timeout=20)
        upstream.scenario = Scenario(
            body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
        )
        r = client.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
        assert r.usage is not None and r.usage.prompt_tokens == 107208
        upstream.scenario = Scenario(body=b'{"error":{"message":"bad key"}}', status=401)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        # One line per LLM response: dialect, model, status, what changed, the rules.
        text = wait_for(log, "usagefix: openai_chat gpt-4o 401 http_error")
        assert (
            "usagefix: openai_chat claude-sonnet-4-5 200 rewritten prompt_tokens 1678→107208, "
            "total_tokens 2048→107578 (R1, I3)\n" in text
        )
    finally:
        stop(proc)
    # The summary at exit.
    assert (
        "usagefix: 2 LLM responses: 1 rewritten, 0 unmeasured, 1 http_error; 105,530 tokens restored"
        in log.read_text()
    )
    # `-w out.mitm` and `usage_profiles=profiles.toml` were the caller's files.
    flows = read(tmp_path / "out.mitm")
    assert [f.metadata["usagefix"]["profile"] for f in flows] == ["relative-profile", None]
    # `-r` too: the capture read back from the caller's directory, written there again.
    r = subprocess.run(
        [str(RUN), "-n", "-r", "out.mitm", "-w", "again.mitm", "--set", f"confdir={tmp_path / 'conf'}"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert [f.metadata["usagefix"]["status"] for f in read(tmp_path / "again.mitm")] == [
        "rewritten",
        "http_error",
    ]


def test_run_in_regular_mode_says_how_to_set_the_proxy_and_trust_the_ca(tmp_path: Path) -> None:
    proc, text = start_run(["-w", "out.mitm"], tmp_path, tmp_path / "run.log")
    stop(proc)
    port = re.search(r"listening at 127\.0\.0\.1:(\d+)", text)
    assert port, text
    proxy = f"http://127.0.0.1:{port.group(1)}"
    ca = tmp_path / "conf" / "mitmproxy-ca-cert.pem"
    assert f"usagefix: regular proxy, listening at 127.0.0.1:{port.group(1)}\n" in text
    assert f"    export HTTPS_PROXY={proxy} HTTP_PROXY={proxy}\n" in text
    assert f"    export SSL_CERT_FILE={ca} REQUESTS_CA_BUNDLE={ca} NODE_EXTRA_CA_CERTS={ca}\n" in text
    assert ca.exists()  # the file the lines name is there to trust


def test_plain_mitmdump_users_get_no_banner_and_no_line_per_response(
    upstream: Upstream, tmp_path: Path
) -> None:
    proc, port = start_mitmdump(["--mode", f"reverse:{upstream.url}", "-s", ADDON], tmp_path)
    try:
        upstream.scenario = Scenario(body=(GOLDEN / "openai_chat/fix-founding-bug.client.json").read_bytes())
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=20)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        time.sleep(0.3)
        quiet = (tmp_path / "mitmdump.log").read_text()
        # A response it rewrites gets one line, at mitmproxy's info level, beside mitmproxy's own.
        upstream.scenario = Scenario(
            body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes()
        )
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        time.sleep(0.3)
    finally:
        stop(proc)
    assert "point a client here" not in quiet and "usagefix:" not in quiet
    assert "LLM responses" not in quiet
    text = (tmp_path / "mitmdump.log").read_text()
    lines = [line for line in text.splitlines() if "usagefix:" in line]
    assert len(lines) == 1 and "/v1/chat/completions: prompt 1678→107208 · R1" in lines[0], text
    assert "LLM responses" not in text
