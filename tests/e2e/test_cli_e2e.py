"""End to end: the `usagefix` command as a user runs it (the installed entry point, a subprocess)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from usagefix.record import UsageRecord

pytestmark = pytest.mark.e2e

USAGEFIX = Path(sys.executable).with_name("usagefix")
DEMO = ROOT / "flows" / "synthetic-founding-bug.mitm"


def usagefix(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    return subprocess.run(
        [str(USAGEFIX), *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


def test_usagefix_alone_prints_its_help_and_version_works() -> None:
    r = usagefix()
    assert r.returncode == 0 and r.stdout.startswith("usage: usagefix")
    assert "diff" in r.stdout and "doctor" in r.stdout
    v = usagefix("--version")
    assert v.returncode == 0 and re.fullmatch(
        r"usagefix \S+ \(mitmproxy 12\.\d+\.\d+, Python 3\.\d+\.\d+\)\n", v.stdout
    )


def test_doctor_checks_mitmproxy_the_decoders_the_port_and_the_ca(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        r = usagefix("doctor", "-p", port, "--confdir", str(tmp_path))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert re.match(r"ok   mitmproxy 12\.\d+\.\d+ \(12\.2\.x and 12\.3\.x are supported\)$", lines[0])
    assert lines[1] == "ok   decoders: gzip, deflate, br, zstd (compressed streams are decoded and repaired)"
    assert lines[2].startswith(f"FAIL port: 127.0.0.1:{port} is in use")
    assert (
        lines[3]
        == f"warn CA: {tmp_path}/mitmproxy-ca-cert.pem does not exist yet: mitmproxy creates it on its first run"
    )
    (tmp_path / "mitmproxy-ca-cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    r = usagefix("doctor", "-p", port, "--confdir", str(tmp_path))  # the port is free again
    assert r.returncode == 0, r.stdout
    assert (
        f"ok   port: 127.0.0.1:{port} is free" in r.stdout
        and f"ok   CA: {tmp_path}/mitmproxy-ca-cert.pem" in r.stdout
    )


def _truncated(tmp: Path) -> Path:
    """The demo capture cut inside its second flow (a capture whose writer died)."""
    data = DEMO.read_bytes()
    head = data[: data.index(b":")]
    first = len(head) + 1 + int(head) + 1  # tnetstring: length, colon, payload, type byte
    path = tmp / "truncated.mitm"
    path.write_bytes(data[: first + 200])
    return path


def test_diff_reads_directories_and_files_names_each_bad_file_and_sums_up(tmp_path: Path) -> None:
    (tmp_path / "captures").mkdir()
    shutil.copy(DEMO, tmp_path / "captures" / "day1.mitm")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    _truncated(tmp_path)
    r = usagefix("diff", "captures", "README.md", "truncated.mitm", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "usagefix: README.md: not a mitmproxy flow file",
        "usagefix: truncated.mitm: unreadable after flow 1",
    ]
    out = r.stdout
    assert "\x1b[" not in out  # not a terminal: no colour codes
    # From the directory: 3 of its 4 flows shown (one unchanged, hidden and counted); 1 from the
    # truncated file before the cut.
    assert out.count("== POST") == 4
    assert "1 unchanged flow not shown; --all" in out
    facts = re.findall(r"^model (\S+) · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · HTTP 200 · \d+ ms$", out, re.M)
    assert facts == ["claude-sonnet-4-5"] * 4
    assert "impact (tokens a standard consumer computes, upstream → client)" in out
    table = out[out.index("summary") :]
    assert re.search(
        r"│ claude-sonnet-4-5 │ 127\.0\.0\.1:\d+ +│ +4 │ +4 │ +0 │ +18,802 │ +335,392 │", table
    ), table
    assert re.search(r"│ gpt-3\.5-turbo +│ 127\.0\.0\.1:\d+ +│ +1 │ +0 │ +0 │ +82 │ +82 │", table), table
    assert re.search(r"│ total +│ +│ +5 │ +4 │ +0 │ +18,884 │ +335,474 │", table), table


def test_diff_filters_by_rule_model_status_and_time() -> None:
    def shown(*args: str) -> list[str]:
        r = usagefix("diff", *args, str(DEMO))
        assert r.returncode == 0, r.stderr
        return re.findall(r"^== POST \S+", r.stdout, re.M)

    assert [u.rsplit("/", 1)[1] for u in shown("--rule", "R4")] == ["messages"]
    assert len(shown("--rule", "r1")) == 2
    assert len(shown("--model", "gpt-*")) == 0 and len(shown("--model", "gpt-*", "--all")) == 1
    assert len(shown("--status", "unchanged")) == 1
    assert len(shown("--host", "127.0.0.1")) == 3 and len(shown("--host", "api.openai.com")) == 0
    assert len(shown("--since", "2000-01-01")) == 3 and len(shown("--since", "2100-01-01")) == 0
    r = usagefix("diff", "--status", "unmeasured", str(DEMO))
    assert r.returncode == 0 and r.stdout == "" and r.stderr.startswith("no matching records in ")
    bad = usagefix("diff", "--since", "yesterday", str(DEMO))
    assert bad.returncode == 2 and bad.stderr.startswith("usagefix: --since: 'yesterday' is not a time")


def test_diff_json_carries_the_flow_facts_and_the_record_in_schema_order() -> None:
    r = usagefix("diff", "--json", "--all", str(DEMO))
    assert r.returncode == 0
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 4
    first = rows[0]
    assert list(first)[:10] == [
        "file",
        "flow_id",
        "method",
        "url",
        "host",
        "model",
        "time",
        "http_status",
        "latency_ms",
        "comment",
    ]
    assert first["model"] == "claude-sonnet-4-5" and first["http_status"] == 200 and first["latency_ms"] >= 0
    assert first["comment"] == "prompt 1678→107208 · R1"
    assert list(first["record"]) == [k for k in UsageRecord.model_fields if k in first["record"]]
    # The verbatim blocks come back in the upstream's order, not the file's reversed one.
    assert list(first["record"]["emitted_usage"]) == [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
    ]
    assert list(first["record"]["usage_after"])[:2] == ["input_total", "cache_read"]
