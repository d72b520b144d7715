"""Fixtures for end-to-end tests: a real mitmdump in reverse mode in front of the emulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy import io as mio
from upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")


@dataclass
class Proxy:
    url: str
    flows_file: Path
    log_file: Path

    def flows(self) -> list[http.HTTPFlow]:
        """The flows saved so far. mitmdump may be writing the next one as this reads: a flow
        cut short at the end of the file is not there yet (wait_for_flows reads again)."""
        flows: list[http.HTTPFlow] = []
        with self.flows_file.open("rb") as f:
            try:
                flows.extend(fl for fl in mio.FlowReader(f).stream() if isinstance(fl, http.HTTPFlow))
            except exceptions.FlowReadException:
                pass
        return flows

    def wait_for_flows(self, count: int, timeout: float = 5.0) -> list[http.HTTPFlow]:
        """The saved flows, once there are `count` of them (Save writes each as it ends)."""
        deadline = time.monotonic() + timeout
        while True:
            flows = self.flows() if self.flows_file.exists() else []
            if len(flows) >= count or time.monotonic() > deadline:
                return flows
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def start_mitmdump(
    args: list[str], tmp: Path, log_name: str = "mitmdump.log"
) -> tuple[subprocess.Popen[bytes], str]:
    """Start mitmdump on 127.0.0.1 with a free port; return the process and its port."""
    log_file = tmp / log_name
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_file.open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                str(MITMDUMP),
                "--set",
                f"confdir={tmp / 'conf'}",
                "--listen-host",
                "127.0.0.1",
                "-p",
                "0",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listening at 127\.0\.0\.1:(\d+)", log_file.read_text(errors="replace"))
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"mitmdump did not start:\n{log_file.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


@pytest.fixture(scope="module")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("mitm")
    flows = tmp / "flows.mitm"
    proc, port = start_mitmdump(
        [
            "--mode",
            f"reverse:{upstream.url}",
            "-s",
            str(ROOT / "addon" / "normalize_usage.py"),
            "-w",
            str(flows),
        ],
        tmp,
    )
    yield Proxy(f"http://127.0.0.1:{port}", flows, tmp / "mitmdump.log")
    stop(proc)
