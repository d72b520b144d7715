"""End to end in transparent mode: a client in a network namespace of its own, its ports 80 and 443
redirected by the gateway (`PREROUTING` `REDIRECT`) to a real `mitmdump --mode transparent` with the
addon, as the README's gateway recipe says. The client asks for `api.example-llm.com` by name; the
proxy sees only the destination IP, so the profile written for the name applies only because
profiles match the name the client asked for (Host header, SNI), not the address.

Needs root, iproute2 (`ip netns`, veth) and iptables; skipped, saying which, where they are missing
(`.ci/run` installs iptables).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2upstream import private_ca
from upstream import Scenario, Upstream, awkward_cuts

from conftest import MITMDUMP, ROOT, Proxy, stop

pytestmark = pytest.mark.e2e

NAME = "api.example-llm.com"
TAG = f"ufx{os.getpid() % 100000}"
NS, VETH_HOST, VETH_NS = TAG, f"{TAG}h", f"{TAG}c"
# A /30 of the namespace's own, one per test process (two runs at once must not share it): the
# gateway (this host, where mitmdump and the upstream listen) and the client. Nothing else is
# ever addressed.
_NET = ipaddress.ip_address("10.253.0.0") + 4 * (os.getpid() % 16000)
GATEWAY, CLIENT = str(_NET + 1), str(_NET + 2)
GOLDEN = ROOT / "flows" / "golden"
PROFILES = f'[[profile]]\nname = "example-llm"\nhost = "{NAME}"\nprompt_cache_reads = "excluded"\n'
AMBIGUOUS = (
    b'{"model":"claude-sonnet-4-5","choices":[],"usage":{"prompt_tokens":1678,"completion_tokens":370,'
    b'"total_tokens":2048,"prompt_tokens_details":{"cached_tokens":1500}}}'
)

CLIENT_SCRIPT = r"""
import json, sys, httpx, openai
base, ca, stream = sys.argv[1], sys.argv[2], sys.argv[3] == "stream"
c = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0, timeout=20,
                  http_client=httpx.Client(verify=ca, trust_env=False))
msgs = [{"role": "user", "content": "hi"}]
if stream:
    usage = None
    for chunk in c.chat.completions.create(model="claude-sonnet-4-5", messages=msgs, stream=True,
                                           stream_options={"include_usage": True}):
        usage = chunk.usage or usage
else:
    usage = c.chat.completions.create(model="claude-sonnet-4-5", messages=msgs).usage
