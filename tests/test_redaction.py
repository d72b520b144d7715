"""Credentials never reach a saved flow: every header and query parameter the supported clients and
gateways authenticate with, and nothing that is not one."""

from __future__ import annotations

import io

import pytest
from mitmproxy import http
from mitmproxy import io as mio
from mitmproxy.test import taddons, tflow, tutils

from usagefix.addon import UsageFix
from usagefix.flowredact import redact
from usagefix.redaction import REDACTED, is_secret, mask, redact_headers, redact_path, redact_query

SECRET = "PLANTED0123456789"
SIGV4 = (
    f"AWS4-HMAC-SHA256 Credential=AKIA{SECRET}/20260101/us-east-1/bedrock/aws4_request, "
    f"SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=abc{SECRET}"
)

# (header, value as the client sends it, as it is saved)
CREDENTIAL_HEADERS = [
    ("Authorization", f"Bearer sk-{SECRET}", f"Bearer {REDACTED}"),  # OpenAI & co, Azure AD, Vertex
    ("Authorization", f"Bearer ABSK{SECRET}", f"Bearer {REDACTED}"),  # a Bedrock API key
    ("Authorization", SIGV4, f"AWS4-HMAC-SHA256 {REDACTED}"),  # AWS SigV4
    ("Authorization", f"Basic {SECRET}", f"Basic {REDACTED}"),
    ("Authorization", f"sk-{SECRET}", REDACTED),  # no scheme
    ("Proxy-Authorization", f"Basic {SECRET}", f"Basic {REDACTED}"),
    ("x-amz-security-token", f"IQoJb3JpZ2luX2Vj{SECRET}", REDACTED),  # AWS SSO, assumed roles
    ("x-api-key", f"sk-ant-{SECRET}", REDACTED),  # Anthropic, Vercel AI Gateway
    ("api-key", SECRET, REDACTED),  # Azure OpenAI
    ("Ocp-Apim-Subscription-Key", SECRET, REDACTED),  # Azure API Management
    ("x-goog-api-key", f"AIza{SECRET}", REDACTED),  # Gemini
    ("x-litellm-api-key", f"sk-{SECRET}", REDACTED),  # LiteLLM proxy
    ("x-portkey-api-key", SECRET, REDACTED),  # Portkey
    ("x-portkey-virtual-key", SECRET, REDACTED),
    ("x-portkey-aws-access-key-id", f"ASIA{SECRET}", REDACTED),  # Portkey forwarding AWS credentials
    ("x-portkey-aws-secret-access-key", SECRET, REDACTED),
    ("x-portkey-aws-session-token", SECRET, REDACTED),
    ("x-portkey-vertex-service-account-json", '{"private_key": "' + SECRET + '"}', REDACTED),
    ("x-portkey-config", '{"provider": "openai", "api_key": "' + SECRET + '"}', REDACTED),
    ("Helicone-Auth", f"Bearer sk-helicone-{SECRET}", f"Bearer {REDACTED}"),
    ("cf-aig-authorization", f"Bearer {SECRET}", f"Bearer {REDACTED}"),  # Cloudflare AI Gateway
    ("apikey", SECRET, REDACTED),  # Kong key-auth
    ("Cookie", f"session={SECRET}", REDACTED),
    ("Set-Cookie", f"__cf_bm={SECRET}; path=/; HttpOnly", REDACTED),
]

