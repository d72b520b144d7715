"""Sessions, lanes and steps, from what clients already put on the wire. Pure.

Resolution, in order (sessions-ledger.md §1.1, §1.3, §1.4):
1. The client, from User-Agent (or a header only it sends); then only that client's documented
   keys, so one client's key is never read as another's: Claude Code `X-Claude-Code-Session-Id`
   and `metadata.user_id`'s session; Codex `session-id` / `thread-id` (older `session_id` /
   `conversation_id`); opencode `x-opencode-session` / `x-session-affinity` / `X-Session-Id`; Mux
   `X-Mux-Workspace-Id`; Kilo `X-KiloCode-TaskId`; Copilot `x-interaction-id` /
   `X-Client-Session-Id`.
2. Generic keys, whatever the client: the headers the user named, OpenRouter `x-session-id` /
   body `session_id`, LiteLLM `x-litellm-session-id`, Helicone `Helicone-Session-Id`, any
   `x-…-session-id` (with LiteLLM's value rule).
3. A Responses `previous_response_id` chain (`chain`), then tool-result continuation
   (`tool_call`), then a prefix fingerprint (`fingerprint`).
4. Nothing else: a WebSocket turn's connection (`connection`, `ws:<flow id>`): a Realtime
   session is its connection, and its turns name nothing (the weakest: a socket may be shared).
Keys are namespaced by where they came from (`claude:<uuid>`, `codex:<id>`, `fp:<hash>`, ...).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from usagefix.conversation import read_request
from usagefix.exchange import ExchangeFacts, ResponseFacts, SessionInfo, SessionSource

__all__ = ["SessionTracker", "recognise_client"]

Headers = dict[str, str]

# (client, User-Agent prefixes, a header only that client sends)
_CLIENTS: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("claude-code", ("claude-cli/", "claude-code/"), "x-claude-code-session-id"),
    ("codex", ("codex_cli_rs/", "codex-tui/", "codex_exec/", "codex_vscode/"), None),
    ("opencode", ("opencode/",), "x-opencode-session"),
    ("mux", ("mux/", "xum/"), "x-mux-workspace-id"),
    ("kilo", ("kilo-code/",), "x-kilocode-taskid"),
    ("copilot", ("githubcopilotchat/", "copilot/"), None),
    ("roo", ("roo-code/",), None),
    ("gemini-cli", ("geminicli/",), None),
    ("openai-agents", ("agents/python",), None),
    ("zed", ("zed/",), None),
)

# Each client's own keys, strongest first: (namespace, header).
_CLIENT_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "claude-code": (("claude", "x-claude-code-session-id"),),
    "codex": (
        ("codex", "session-id"),
        ("codex", "session_id"),
        ("codex", "conversation_id"),
        ("codex", "thread-id"),
    ),
    "opencode": (
        ("opencode", "x-opencode-session"),
        ("opencode", "x-session-affinity"),
        ("opencode", "x-session-id"),
    ),
    "mux": (("mux", "x-mux-workspace-id"),),
    "kilo": (("kilo", "x-kilocode-taskid"),),
    "copilot": (("copilot", "x-interaction-id"), ("copilot", "x-client-session-id")),
}

# `x-session-id` and a body's `session_id` are OpenRouter's (one and the same there), but gateways
# (LLM Gateway, GPROXY) and scripts send them too: the key names the header, not a vendor.
_GENERIC = (
    ("session-id", "x-session-id"),
    ("litellm", "x-litellm-session-id"),
    ("helicone", "helicone-session-id"),
)
_ANY_SESSION_HEADER = re.compile(r"x-[a-z0-9-]+-session-id")
_ANY_SESSION_VALUE = re.compile(r"[A-Za-z0-9_\-]{8,256}")  # LiteLLM's rule for the catch-all
_LEGACY_USER_ID = re.compile(r"_session_([A-Za-z0-9-]+)$")
_MAX_VALUE = 256  # a key longer than this is no id; it is not taken


def recognise_client(headers: Headers) -> str | None:
    """The client, from its User-Agent, else from a header only it sends."""
    ua = headers.get("user-agent", "").strip().lower()
    originator = headers.get("originator", "").lower()
    for name, prefixes, own_header in _CLIENTS:
        if ua.startswith(prefixes) or (own_header is not None and own_header in headers):
            return name
    if originator.startswith("codex"):
        return "codex"
    if "claude-code-" in headers.get("anthropic-beta", "") and headers.get("x-app") == "cli":
        return "claude-code"
    return None


def _value(headers: Headers, name: str) -> str | None:
    value = headers.get(name, "").strip()
    return value if value and len(value) <= _MAX_VALUE else None


def _claude_user_id(body: Any) -> str | None:
    """The session in Claude Code's `metadata.user_id`: a JSON string since v2.1.78, else the
    legacy `user_<hash>_account_<uuid>_session_<uuid>`."""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str):
        return None
    if user_id.lstrip().startswith("{"):
        try:
            parsed = json.loads(user_id)
        except ValueError:
            return None
        session = parsed.get("session_id") if isinstance(parsed, dict) else None
        return session if isinstance(session, str) and session else None
    match = _LEGACY_USER_ID.search(user_id)
    return match.group(1) if match else None


def _client_key(client: str | None, headers: Headers, body: Any) -> tuple[str, SessionSource] | None:
    for namespace, header in _CLIENT_KEYS.get(client or "", ()):
        if (value := _value(headers, header)) is not None:
            return f"{namespace}:{value}", "header"
    if client == "claude-code" and (session := _claude_user_id(body)) is not None:
        return f"claude:{session}", "body"
    return None


def _generic_key(headers: Headers, body: Any, extra: Sequence[str]) -> tuple[str, SessionSource] | None:
    for header in extra:
        if (value := _value(headers, header)) is not None:
            return f"{header}:{value}", "header"
    for namespace, header in _GENERIC:
        if (value := _value(headers, header)) is not None:
            return f"{namespace}:{value}", "header"
    session = body.get("session_id") if isinstance(body, dict) else None
    if isinstance(session, str) and session.strip() and len(session) <= _MAX_VALUE:
        return f"session-id:{session.strip()}", "body"
    for header, value in headers.items():
        if (
            header != "x-parent-session-id"
            and _ANY_SESSION_HEADER.fullmatch(header)
            and _ANY_SESSION_VALUE.fullmatch(value.strip())
        ):
            return f"{header}:{value.strip()}", "header"
    return None


def _lane(client: str | None, headers: Headers) -> tuple[str, str | None]:
    """(lane, parent lane): `main` for the main agent; a subagent's id with its parent's lane."""
    if client == "claude-code" and (agent := _value(headers, "x-claude-code-agent-id")) is not None:
        return agent, _value(headers, "x-claude-code-parent-agent-id") or "main"
    if client == "codex":
        parent = _value(headers, "x-codex-parent-thread-id")
        label = _value(headers, "x-openai-subagent")
        if parent is not None or label is not None:
            root = _value(headers, "session-id") or _value(headers, "session_id")
            lane = _value(headers, "thread-id") or label or "subagent"
            return lane, "main" if parent is None or parent == root else parent
    if client == "opencode" and _value(headers, "x-parent-session-id") is not None:
        own = _value(headers, "x-opencode-session") or _value(headers, "x-session-affinity")
        return own or _value(headers, "x-session-id") or "subagent", "main"
    return "main", None


class _LRU:
    """A bounded map: the oldest entry goes first."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.items: OrderedDict[str, SessionInfo] = OrderedDict()

    def get(self, key: str) -> SessionInfo | None:
        found = self.items.get(key)
        if found is not None:
            self.items.move_to_end(key)
        return found

    def put(self, key: str, value: SessionInfo) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.bound:
            self.items.popitem(last=False)


