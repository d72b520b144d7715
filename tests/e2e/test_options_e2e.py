"""End to end: a bad option stops a real mitmdump with one clear line; a good one starts it.

The rule: every bad value of a `usage_*` option, and every unknown `usage_*` name, stops mitmdump
before it listens, with one line naming the option, the value and what is accepted, and a
non-zero exit: never a silent plain proxy (without the check, mitmproxy drops a deferred value it
cannot parse and runs on without the addon; the client gets the broken usage and the key is saved).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mitmproxy import io as mio
from upstream import Scenario, Upstream

from conftest import MITMDUMP, ROOT, start_mitmdump, stop

pytestmark = pytest.mark.e2e

ADDON = str(ROOT / "addon" / "normalize_usage.py")
FOUNDING = ROOT / "flows" / "golden" / "openai_chat" / "fix-founding-bug.upstream.json"
PLANTED = "sk-live-PLANTED0123456789"

# A profile file whose sixth line holds a misspelled key (`prompt_cache_reads` is the real one).
MISSPELLED_PROFILE = """\
# A CLI proxy that serves Claude over the OpenAI API.
[[profile]]
name = "cli-proxy"
host = "127.0.0.1:8317"

prompt_cache_read = "excluded"
"""


def run_until_exit(cmd: list[str], timeout: float = 20) -> tuple[int, str]:
    """Run a command that must stop by itself; its exit code and its output (stdout and stderr)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        r = subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        out = (e.output or b"").decode(errors="replace")
        pytest.fail(f"still running after {timeout:.0f} s (a silent plain proxy?):\n{out}")
    return r.returncode, r.stdout.decode(errors="replace")


def mitmdump_args(tmp: Path, *sets: str) -> list[str]:
    args = ["--set", f"confdir={tmp / 'conf'}", "--listen-host", "127.0.0.1", "-p", "0"]
    args += ["-s", ADDON, "-w", str(tmp / "flows.mitm")]
    for s in sets:
        args += ["--set", s]
    return args


def assert_stopped_with(rc: int, output: str, line: str) -> None:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert rc != 0, output
    assert "Traceback" not in output and "listening at" not in output, output
    assert lines and lines[-1] == line, output
    assert sum("usagefix:" in ln for ln in lines) == 1, output


BAD_SETTINGS = {
    **{
        f"usage_redact_secrets={v}": f"usage_redact_secrets: '{v}' is not a boolean (true or false)"
        for v in ("yes", "True", "1", "maybe")
    },
    "usage_request_stream_usage=True": "usage_request_stream_usage: 'True' is not a boolean (true or false)",
    "usage_max_event_bytes=abc": "usage_max_event_bytes: 'abc' is not an integer (bytes, from 4096 to 268435456)",
    "usage_max_event_bytes=10": "usage_max_event_bytes: 10 is too small (bytes, from 4096 to 268435456)",
    "usage_max_event_byte=100000": "usage_max_event_byte: no such option (did you mean usage_max_event_bytes?)",
}


@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_bad_value_or_name_stops_mitmdump_with_one_line(tmp_path: Path, setting: str) -> None:
    rc, output = run_until_exit([str(MITMDUMP), *mitmdump_args(tmp_path, setting)])
    assert_stopped_with(rc, output, "usagefix: " + BAD_SETTINGS[setting])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read usage profiles {path}: No such file or directory"),
        (b"[[profile]\n", "{path}: Expected ']]' at the end of an array declaration (at line 1, column 10)"),
        (
            MISSPELLED_PROFILE.encode(),
            "{path}: profile.0.prompt_cache_read (line 6): Extra inputs are not permitted",
        ),
        (
            '[[profile]]\nname = "caf\u00e9"\nhost = "x"\n'.encode("latin-1"),
            "{path}: not UTF-8 text (byte 0xe9 on line 2)",
        ),
    ],
    ids=["missing", "bad-toml", "bad-key", "not-utf8"],
)
def test_a_bad_profile_file_stops_mitmdump_with_one_line(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "profiles.toml"
    if content is not None:
        path.write_bytes(content)
    rc, output = run_until_exit([str(MITMDUMP), *mitmdump_args(tmp_path, f"usage_profiles={path}")])
    assert_stopped_with(rc, output, "usagefix: usage_profiles: " + problem.format(path=path))


def test_a_bad_value_in_config_yaml_stops_mitmdump_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("usage_redact_secrets: maybe\n")
    rc, output = run_until_exit([str(MITMDUMP), *mitmdump_args(tmp_path)])
    assert_stopped_with(
        rc, output, "usagefix: usage_redact_secrets: 'maybe' is not a boolean (true or false)"
    )


def test_scripts_run_stops_on_a_bad_value_with_one_line(tmp_path: Path) -> None:
    run = ROOT / "scripts" / "run"
    args = ["--set", f"confdir={tmp_path / 'conf'}", "--listen-host", "127.0.0.1", "-p", "0"]
    args += ["-w", str(tmp_path / "flows.mitm"), "--set", "usage_redact_secrets=yes"]
    rc, output = run_until_exit([str(run), *args], timeout=120)  # a first run may set up .venv
    assert_stopped_with(rc, output, "usagefix: usage_redact_secrets: 'yes' is not a boolean (true or false)")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    up.scenario = Scenario(body=FOUNDING.read_bytes())
    yield up
    up.close()


@pytest.mark.parametrize(
    ("setting", "saved_authorization"),
    [("usage_redact_secrets=false", f"Bearer {PLANTED}"), ("usage_redact_secrets", "Bearer <redacted>")],
)
def test_a_good_value_starts_mitmdump_and_takes_effect(
    tmp_path: Path, upstream: Upstream, setting: str, saved_authorization: str
) -> None:
    sets = ["--set", setting, "--set", "usage_max_event_bytes=65536"]
    args = ["--mode", f"reverse:{upstream.url}", "-s", ADDON, "-w", str(tmp_path / "flows.mitm"), *sets]
    proc, port = start_mitmdump(args, tmp_path)  # it sets confdir, the host and a free port
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"authorization": f"Bearer {PLANTED}"},
            json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]},
            timeout=20,
        )
    finally:
        stop(proc)
    assert r.json()["usage"]["prompt_tokens"] == 107208  # the addon is on
    assert "Traceback" not in (tmp_path / "mitmdump.log").read_text()
    with (tmp_path / "flows.mitm").open("rb") as f:
        (flow,) = list(mio.FlowReader(f).stream())
    assert flow.request.headers["authorization"] == saved_authorization  # the option took effect
    assert json.loads(flow.response.content)["usage"]["prompt_tokens"] == 107208  # type: ignore[union-attr]
