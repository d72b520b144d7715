"""Tests for the start banner: the mode, the capture and what to paste into a client."""

from pathlib import Path

from usagefix.banner import Listener, banner, ca_cert_path, capture_path

CA = "/home/u/.mitmproxy/mitmproxy-ca-cert.pem"


def test_the_banner_says_the_mode_the_capture_and_what_to_paste() -> None:
    reverse = banner([Listener("reverse", "http://127.0.0.1:8317", "127.0.0.1", 8080)], "/c.mitm", CA)
    assert reverse == [
        "usagefix: reverse proxy in front of http://127.0.0.1:8317, listening at 127.0.0.1:8080",
        "usagefix: point a client here with:",
        "    export OPENAI_BASE_URL=http://127.0.0.1:8080/v1      # OpenAI SDKs, LiteLLM, Open WebUI",
        "    export ANTHROPIC_BASE_URL=http://127.0.0.1:8080      # Anthropic SDKs, Claude Code",
        "usagefix: capture: /c.mitm",
    ]
    trust = f"    export SSL_CERT_FILE={CA} REQUESTS_CA_BUNDLE={CA} NODE_EXTRA_CA_CERTS={CA}"
    regular = banner([Listener("regular", "", "0.0.0.0", 9000)], "x", CA)
    assert regular[2:4] == [
        "    export HTTPS_PROXY=http://127.0.0.1:9000 HTTP_PROXY=http://127.0.0.1:9000",
        trust,
    ]
    upstream = banner([Listener("upstream", "http://corp:3128", "::1", 8080)], "x", CA)
    assert upstream[0] == "usagefix: upstream proxy (through http://corp:3128), listening at [::1]:8080"
    assert upstream[2] == "    export HTTPS_PROXY=http://[::1]:8080 HTTP_PROXY=http://[::1]:8080"
    assert (
        banner([Listener("socks5", "", "::", 1080)], "x", CA)[2]
        == "    export ALL_PROXY=socks5://127.0.0.1:1080"
    )
    wireguard = banner([Listener("wireguard", "", "0.0.0.0", 51820)], "x", CA)
    assert wireguard[2].startswith("    (connect clients with the WireGuard configuration")
    transparent = banner([Listener("transparent", "", "127.0.0.1", 8080)], "x", CA)
    assert transparent[2:] == [
        "    (no client setting in transparent mode: traffic is redirected to it; for HTTPS:)",
        trust,
        "usagefix: capture: x",
    ]


def test_the_capture_path_is_absolute_and_dated(tmp_path: Path) -> None:
    when = 1_800_000_000.0  # 2027-01-15
    import time

    day = time.strftime("%Y%m%d", time.localtime(when))
    assert capture_path("+flows/c-%Y%m%d.mitm", tmp_path, when) == f"{tmp_path}/flows/c-{day}.mitm (appended)"
    assert capture_path("/abs/out.mitm", tmp_path) == "/abs/out.mitm"
    assert capture_path(None, tmp_path) == "not saved (no -w)"


def test_the_ca_certificate_is_in_mitmproxys_confdir() -> None:
    assert ca_cert_path("/etc/mitm") == "/etc/mitm/mitmproxy-ca-cert.pem"
    assert ca_cert_path("~/.mitmproxy") == str(Path.home() / ".mitmproxy" / "mitmproxy-ca-cert.pem")