class SessionTracker:
    """Assigns each exchange, in the order responses finish, to a session. Bounded memory: it
    indexes the tool-call ids and response ids it has seen (oldest forgotten first), and the
    subagent sessions it has seen (so a sub-subagent rolls up to its root)."""

    def __init__(self, *, extra_headers: Sequence[str] = (), max_index: int = 100_000) -> None:
        self.extra_headers = tuple(h.strip().lower() for h in extra_headers if h.strip())
        self.max_index = max_index
        self._responses = _LRU(max_index)
        self._tool_calls = _LRU(max_index)
        self._roots: OrderedDict[str, str] = OrderedDict()

    def step(self, facts: ExchangeFacts, dialect: str, response: ResponseFacts) -> SessionInfo:
        """The session of this exchange (from its request), then index its response's ids."""
        headers: Headers = {}
        for name, value in facts.request_headers:
            headers.setdefault(name.lower(), value)
        body = facts.request_body
        client = recognise_client(headers)
        request = read_request(dialect, body)
        lane, parent_lane = _lane(client, headers)
        parent_call = next(filter(None, map(self._tool_calls.get, request.tool_result_ids)), None)
        chained = self._responses.get(request.previous_response_id) if request.previous_response_id else None
        named = _client_key(client, headers, body) or _generic_key(headers, body, self.extra_headers)
        key: str | None = None
        source: SessionSource | None = None
        if named is not None:
            key, source = self._rooted(client, headers, named[0]), named[1]
        elif request.previous_response_id is not None:
            key, source = (
                (chained.key if chained else None) or f"chain:{request.previous_response_id}",
                "chain",
            )
        elif parent_call is not None and parent_call.key is not None:
            key, source = parent_call.key, "tool_call"
        elif request.fingerprint is not None:
            key, source = f"fp:{request.fingerprint}", "fingerprint"
        elif facts.connection is not None:
            # Nothing in the turn says whose it is (a Realtime turn): its connection does. Last,
            # since one socket may carry several conversations (the Agents SDK shares one).
            key, source = f"ws:{facts.connection}", "connection"
        if named is None and lane == "main":
            inherited = chained or parent_call
            lane, parent_lane = (inherited.lane, inherited.parent_lane) if inherited else (lane, parent_lane)
        info = SessionInfo(
            key=key,
            source=source,
            client=client,
            lane=lane,
            parent_lane=parent_lane,
            parent_exchange_id=parent_call.parent_exchange_id if parent_call else None,
            previous_response_id=request.previous_response_id,
        )
        self._index(facts.flow_id, info, response)
        return info

    def _rooted(self, client: str | None, headers: Headers, key: str) -> str:
        """An opencode subagent's session rolls up to its parent's (and the parent's root)."""
        parent = _value(headers, "x-parent-session-id") if client == "opencode" else None
        if parent is None:
            return key
        namespace = key.split(":", 1)[0]
        root = self._roots.get(parent, f"{namespace}:{parent}")
        self._roots[key.split(":", 1)[1]] = root
        while len(self._roots) > self.max_index:
            self._roots.popitem(last=False)
        return root

    def _index(self, exchange_id: str, info: SessionInfo, response: ResponseFacts) -> None:
        # What a later step finds: this exchange's session and lane, and in `parent_exchange_id`
        # this exchange itself (the parent of the step that answers its tool calls).
        entry = SessionInfo(info.key, info.source, info.client, info.lane, info.parent_lane, exchange_id)
        for call_id in response.tool_call_ids:
            self._tool_calls.put(call_id, entry)
        if response.response_id:
            self._responses.put(response.response_id, entry)
