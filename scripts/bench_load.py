"""Load benchmark (`scripts/bench load`): many concurrent streams through one mitmdump, with the
addon and bare, in alternating rounds.

An upstream in a process of its own sends each of S concurrent streams N events of about 250 bytes,
one every `--interval` seconds (an absolute schedule), each stamped with its stream, its sequence
number and the monotonic clock at sending (system-wide on Linux, so comparable across processes);
the last event carries the founding bug's usage. The client (asyncio, httpx) checks every stream:
every event there, once, in order, and the usage repaired through the addon (left as it was
through bare). After each round it checks every flow recorded (`-w`), and reads each mitmdump's
RSS (VmRSS, after a settle) and CPU time. Per-event latency is arrival minus sending; the addon's
added latency is its percentile minus bare's, over all events of all rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BARE_SCRIPT, ROOT, cpu_seconds, start

USAGE = {
    "prompt_tokens": 1678,
    "completion_tokens": 370,
    "total_tokens": 2048,
    "prompt_tokens_details": {"cached_tokens": 105530},
}
PAD = "x" * 120
WARM_UP_EVENTS = 100


def serve(interval: float) -> None:
    """The upstream (run as `bench_load.py --serve`): prints its port, serves until killed. Each
    request says its stream's number and how many events it wants."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            asked = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            sid, events = asked["stream"], asked["events"]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            w, t0 = self.wfile, time.monotonic()
            for seq in range(events + 2):
                delay = t0 + seq * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if seq < events:
                    obj: dict[str, Any] = {
                        "id": f"chatcmpl-{sid}",
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"content": PAD}, "finish_reason": None}],
                        "usage": None,
                        "x_bench": [sid, seq, time.monotonic_ns()],
                    }
                    ev = b"data: " + json.dumps(obj).encode() + b"\n\n"
                elif seq == events:
                    ev = (
                        b"data: "
                        + json.dumps({"id": f"chatcmpl-{sid}", "choices": [], "usage": USAGE}).encode()
                    )
                    ev += b"\n\n"
                else:
                    ev = b"data: [DONE]\n\n"
                w.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                w.flush()
            w.write(b"0\r\n\r\n")
            w.flush()

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # the listen backlog: every stream connects at once

    srv = Server(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


async def one(client: httpx.AsyncClient, port: int, sid: int, events: int, lat: list[int]) -> str | None:
    """Run one stream; return what is wrong with it, or None."""
    buf, seqs, usage = b"", [], None
    async with client.stream(
        "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json={"stream": sid, "events": events}
    ) as r:
        async for piece in r.aiter_raw():
            now = time.monotonic_ns()
            buf += piece
            *done, buf = buf.split(b"\n\n")
            for ev in done:
                if ev == b"data: [DONE]":
                    seqs.append(-1)
                    continue
                i = ev.rfind(b'"x_bench": [')
                if i >= 0:  # cheaper than json.loads: the client must keep up with the stream
                    s, seq, sent = map(int, ev[i + 12 : ev.index(b"]", i)].split(b","))
                    if s != sid:
                        return f"stream {sid} got an event of stream {s}"
                    seqs.append(seq)
                    lat.append(now - sent)
                else:
                    usage = json.loads(ev[6:])["usage"]
    if seqs != [*range(events), -1] or buf:
        return f"stream {sid}: {len(seqs)} events, out of order, missing or doubled"
    return None if usage else f"stream {sid}: no usage"


async def round_(port: int, streams: int, events: int, lat: list[int]) -> list[str]:
    limits = httpx.Limits(max_connections=streams * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        got = await asyncio.gather(*(one(client, port, sid, events, lat) for sid in range(streams)))
    return [g for g in got if g]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between a stream's events")
    ap.add_argument("--rounds", type=int, default=3, help="rounds through each proxy, alternating")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        return serve(a.interval)

    up = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--interval", str(a.interval)],
        stdout=subprocess.PIPE,
    )
    assert up.stdout is not None
    target = f"reverse:http://127.0.0.1:{int(up.stdout.readline())}"
    lat: dict[str, list[int]] = {"bare": [], "addon": []}
    rss: dict[str, list[float]] = {"bare": [], "addon": []}
    cpu: dict[str, list[float]] = {"bare": [], "addon": []}
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "bare.py").write_text(BARE_SCRIPT)
        scripts = {"bare": str(tmp / "bare.py"), "addon": str(ROOT / "addon" / "normalize_usage.py")}
        procs = {
            name: start(["--mode", target, "-s", s, "-w", str(tmp / f"{name}.mitm")], tmp, name)
            for name, s in scripts.items()
        }
        try:
            for name, (proc, port) in procs.items():  # warm-up: connections, imports, caches
                warm = min(a.events, WARM_UP_EVENTS)
                problems += [f"{name} warm-up: {b}" for b in asyncio.run(round_(port, a.streams, warm, []))]
                time.sleep(1.0)
                rss[name].append(rss_mib(proc.pid))
            for r in range(a.rounds):
                for name, (proc, port) in procs.items():
                    c0, seen = cpu_seconds(proc.pid), len(lat[name])
                    bad = asyncio.run(round_(port, a.streams, a.events, lat[name]))
                    q = statistics.quantiles(lat[name][seen:], n=100)
                    problems += [f"{name} round {r + 1}: {b}" for b in bad]
                    time.sleep(1.0)  # let the flows finish and be written
                    cpu[name].append(cpu_seconds(proc.pid) - c0)
                    rss[name].append(rss_mib(proc.pid))
                    print(
                        f"round {r + 1} {name}: RSS {rss[name][-1]:.0f} MiB, CPU {cpu[name][-1]:.2f} s, "
                        f"latency p50 {q[49] / 1e6:.2f} ms, p99 {q[98] / 1e6:.2f} ms",
                        flush=True,
                    )
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
            up.kill()
        problems += check_flows(tmp / "addon.mitm", a.streams * (a.rounds + 1))

    total = a.streams * a.events
    every = f"one every {a.interval * 1000:g} ms"
    warm = f"after a warm-up of {min(a.events, WARM_UP_EVENTS)} events a stream"
    print(f"\n{a.streams} concurrent streams x {a.events} events, {every}, {a.rounds} rounds {warm}")
    print(f"{'':8}{'RSS MiB after warm-up, each round':>44}{'CPU s/round':>14}{'p50 ms':>9}{'p99 ms':>9}")
    for name in ("bare", "addon"):
        q = statistics.quantiles(lat[name], n=100)
        print(
            f"{name:8}{' '.join(f'{m:.0f}' for m in rss[name]):>44}{statistics.median(cpu[name]):>14.2f}"
            f"{q[49] / 1e6:>9.2f}{q[98] / 1e6:>9.2f}"
        )
    qa, qb = statistics.quantiles(lat["addon"], n=100), statistics.quantiles(lat["bare"], n=100)
    added = f"p50 {(qa[49] - qb[49]) / 1e6:+.2f} ms, p99 {(qa[98] - qb[98]) / 1e6:+.2f} ms"
    print(f"added by the addon: {added} per event")
    print(f"CPU ratio addon / bare: {statistics.median(cpu['addon']) / statistics.median(cpu['bare']):.2f}")
    print(f"events checked: {len(lat['addon'])} through the addon, {len(lat['bare'])} bare ({total} a round)")
    print(
        "problems: "
        + (
            "; ".join(problems[:10])
            if problems
            else "none (nothing lost, doubled or reordered; every flow recorded)"
        )
    )
    if problems:
        raise SystemExit(1)


def check_flows(path: Path, want: int) -> list[str]:
    from mitmproxy import io as mio

    with path.open("rb") as f:
        flows = list(mio.FlowReader(f).stream())
    statuses = [fl.metadata.get("usagefix", {}).get("status") for fl in flows]
    if len(flows) != want or any(s != "rewritten" for s in statuses):
        return [f"addon flows: {len(flows)} saved of {want}, statuses {sorted(set(map(str, statuses)))}"]
    return []


if __name__ == "__main__":
    main()
