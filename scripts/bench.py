"""Benchmark: what the addon costs over plain mitmdump streaming, measured in the same run.

Three mitmdump processes in reverse mode in front of one local upstream: one with a bare script
that sets `flow.response.stream = True`, one with the addon, and one with the addon writing the
SQLite ledger (`usage_ledger`). Requests alternate between them. For each stream we take the
mitmdump process's CPU time (user + system, from /proc: the ledger's writer thread included) and
the client's wall time, and report medians and the ratios addon / bare and ledger / addon.

The upstream sends an OpenAI Chat stream of N events (about 250 bytes each; the last carries the
founding bug's usage, so the addon really rewrites it), in three shapes, each measured on its own:
`halves` writes each event as two chunks, as token-by-token servers do; `irregular` cuts the
whole body into pieces of 1 byte to 4 KiB (seeded), as TCP and gateways deliver it; `short` is a
reply of a typical length (about 200 events, 55 KB), an event per chunk, where what the addon does once
per exchange weighs most.

Each round sends one stream through each proxy, in an order that rotates from round to round.
Besides the ratio of the medians, the ratio addon / bare is taken within each round (the two
streams ran moments apart, so a slow spell of the machine weighs on both) and its median is given
with a 95 % bootstrap confidence interval: a target of 1.00 is met only if the interval is under it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
MITMDUMP = Path(sys.executable).with_name("mitmdump")
TICKS = os.sysconf("SC_CLK_TCK")

BARE_SCRIPT = """
def responseheaders(flow):
    flow.response.stream = True
