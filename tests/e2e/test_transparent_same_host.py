"""End to end in transparent mode on the same host, the README's `OUTPUT` + `-m owner` recipe: in one
network namespace ("the host"), a real `mitmdump --mode transparent --listen-host 127.0.0.1` with
the addon runs as a uid of its own, the client (the openai SDK) as another (`nobody`), and

    iptables -t nat -A OUTPUT -p tcp -m owner ! --uid-owner MITMPROXY_UID \\
        -m multiport --dports 80,443 -j REDIRECT --to-ports PORT

sends the client's connections to ports 80 and 443 to mitmproxy, while mitmproxy's own go out to
the upstream (on the far end of a veth: "the internet"). The client asks for `api.example-llm.com`
by name; the profile written for that name applies.

mitmproxy's uid has no account (setpriv needs none, and the owner match takes a number); its home,
and so its confdir `~/.mitmproxy`, is a directory it owns, as `useradd --create-home` makes one.
Where the interpreter lives somewhere only root can reach (a pyenv under /root, as on this project's
machines), both uids get the one capability CAP_DAC_READ_SEARCH, to read it and nothing more; then
the CA's own permission bits are checked instead of being proven by the client reading it.

Needs root, iproute2, iptables with the owner match, and setpriv (util-linux); skipped, saying
which, where they are missing (`.ci/run` installs them).
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import re
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2upstream import private_ca
from test_transparent import AMBIGUOUS, CLIENT_SCRIPT, GOLDEN, NAME, PROFILES, _missing, sh, veth_namespace
from upstream import Scenario, Upstream, awkward_cuts

from conftest import MITMDUMP, ROOT, Proxy, stop

pytestmark = pytest.mark.e2e

TAG = f"ufs{os.getpid() % 100000}"
NS, VETH_OUT, VETH_HOST = TAG, f"{TAG}o", f"{TAG}h"
# A /30 per test process, apart from the gateway test's: the far end (where the upstream listens)
# and this "host" (the namespace where the client and mitmproxy run). Nothing else is addressed.
_NET = ipaddress.ip_address("10.252.0.0") + 4 * (os.getpid() % 16000)
FAR, HOST = str(_NET + 1), str(_NET + 2)
CLIENT_UID = 65534  # nobody


def mitmproxy_uid() -> int:
    """A uid no account has: mitmproxy's own."""
    for uid in range(64100, 65000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise RuntimeError("no free uid in 64100-64999")


MITM_UID = mitmproxy_uid()


def _missing_here() -> str | None:
    reason = _missing()
    if reason:
        return reason
    if shutil.which("setpriv") is None:
        return "setpriv is not installed (util-linux; .ci/run installs it)"
    probe = f"{TAG}p"
    sh("ip", "netns", "add", probe)
    try:
        rule = ["OUTPUT", "-p", "tcp", "-m", "owner", "!", "--uid-owner", str(MITM_UID), "-j", "RETURN"]
        made = subprocess.run(
            ["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-A", *rule],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            return f"iptables cannot use the owner match: {made.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def as_uid(uid: int, caps: bool) -> list[str]:
    """The command prefix that runs a program as `uid` (its group the same number, no others)."""
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    if caps:
        prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return [*prefix, "--"]


def child_env(home: Path) -> dict[str, str]:
    """The environment of a child of another uid: no proxy settings, no coverage of the test run's
    (it would write into the checkout), its own home."""
    drop = ("proxy", "coverage", "cov_core")
    env = {k: v for k, v in os.environ.items() if not any(d in k.lower() for d in drop)}
    return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """A directory every uid can traverse (pytest's own temporary directories are root's alone)."""
    reason = _missing_here()
    if reason:
        pytest.skip(reason)
    path = Path(tempfile.mkdtemp(prefix="usagefix-same-host-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def needs_caps(work: Path) -> bool:
    """Whether another uid needs CAP_DAC_READ_SEARCH to run this interpreter at all."""
    probe = subprocess.run(
        [*as_uid(CLIENT_UID, False), sys.executable, "-c", "import mitmproxy, openai, usagefix"],
        capture_output=True,
        env=child_env(work),
    )
    return probe.returncode != 0


@pytest.fixture(scope="module")
def host(work: Path) -> Iterator[None]:
    """The namespace where client and mitmproxy run, its default route out through a veth."""
    with veth_namespace(NS, (VETH_OUT, FAR), (VETH_HOST, HOST)):
        yield


@pytest.fixture(scope="module")
def upstream_ca(work: Path) -> tuple[Path, ssl.SSLContext]:
    (work / "upstream-ca").mkdir(mode=0o755)
    ca, ctx = private_ca(work / "upstream-ca", NAME)
    ca.chmod(0o644)  # mitmproxy's uid reads it (ssl_verify_upstream_trusted_ca)
    return ca, ctx


@pytest.fixture(scope="module")
def servers(host: None, upstream_ca: tuple[Path, ssl.SSLContext]) -> Iterator[dict[str, Upstream]]:
    plain, tls = Upstream(FAR, 80), Upstream(FAR, 443, tls=upstream_ca[1])
    yield {"http": plain, "https": tls}
    plain.close()
    tls.close()


@pytest.fixture(scope="module")
def same_host(
    servers: dict[str, Upstream], upstream_ca: tuple[Path, ssl.SSLContext], work: Path, needs_caps: bool
) -> Iterator[Proxy]:
    """The same-host recipe: mitmdump as its own uid, the OUTPUT rule that spares that uid."""
    home = work / "mitmproxyuser"
    home.mkdir(mode=0o755)
    os.chown(home, MITM_UID, MITM_UID)
    (work / "profiles.toml").write_text(PROFILES)
    flows, log = home / "flows.mitm", work / "mitmdump.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", NS, *as_uid(MITM_UID, needs_caps), str(MITMDUMP)]
            + ["--mode", "transparent", "--listen-host", "127.0.0.1", "-p", "0"]
            + ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca[0]}"]
            + ["--set", f"usage_profiles={work / 'profiles.toml'}"]
            + ["-s", str(ROOT / "addon" / "normalize_usage.py"), "-w", str(flows)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(home),
            cwd=home,
        )
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"listening at 127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        port = m.group(1) if m else None
        time.sleep(0.05)
    assert port is not None, log.read_text(errors="replace")
    while not (home / ".mitmproxy" / "mitmproxy-ca-cert.pem").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # mitmproxy makes its CA as it starts
    rule = ["OUTPUT", "-p", "tcp", "-m", "owner", "!", "--uid-owner", str(MITM_UID)]
    rule += ["-m", "multiport", "--dports", "80,443", "-j", "REDIRECT", "--to-ports", port]
    sh("ip", "netns", "exec", NS, "iptables", "-t", "nat", "-A", *rule)
    try:
        yield Proxy(f"transparent:{port}", flows, log)
    finally:
        stop(proc)


def client(scheme: str, stream: bool, proxy: Proxy, caps: bool) -> dict[str, object]:
    """The openai SDK as `nobody` in the namespace, trusting mitmproxy's CA from its confdir."""
    ca = proxy.flows_file.parent / ".mitmproxy" / "mitmproxy-ca-cert.pem"
    run = subprocess.run(
        ["ip", "netns", "exec", NS, *as_uid(CLIENT_UID, caps), sys.executable, "-c", CLIENT_SCRIPT]
        + [f"{scheme}://{NAME}/v1", str(ca), "stream" if stream else "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(Path("/nonexistent")),
        cwd="/",
    )
    assert run.returncode == 0, run.stderr + proxy.log()
    usage: dict[str, object] = json.loads(run.stdout)
    return usage


def test_mitmproxys_confdir_is_its_own_and_its_ca_cert_readable_by_every_uid(same_host: Proxy) -> None:
    # What the README tells the clients of another uid to trust: ~mitmproxyuser/.mitmproxy/….
    conf = same_host.flows_file.parent / ".mitmproxy"
    assert conf.stat().st_uid == MITM_UID
    for path in (conf.parent, conf):
        assert path.stat().st_mode & stat.S_IXOTH, path
    cert = conf / "mitmproxy-ca-cert.pem"
    assert cert.stat().st_mode & stat.S_IROTH
    assert not (conf / "mitmproxy-ca.pem").stat().st_mode & stat.S_IROTH  # the key is not


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_founding_bug_is_fixed_through_the_same_host_recipe_with_the_profile_for_the_name(
    same_host: Proxy, servers: dict[str, Upstream], needs_caps: bool, scheme: str, stream: bool
) -> None:
    n = len(same_host.wait_for_flows(0, timeout=0))
    if stream:
        body = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
        servers[scheme].scenario = Scenario(
            body=body, content_type="text/event-stream", chunks=awkward_cuts(body)
        )
    else:
        servers[scheme].scenario = Scenario(
            body=(GOLDEN / "openai_chat" / "fix-founding-bug.upstream.json").read_bytes()
        )
    asked = len(servers[scheme].requests)
    usage = client(scheme, stream, same_host, needs_caps)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        107208,
        370,
        107578,
    )
    (*_, f) = same_host.wait_for_flows(n + 1)
    # The client's connection came to mitmproxy by the OUTPUT rule; mitmproxy's own went out (one
    # request upstream, from the host's address: not redirected back to itself).
    assert f.request.host == FAR and f.request.pretty_host == NAME
    assert f.client_conn.peername[0] in ("127.0.0.1", HOST)
    assert f.metadata["usagefix"]["status"] == "rewritten"
    assert f.metadata["usagefix"]["profile"] == "example-llm"
    assert len(servers[scheme].requests) == asked + 1
    assert servers[scheme].requests[-1]["headers"]["Host"] == NAME


def test_a_repair_only_the_named_profile_allows_happens_through_the_same_host_recipe(
    same_host: Proxy, servers: dict[str, Upstream], needs_caps: bool
) -> None:
    n = len(same_host.wait_for_flows(0, timeout=0))
    servers["https"].scenario = Scenario(body=AMBIGUOUS)
    usage = client("https", False, same_host, needs_caps)
    assert (usage["prompt_tokens"], usage["total_tokens"]) == (1678 + 1500, 2048 + 1500)
    (*_, f) = same_host.wait_for_flows(n + 1)
    assert f.metadata["usagefix"]["profile"] == "example-llm"
    assert f.client_conn.sni == NAME
