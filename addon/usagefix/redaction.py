"""Which headers and query parameters carry credentials, and how they are masked in saved flows.

Pure: functions over header (name, value) pairs and raw query strings; `flowredact.redact` applies them
to a flow. The upstream always receives the real values: only what is saved is masked.

A header or query parameter is a credential when its name says so: its last word (split at `-`,
`_`, `.` and camelCase) is one of `SECRET_WORDS`, or it is one of `SECRET_NAMES`. That covers,
among others (each tested in tests/test_redaction.py):

- every vendor: `Authorization` (OpenAI, OpenRouter, Vertex and Azure AD bearer tokens, Bedrock API
  keys, AWS SigV4 signatures), `x-api-key` (Anthropic), `api-key` (Azure), `x-goog-api-key` and
  `?key=` / `?access_token=` (Gemini, Google APIs), `x-amz-security-token` (AWS session tokens:
  SSO, assumed roles), presigned `?X-Amz-Security-Token` / `X-Amz-Signature` / `X-Amz-Credential`;
- gateways' own keys: `Ocp-Apim-Subscription-Key` / `?subscription-key=` (Azure API Management),
  `x-litellm-api-key`, `x-portkey-api-key` / `x-portkey-virtual-key` and Portkey's provider
  credentials (`x-portkey-aws-*`, `x-portkey-vertex-service-account-json`, a JSON
  `x-portkey-config`), `Helicone-Auth`, `cf-aig-authorization` (Cloudflare AI Gateway),
  `Proxy-Authorization`;
- `Cookie` and `Set-Cookie`.

Identifiers are not secrets and are kept: `openai-organization`, `openai-project`, `x-portkey-provider`,
`anthropic-version`, region and account headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote_plus

__all__ = [
    "REDACTED",
    "is_secret",
    "mask",
    "redact_fields",
    "redact_headers",
    "redact_message_state",
    "redact_path",
    "redact_query",
]

REDACTED = "<redacted>"

SECRET_WORDS = frozenset(
    {
        "authorization",  # Authorization, Proxy-Authorization, cf-aig-authorization
        "auth",  # Helicone-Auth
        "cookie",  # Cookie, Set-Cookie
        "key",  # x-api-key, api-key, x-goog-api-key, Ocp-Apim-Subscription-Key, ?key=, …-virtual-key
        "apikey",  # ?apikey=, Kong's `apikey` header
        "token",  # x-amz-security-token, ?access_token=, X-Amz-Security-Token, …-session-token
        "secret",
        "password",
        "signature",  # X-Amz-Signature
        "credential",  # X-Amz-Credential: the access key id and its scope
    }
)
SECRET_NAMES = frozenset(
    {
        "x-portkey-aws-access-key-id",  # sent together with the secret access key
        "x-portkey-vertex-service-account-json",  # a service account's private key
    }
)
# Named like a credential, but not one: masking them would only break replays.
NOT_SECRET = frozenset(
    {"sec-websocket-key", "idempotency-key", "x-idempotency-key", "page_token", "pagetoken"}
)
# Headers whose value starts with an auth scheme worth keeping: "Bearer <redacted>".
_SCHEMED = frozenset({"authorization", "auth"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9-]*(?= +\S)")
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _last_word(name: str) -> str:
    words = _WORDS.findall(name)
    return words[-1].lower() if words else ""


def is_secret(name: str, value: str = "") -> bool:
    """Whether a header or query parameter of this name (and value) carries a credential."""
    lowered = name.strip().lower()
    if lowered in NOT_SECRET:
        return False
    if lowered == "x-portkey-config":  # a config id is not a secret, an inline config may hold keys
        return value.lstrip().startswith("{")
    return lowered in SECRET_NAMES or _last_word(name) in SECRET_WORDS


def mask(name: str, value: str) -> str:
    """The masked value; an auth scheme is kept (`Bearer <redacted>`, `AWS4-HMAC-SHA256 <redacted>`).
    An empty value stays empty, a masked one stays as it is."""
    if not value.strip():
        return value
    if _last_word(name) in _SCHEMED and (m := _SCHEME.match(value.strip())):
        return f"{m.group()} {REDACTED}"
    return REDACTED


def redact_headers(fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The header fields with every credential masked, in order; None when there is nothing to mask
    (so an already redacted flow is left exactly as it is)."""
    out, changed = [], False
    for name, value in fields:
        if is_secret(name, value):
            masked = mask(name, value)
            changed |= masked != value
            value = masked
        out.append((name, value))
    return out if changed else None


_REDACTED_Q = quote(REDACTED)


def redact_query(query: str) -> str | None:
    """A raw query string (`a=1&key=…`) with every credential's value masked, every other byte as it
    was; None when there is nothing to mask."""
    pairs, changed = query.split("&"), False
    for i, pair in enumerate(pairs):
        name, eq, value = pair.partition("=")
        if eq and value and is_secret(unquote_plus(name), unquote_plus(value)) and value != _REDACTED_Q:
            pairs[i] = f"{name}={_REDACTED_Q}"
            changed = True
    return "&".join(pairs) if changed else None


def redact_path(path: str) -> str | None:
    """A request path (`/v1/…?key=…`) with the credentials in its query masked; None when there are
    none."""
    base, q, rest = path.partition("?")
    if not q:
        return None
    query, hash_, fragment = rest.partition("#")
    new = redact_query(query)
    return None if new is None else f"{base}?{new}{hash_}{fragment}"


def redact_fields(fields: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[bytes, bytes], ...] | None:
    """mitmproxy's header fields (byte pairs), masked; None when nothing needed masking."""
    # latin-1 maps bytes to str one to one: what is not masked keeps its exact bytes.
    new = redact_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)
    return None if new is None else tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in new)


def redact_message_state(state: object, *, is_request: bool) -> None:
    """Mask, in place, a message as a flow's backup holds it (its `get_state()`: a dict of bytes)."""
    if not isinstance(state, dict):
        return
    fields = state.get("headers")
    if isinstance(fields, tuple) and (new := redact_fields(fields)) is not None:
        state["headers"] = new
    path = state.get("path")
    if is_request and isinstance(path, bytes) and (p := redact_path(path.decode("latin-1"))) is not None:
        state["path"] = p.encode("latin-1")