"""


def make_events(n: int) -> list[bytes]:
    events = []
    for i in range(n - 1):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1763900000,
            "model": "claude-sonnet-4-5",
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": f"token {i} of the benchmark stream, é"},
                    "finish_reason": None,
                }
            ],
            "usage": None,
        }
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    usage = {
        "prompt_tokens": 1678,
        "completion_tokens": 370,
        "total_tokens": 2048,
        "prompt_tokens_details": {"cached_tokens": 105530},
    }
    events.append(
        b"data: " + json.dumps({"id": "chatcmpl-bench", "choices": [], "usage": usage}).encode() + b"\n\n"
    )
    events.append(b"data: [DONE]\n\n")
    return events


def irregular(body: bytes, seed: int = 7) -> list[bytes]:
    """`body` cut into pieces of 1 byte to 4 KiB, mostly small, the same every run."""
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(body):
        n = min(len(body) - i, int(rng.choice((1, 7, 64, 300, 1500, 4096)) * rng.random()) + 1)
        pieces.append(body[i : i + n])
        i += n
    return pieces


class Upstream(ThreadingHTTPServer):
    daemon_threads = True
    chunks: list[bytes] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        w = self.wfile
        for part in self.server.chunks:
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            w.flush()
        w.write(b"0\r\n\r\n")
        w.flush()


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far: its threads' run time in nanoseconds from schedstat, which
    the kernel keeps exactly (utime + stime from /proc/PID/stat, where schedstat is missing,
    counts in ticks of 10 ms: coarser than one stream)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def start(args: list[str], tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MITMDUMP), "--set", f"confdir={tmp / 'conf'}", "--set", "flow_detail=0",
             "--listen-host", "127.0.0.1", "-p", "0", *args],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listening at 127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"{name}: mitmdump did not start:\n{log.read_text(errors='replace')}")


def one_stream(client: httpx.Client, port: int, pid: int) -> tuple[float, float, bytes]:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    body = bytearray()
    with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json={"stream": True}) as r:
        for piece in r.iter_raw():
            body += piece
    wall = time.perf_counter() - t0
    time.sleep(0.05)  # let mitmdump finish the flow's hooks before reading its CPU
    return cpu_seconds(pid) - cpu0, wall, bytes(body)


def median_ci(values: list[float], resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """The median and a 95 % percentile-bootstrap confidence interval for it (seeded: the same
    measurements give the same interval)."""
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return statistics.median(values), medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def ledger_hot_path(body: bytes, tmp: Path, n: int = 300) -> float:
    """Median seconds `LiveLedger.record` takes on the proxy's thread for one finished exchange
    with this body (all it does there: take references, queue them; the row is made elsewhere)."""
    from mitmproxy.test import tflow

    from usagefix.liveledger import LiveLedger

    ledger = LiveLedger()
    ledger.configure(str(tmp / "hot.sqlite"))
    times = []
    for _ in range(n):
        flow = tflow.tflow(resp=True)
        flow.request.path = "/v1/chat/completions"
        assert flow.response is not None
        flow.response.content = body
        t0 = time.perf_counter()
        ledger.record(flow, "openai_chat")
        times.append(time.perf_counter() - t0)
    ledger.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=40, help="streams through each proxy, per shape")
    ap.add_argument("--short-events", type=int, default=200, help="events of a `short` stream")
    ap.add_argument("--shape", choices=("halves", "irregular", "short", "all"), default="all")
    a = ap.parse_args()

    up = Upstream(("127.0.0.1", 0), Handler)
    events = make_events(a.events)
    short = make_events(a.short_events)
    shapes = {
        "halves": [part for ev in events for part in (ev[: len(ev) // 2], ev[len(ev) // 2 :])],
        "irregular": irregular(b"".join(events)),
        "short": short,
    }
    if a.shape != "all":
        shapes = {a.shape: shapes[a.shape]}
    threading.Thread(target=up.serve_forever, daemon=True).start()
    target = f"reverse:http://127.0.0.1:{up.server_address[1]}"

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "bare.py").write_text(BARE_SCRIPT)
        procs = {
            "bare": start(["--mode", target, "-s", str(tmp / "bare.py")], tmp, "bare"),
            "addon": start(
                ["--mode", target, "-s", str(ROOT / "addon" / "normalize_usage.py")], tmp, "addon"
            ),
            "ledger": start(
                [
                    "--mode",
                    target,
                    "-s",
                    str(ROOT / "addon" / "normalize_usage.py"),
                    "--set",
                    f"usage_ledger={tmp / 'ledger.sqlite'}",
                ],
                tmp,
                "ledger",
            ),  # fmt: skip
        }
        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        try:
            with httpx.Client(timeout=60) as client:
                for shape, chunks in shapes.items():
                    up.chunks = chunks
                    size = sum(map(len, chunks))
                    results[shape] = {name: [] for name in procs}
                    for name, (proc, port) in procs.items():  # warm-up, and a check that both work
                        _, _, body = one_stream(client, port, proc.pid)
                        fixed = b'"prompt_tokens": 107208' in body
                        assert len(body) >= size and fixed == (name != "bare"), (
                            f"{name} returned an unexpected body"
                        )
                    names = list(procs)
                    for r in range(a.rounds):
                        for name in names[r % len(names) :] + names[: r % len(names)]:  # each first in turn
                            proc, port = procs[name]
                            cpu, wall, _ = one_stream(client, port, proc.pid)
                            results[shape][name].append((cpu, wall))
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(timeout=10)
        up.shutdown()
        hot = ledger_hot_path(b"".join(events), tmp)

    print(f"{a.rounds} streams through each proxy and shape, the order rotating")
    for shape, res in results.items():

        def med(name: str, i: int, res: dict[str, list[tuple[float, float]]] = res) -> float:
            return statistics.median(r[i] for r in res[name])

        n_events = len(short) if shape == "short" else len(events)
        mb = sum(map(len, shapes[shape])) / 1e6
        print(f"\n{shape}: {n_events} events, {mb:.2f} MB, {len(shapes[shape])} upstream chunks")
        print(f"{'':8}{'mitmdump CPU/stream':>22}{'client wall/stream':>22}")
        for name in results[shape]:
            print(f"{name:8}{med(name, 0) * 1000:>19.1f} ms{med(name, 1) * 1000:>19.1f} ms")
        for a_, b_ in (("addon", "bare"), ("ledger", "addon")):
            cpu, wall = med(a_, 0) / med(b_, 0), med(a_, 1) / med(b_, 1)
            per_round = [x[0] / y[0] for x, y in zip(res[a_], res[b_], strict=True)]
            m, lo, hi = median_ci(per_round)
            within = f"CPU within rounds {m:.2f} [{lo:.2f}, {hi:.2f}]"
            print(f"{a_ + '/' + b_:14}{cpu:>16.2f}{wall:>22.2f}    {within}")
    print("\n(ratios of medians, then the median of the ratio within each round with its 95 % bootstrap")
    print(" interval; CPU is the process's threads' run time, the ledger's writer thread included)")
    print(f"the ledger on the proxy's thread: {hot * 1e6:.0f} µs per exchange (LiveLedger.record, median)")


if __name__ == "__main__":
    main()