NOT_CREDENTIALS = [
    ("openai-organization", "org-abc"),
    ("openai-project", "proj_abc"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "prompt-caching-2024-07-31"),
    ("x-portkey-provider", "openai"),
    ("x-portkey-config", "pc-abc-123"),  # a saved config's id
    ("x-amz-date", "20260101T000000Z"),
    ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ("x-goog-user-project", "my-project"),
    ("x-stainless-retry-count", "0"),
    ("content-type", "application/json"),
    ("anthropic-ratelimit-input-tokens-remaining", "1000"),
    ("x-amzn-bedrock-input-token-count", "12"),
    ("idempotency-key", "stainless-python-retry-abc"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
]

# (query parameter, as it is saved)
CREDENTIAL_QUERY = [
    "key",  # Gemini
    "access_token",  # Google APIs' OAuth token in the URL
    "X-Amz-Security-Token",  # an AWS presigned URL
    "X-Amz-Signature",
    "X-Amz-Credential",
    "subscription-key",  # Azure API Management
    "api-key",
    "api_key",
    "apiKey",
]
NOT_CREDENTIAL_QUERY = ["alt", "api-version", "beta", "X-Amz-Algorithm", "X-Amz-Date", "X-Amz-Expires"]


@pytest.mark.parametrize(("name", "value", "saved"), CREDENTIAL_HEADERS)
def test_every_credential_header_is_masked(name: str, value: str, saved: str) -> None:
    assert is_secret(name, value) and is_secret(name.upper(), value)
    assert redact_headers([("Host", "api.example.com"), (name, value)]) == [
        ("Host", "api.example.com"),
        (name, saved),
    ]
    assert mask(name, saved) == saved  # masking twice changes nothing


@pytest.mark.parametrize(("name", "value"), NOT_CREDENTIALS)
def test_identifiers_and_counts_are_kept(name: str, value: str) -> None:
    assert not is_secret(name, value)
    assert redact_headers([(name, value)]) is None


def test_headers_without_credentials_or_already_masked_are_left_as_they_are() -> None:
    assert redact_headers([("authorization", f"Bearer {REDACTED}"), ("x-api-key", REDACTED)]) is None
    assert redact_headers([("authorization", ""), ("cookie", "  ")]) is None  # nothing to hide


@pytest.mark.parametrize("name", CREDENTIAL_QUERY)
def test_every_credential_query_parameter_is_masked(name: str) -> None:
    query = f"alt=sse&{name}={SECRET}&api-version=2025-01-01%2Bx"
    assert redact_query(query) == f"alt=sse&{name}=%3Credacted%3E&api-version=2025-01-01%2Bx"
    assert redact_query(f"alt=sse&{name}=%3Credacted%3E") is None


@pytest.mark.parametrize("name", NOT_CREDENTIAL_QUERY)
def test_other_query_parameters_are_kept(name: str) -> None:
    assert redact_query(f"{name}=1") is None


def test_a_presigned_url_keeps_everything_but_its_secrets() -> None:
    path = (
        "/model/x/invoke?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIA{SECRET}%2F20260101%2Fus-east-1%2Fbedrock%2Faws4_request"
        f"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=300&X-Amz-Security-Token={SECRET}"
        f"&X-Amz-SignedHeaders=host&X-Amz-Signature={SECRET}#frag"
    )
    saved = redact_path(path)
    assert saved == (
        "/model/x/invoke?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%3Credacted%3E"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=300&X-Amz-Security-Token=%3Credacted%3E"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=%3Credacted%3E#frag"
    )
    assert redact_path(saved) is None
    assert redact_path("/v1/chat/completions") is None
    assert redact_path("/v1beta/models/g:streamGenerateContent?alt=sse&key=") is None


def planted_flow() -> http.HTTPFlow:
    query = "&".join(f"{q}={SECRET}" for q in CREDENTIAL_QUERY)
    req = tutils.treq(method=b"POST", path=f"/v1/chat/completions?alt=sse&{query}".encode())
    for name, value, _ in CREDENTIAL_HEADERS:
        if name != "Set-Cookie":
            req.headers.add(name, value)
    for name, value in NOT_CREDENTIALS:
        req.headers.add(name, value)
    f = tflow.tflow(req=req, resp=True)
    assert f.response is not None
    f.response.headers.add("Set-Cookie", f"__cf_bm={SECRET}; path=/")
    f.response.headers.add("Set-Cookie", f"other={SECRET}")
    return f


def saved_bytes(f: http.HTTPFlow) -> bytes:
    buf = io.BytesIO()
    mio.FlowWriter(buf).add(f)
    return buf.getvalue()


def test_no_credential_reaches_the_saved_flow_nor_its_backup() -> None:
    f = planted_flow()
    f.backup()  # an edited or client-replayed flow is saved with its original state
    f.request.headers["x-edited"] = "1"
    assert SECRET.encode() in saved_bytes(f)
    redact(f)
    raw = saved_bytes(f)
    assert SECRET.encode() not in raw
    assert f.request.headers["authorization"].startswith("Bearer ")
    assert f.request.query["alt"] == "sse" and f.request.query["key"] == REDACTED
    assert all(f.request.headers[n] == v for n, v in NOT_CREDENTIALS if n != "x-portkey-config")
    assert f.response is not None and f.response.headers.get_all("set-cookie") == [REDACTED, REDACTED]
    redact(f)
    assert saved_bytes(f) == raw  # redacting a redacted flow changes nothing


async def test_the_addon_masks_what_it_saves_not_what_it_sends() -> None:
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        f = planted_flow()
        addon.requestheaders(f)
        addon.request(f)
        assert f.request.headers["x-amz-security-token"].endswith(SECRET)  # what goes upstream
        await tctx.cycle(addon, f)
        assert SECRET.encode() not in saved_bytes(f)
        tctx.configure(addon, usage_redact_secrets=False)
        g = planted_flow()
        await tctx.cycle(addon, g)
        assert g.request.headers["x-amz-security-token"].endswith(SECRET)


def test_a_backup_message_state_is_masked_in_place_and_anything_else_is_left_alone() -> None:
    from usagefix.redaction import redact_fields, redact_message_state

    assert redact_fields(((b"content-type", b"application/json"),)) is None
    request = {"headers": ((b"authorization", b"Bearer sk-secret"),), "path": b"/v1/x?key=AIzaSecret"}
    redact_message_state(request, is_request=True)
    assert request["headers"] == ((b"authorization", b"Bearer " + REDACTED.encode()),)
    assert b"AIzaSecret" not in request["path"]
    response = {"headers": ((b"x", b"y"),), "path": b"/v1/x?key=AIzaSecret"}
    redact_message_state(response, is_request=False)  # a response has no path to mask
    assert response == {"headers": ((b"x", b"y"),), "path": b"/v1/x?key=AIzaSecret"}
    clean = {"headers": (), "path": b"/v1/x"}
    redact_message_state(clean, is_request=True)
    assert clean == {"headers": (), "path": b"/v1/x"}
    redact_message_state(None, is_request=True)  # no backup of that message