print(json.dumps(usage.model_dump()))
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make a network namespace and iptables rules"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs it)"
    probe = f"{TAG}p"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
    if nat.returncode != 0:
        return f"iptables cannot use the nat table: {nat.stderr.strip()}"
    return None


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@contextlib.contextmanager
def veth_namespace(ns: str, outside: tuple[str, str], inside: tuple[str, str]) -> Iterator[Path]:
    """Network namespace `ns` joined to this one by a veth pair: (device, address) outside and
    inside, on a /30, its default route through the outside end, whose address `NAME` resolves
    to in it (/etc/netns/NS/hosts, which is yielded). Gone again afterwards."""
    (out_dev, out_ip), (in_dev, in_ip) = outside, inside
    etc = Path("/etc/netns") / ns
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", out_dev, "type", "veth", "peer", "name", in_dev)
        sh("ip", "link", "set", in_dev, "netns", ns)
        sh("ip", "addr", "add", f"{out_ip}/30", "dev", out_dev)
        sh("ip", "link", "set", out_dev, "up")
        sh("ip", "-n", ns, "addr", "add", f"{in_ip}/30", "dev", in_dev)
        sh("ip", "-n", ns, "link", "set", in_dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", out_ip)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{out_ip} {NAME}\n")
        yield etc
    finally:
        subprocess.run(["ip", "link", "del", out_dev], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


@pytest.fixture(scope="module")
def netns() -> Iterator[Path]:
    """The client's namespace, with `NAME` resolving to the gateway (via /etc/netns/NS/hosts)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with veth_namespace(NS, (VETH_HOST, GATEWAY), (VETH_NS, CLIENT)) as etc:
        yield etc


@pytest.fixture(scope="module")
def upstream_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    return private_ca(tmp_path_factory.mktemp("upstream-ca"), NAME)


@pytest.fixture(scope="module")
def servers(netns: Path, upstream_ca: tuple[Path, ssl.SSLContext]) -> Iterator[dict[str, Upstream]]:
    """The LLM upstream on the gateway's address, on the ports the client dials (80 and 443)."""
    plain, tls = Upstream(GATEWAY, 80), Upstream(GATEWAY, 443, tls=upstream_ca[1])
    yield {"http": plain, "https": tls}
    plain.close()
    tls.close()


@pytest.fixture(scope="module")
def transparent(
    servers: dict[str, Upstream],
    upstream_ca: tuple[Path, ssl.SSLContext],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    """The gateway recipe: mitmdump --mode transparent, and 80/443 from the client redirected to it."""
    tmp = tmp_path_factory.mktemp("mitm-transparent")
    (tmp / "profiles.toml").write_text(PROFILES)
    flows, log = tmp / "flows.mitm", tmp / "mitmdump.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(MITMDUMP),
                "--mode",
                "transparent",
                "--listen-host",
                GATEWAY,
                "-p",
                "0",
                "--set",
                f"confdir={tmp / 'conf'}",
                "--set",
                f"ssl_verify_upstream_trusted_ca={upstream_ca[0]}",
                "--set",
                f"usage_profiles={tmp / 'profiles.toml'}",
                "-s",
                str(ROOT / "addon" / "normalize_usage.py"),
                "-w",
                str(flows),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline and proc.poll() is None:
        m = re.search(rf"listening at {re.escape(GATEWAY)}:(\d+)", log.read_text(errors="replace"))
        port = m.group(1) if m else None
        time.sleep(0.05)
    assert port is not None, log.read_text(errors="replace")
    rule = ["PREROUTING", "-i", VETH_HOST, "-p", "tcp", "-m", "multiport", "--dports", "80,443"]
    rule += ["-j", "REDIRECT", "--to-ports", port]
    sh("iptables", "-t", "nat", "-A", *rule)
    try:
        yield Proxy(f"transparent:{port}", flows, log)
    finally:
        subprocess.run(["iptables", "-t", "nat", "-D", *rule], capture_output=True)
        stop(proc)


def client(scheme: str, stream: bool, proxy: Proxy) -> dict[str, object]:
    ca = proxy.flows_file.parent / "conf" / "mitmproxy-ca-cert.pem"
    run = subprocess.run(
        ["ip", "netns", "exec", NS, sys.executable, "-c", CLIENT_SCRIPT]
        + [f"{scheme}://{NAME}/v1", str(ca), "stream" if stream else "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )
    assert run.returncode == 0, run.stderr + proxy.log()
    usage: dict[str, object] = json.loads(run.stdout)
    return usage


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_founding_bug_is_fixed_through_transparent_mode_with_the_profile_for_the_name(
    transparent: Proxy, servers: dict[str, Upstream], scheme: str, stream: bool
) -> None:
    n = len(transparent.wait_for_flows(0, timeout=0))
    if stream:
        body = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
        servers[scheme].scenario = Scenario(
            body=body, content_type="text/event-stream", chunks=awkward_cuts(body)
        )
    else:
        servers[scheme].scenario = Scenario(
            body=(GOLDEN / "openai_chat" / "fix-founding-bug.upstream.json").read_bytes()
        )
    usage = client(scheme, stream, transparent)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        107208,
        370,
        107578,
    )
    (*_, f) = transparent.wait_for_flows(n + 1)
    # mitmproxy saw the address, the client asked for the name; the profile for the name applied.
    assert f.request.host == GATEWAY and f.request.pretty_host == NAME
    assert f.metadata["usagefix"]["status"] == "rewritten"
    assert f.metadata["usagefix"]["profile"] == "example-llm"
    assert servers[scheme].requests[-1]["headers"]["Host"] == NAME


def test_a_repair_only_the_named_profile_allows_happens_in_transparent_mode(
    transparent: Proxy, servers: dict[str, Upstream]
) -> None:
    # Cache reads that fit inside the prompt count: ambiguous without a profile (left as it is),
    # repaired (R1) by the profile that says this upstream leaves them out.
    n = len(transparent.wait_for_flows(0, timeout=0))
    servers["https"].scenario = Scenario(body=AMBIGUOUS)
    usage = client("https", False, transparent)
    assert (usage["prompt_tokens"], usage["total_tokens"]) == (1678 + 1500, 2048 + 1500)
    (*_, f) = transparent.wait_for_flows(n + 1)
    assert f.metadata["usagefix"]["profile"] == "example-llm"
    assert f.client_conn.sni == NAME
