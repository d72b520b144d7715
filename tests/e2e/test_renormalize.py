"""End to end: `usagefix renormalize` does what `mitmdump -nr IN -w OUT` does, never over IN."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from test_replay import ADDON, OPTION_SETS, PROFILES, _traffic, exchange, mitmdump, read, read_once
from upstream import Upstream

from conftest import MITMDUMP, start_mitmdump, stop

pytestmark = pytest.mark.e2e

USAGEFIX = MITMDUMP.with_name("usagefix")


def usagefix(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(USAGEFIX), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def record(upstream: Upstream, tmp_path: Path, options: list[str], with_addon: bool = True) -> Path:
    capture = tmp_path / "capture.mitm"
    addon = ["-s", ADDON, *options] if with_addon else []
    proc, port = start_mitmdump(["--mode", f"reverse:{upstream.url}", *addon, "-w", str(capture)], tmp_path)
    try:
        if with_addon:
            _traffic(f"http://127.0.0.1:{port}", upstream)  # every kind of record an option changes
        else:  # plain mitmdump buffers a stream, so a cut one would be a 502: the founding bug twice
            exchange(f"http://127.0.0.1:{port}", upstream, 1678)
            time.sleep(0.3)
    finally:
        stop(proc)
    return capture


@pytest.mark.parametrize("option_set", [*OPTION_SETS, "plain capture"])
def test_renormalize_writes_what_mitmdump_nr_writes(
    option_set: str, upstream: Upstream, tmp_path: Path
) -> None:
    (tmp_path / "profiles.toml").write_text(PROFILES)
    options = [
        o.replace("PROFILES", str(tmp_path / "profiles.toml")) for o in OPTION_SETS.get(option_set, [])
    ]
    capture = record(upstream, tmp_path, options, with_addon=option_set != "plain capture")
    before = capture.read_bytes()
    by_mitmdump = tmp_path / "by-mitmdump.mitm"
    mitmdump("-nr", str(capture), "-s", ADDON, *options, "-w", str(by_mitmdump))
    r = usagefix("renormalize", "capture.mitm", *options, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "capture.renormalized.mitm"
    n = 2 if option_set == "plain capture" else 7
    assert r.stdout.startswith(f"usagefix: {n} flow(s) from capture.mitm written to {out.name} (")
    assert capture.read_bytes() == before  # the input is never written
    ours, theirs = read(out), read_once(by_mitmdump)
    assert len(ours) == n  # each flow once (-nr -w writes a cut-off flow twice)
    assert [f.get_state() for f in ours] == [f.get_state() for f in theirs]
    statuses = [f.metadata["usagefix"]["status"] for f in ours]
    assert statuses.count("rewritten") >= 2 and statuses[0] == "rewritten"
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == []


def test_renormalize_refuses_to_write_over_its_input_unless_in_place(
    upstream: Upstream, tmp_path: Path
) -> None:
    capture = record(upstream, tmp_path, [], with_addon=False)
    before = capture.read_bytes()
    r = usagefix("renormalize", "capture.mitm", "-o", "./capture.mitm", cwd=tmp_path)
    assert r.returncode == 2 and capture.read_bytes() == before
    assert r.stderr == (
        "usagefix: capture.mitm: this is the input file; write elsewhere (-o OUT), "
        "or pass --in-place to replace it atomically\n"
    )
    # A bad option, or an unreadable file: one line, nothing written.
    r = usagefix(
        "renormalize", "capture.mitm", "--in-place", "--set", "usage_redact_secrets=yes", cwd=tmp_path
    )
    assert (r.returncode, r.stderr) == (
        2,
        "usagefix: usage_redact_secrets: 'yes' is not a boolean (true or false)\n",
    )
    (tmp_path / "notes.mitm").write_text("not a capture")
    r = usagefix("renormalize", "notes.mitm", "-o", "x.mitm", cwd=tmp_path)
    assert (
        r.returncode == 2 and r.stderr.startswith("usagefix: notes.mitm: ") and "nothing written" in r.stderr
    )
    assert not (tmp_path / "x.mitm").exists()
    assert capture.read_bytes() == before
    # --in-place: the same result as writing elsewhere, moved over the input in one step.
    assert usagefix("renormalize", "capture.mitm", "-o", "elsewhere.mitm", cwd=tmp_path).returncode == 0
    r = usagefix("renormalize", "capture.mitm", "--in-place", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert capture.read_bytes() == (tmp_path / "elsewhere.mitm").read_bytes() != before
    assert [f.metadata["usagefix"]["status"] for f in read(capture)][0] == "rewritten"
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == []
