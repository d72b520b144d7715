"""What the hooks read off a live flow (glue: imports mitmproxy): whether it is LLM traffic, its
dialect and context, the names it asked for, its request's JSON, and a whole response as
usagefix.renormalize takes it. Nothing here changes the flow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import url

from usagefix.dialects import DIALECTS, Context, Dialect, detect, model_from_path
from usagefix.profiles import ProfileSet
from usagefix.renormalize import WholeResponse

__all__ = [
    "FlowState",
    "asked_names",
    "flow_state",
    "is_llm",
    "media_type",
    "request_json",
    "where",
    "whole_response",
]


@dataclass(frozen=True, slots=True)
class FlowState:
    """What the addon keeps of a request between its hooks: the dialect that reads its response,
    and the context (profile, model, whether stream usage was asked for) it is read in."""

    dialect: Dialect
    context: Context


def asked_names(flow: http.HTTPFlow) -> tuple[str, ...]:
    """The names the client asked for: the Host header's (or :authority's) and the TLS SNI. In
    transparent mode `request.host` is the destination IP, so profiles match these too."""
    names = []
    if flow.request.host_header:
        host, _ = url.parse_authority(flow.request.host_header, check=False)
        names.append(host)
    if flow.client_conn.sni:
        names.append(flow.client_conn.sni)
    return tuple(dict.fromkeys(n for n in names if n and n != flow.request.host))


def where(flow: http.HTTPFlow) -> str:
    """The flow, as log lines name it."""
    return f"{flow.request.method} {flow.request.pretty_url}"


def media_type(message: http.Message) -> str:
    return str(message.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def request_json(flow: http.HTTPFlow) -> dict[str, Any] | None:
    """The request's body as a JSON object, or None (no body, not JSON, not an object)."""
    try:
        body = flow.request.get_content(strict=False)
        obj = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON, or nested past Python's limit
        return None
    return obj if isinstance(obj, dict) else None


def _model(flow: http.HTTPFlow, body: dict[str, Any]) -> str | None:
    return body["model"] if isinstance(body.get("model"), str) else model_from_path(flow.request.path)


def is_llm(flow: http.HTTPFlow, profiles: ProfileSet) -> bool:
    """Whether the request goes to an LLM: its path names a dialect, or a profile may set one."""
    req = flow.request
    return detect(req.method, req.path) is not None or profiles.may_set_dialect(
        req.host, req.port, req.path, asked_names(flow)
    )


def flow_state(flow: http.HTTPFlow, profiles: ProfileSet) -> FlowState | None:
    """Dialect and context of a request: detected from its path, or set by a profile."""
    req = flow.request
    if not is_llm(flow, profiles):
        return None  # other traffic: not even its body is parsed
    model = _model(flow, request_json(flow) or {})
    profile = profiles.match(req.host, req.port, req.path, model, asked_names(flow))
    dialect = DIALECTS[profile.dialect] if profile and profile.dialect else detect(req.method, req.path)
    if dialect is None:
        return None
    return FlowState(dialect, Context(profile=profile, model=model))


def whole_response(flow: http.HTTPFlow, state: FlowState, *, recorded: bool) -> WholeResponse:
    """A response whose whole body is here, as usagefix.renormalize takes it: buffered JSON, or
    (`recorded`) a flow loaded from a file or served again by server replay, with its prior record."""
    resp = flow.response
    assert resp is not None
    return WholeResponse(
        state.dialect,
        state.context,
        flow.request.path,
        resp.status_code,
        resp.reason,
        media_type(resp),
        tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in resp.headers.fields),
        resp.get_content(strict=False) if 200 <= resp.status_code < 300 else None,
        where(flow),
        metadata=flow.metadata if recorded else None,
        error=flow.error.msg if flow.error else None,
        by_replay=flow.is_replay == "response",
    )
