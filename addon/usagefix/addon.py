"""The mitmproxy glue: arm a rewriter on LLM responses, record what it did.

Every wire-safety rule here comes from a verified mitmproxy behaviour (reference/mitmproxy-notes.md):
the stream callable never returns an empty piece mid-stream, `content-length` goes when sizes may
change, a failure forwards the original bytes, loaded flows are left alone.
"""

from __future__ import annotations

import json
import logging
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from usagefix.decoding import Decoder, make_decoder
from usagefix.dialects import DIALECTS, Context, Dialect, detect, framing_for, model_from_path
from usagefix.framing import DEFAULT_MAX_EVENT_BYTES
from usagefix.profiles import ProfileError, ProfileSet, load_profiles
from usagefix.record import (
    METADATA_KEY,
    UsageRecord,
    build_record,
    minimal_record,
    rebuild_upstream,
    summary,
)
from usagefix.rewriter import StreamRewriter, rewrite_body, rewrite_stream

__all__ = ["UsageFix"]

logger = logging.getLogger(__name__)

# Below this an event bound would cut ordinary usage events in two.
MIN_EVENT_BYTES = 4096


def _where(flow: http.HTTPFlow) -> str:
    """The flow, as log lines name it."""
    return f"{flow.request.method} {flow.request.pretty_url}"


def _media_type(message: http.Message) -> str:
    return str(message.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


@dataclass
class _Stream:
    """The callable mitmproxy calls with each chunk of a streamed response, then with b"".

    Fail open, losing nothing: the rewriter owns every byte it has not returned, and its `feed`,
    `finish` and `abandon` never raise. A chunk that cannot be decoded makes the rewriter hand back
    what it held; that chunk and every one after it go as they came.
    """

    rewriter: StreamRewriter
    decoder: Decoder | None = None
    content_encoding: str | None = None
    sent: bytearray = field(default_factory=bytearray)
    """Everything the client was sent, for the saved flow."""
    recorded: bool = False
    """Set once the response is recorded: a later `error` (the client hanging up after the end)
    must not turn a complete response into a cut-off one."""

    def __call__(self, chunk: bytes) -> list[bytes]:
        try:
            out = self._process(chunk)
        except Exception as e:  # not reachable by design; should it be, the chunk still goes
            logger.warning(
                "usagefix: %s: stream handling failed: %s: %s", self.rewriter.where, type(e).__name__, e
            )
            out = [chunk]
        # Never return b"" as a piece: to an HTTP/1.1 client, an empty chunk ends the body.
        out = [p for p in out if p]
        for piece in out:
            self.sent += piece
        return out

    def _process(self, chunk: bytes) -> list[bytes]:
        data = chunk
        if self.decoder is not None:
            try:
                data = self.decoder.decode(chunk) if chunk else self.decoder.flush()
            except Exception as e:  # corrupt compressed data: nothing better than to forward it
                self.decoder = None
                held = self.rewriter.abandon(
                    f"cannot decode {self.content_encoding}: {type(e).__name__}: {e}"
                )
                return [*held, chunk]
        out = self.rewriter.feed(data) if data else []
        if not chunk:  # the end of the stream: every byte still held goes now
            out += self.rewriter.finish()
        return out


# Where credentials travel. Redacted in what is saved; the upstream still gets the real ones.
SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie")
SECRET_RESPONSE_HEADERS = ("set-cookie",)
SECRET_QUERY = ("key",)  # Gemini's ?key=
REDACTED = "<redacted>"


def _mask(name: str, value: str) -> str:
    if name in ("authorization", "proxy-authorization") and " " in value.strip():
        return value.strip().split(" ", 1)[0] + " " + REDACTED  # keep the scheme: "Bearer <redacted>"
    return REDACTED


def _redact_headers(headers: http.Headers, names: tuple[str, ...]) -> None:
    for name in names:
        values = headers.get_all(name)
        if values and any(v != _mask(name, v) for v in values):
            headers.set_all(name, [_mask(name, v) for v in values])


def redact(flow: http.HTTPFlow) -> None:
    """Mask credentials in the flow as it will be saved (request already sent, so harmless)."""
    _redact_headers(flow.request.headers, SECRET_HEADERS)
    for key in SECRET_QUERY:
        if flow.request.query.get_all(key):
            flow.request.query.set_all(key, [REDACTED] * len(flow.request.query.get_all(key)))
    if flow.response is not None:
        _redact_headers(flow.response.headers, SECRET_RESPONSE_HEADERS)
    # A backup (client replay, edits) is saved with the flow: it holds the original headers too.
    backup = getattr(flow, "_backup", None)
    if isinstance(backup, dict) and isinstance(backup.get("request"), dict):
        hdrs = backup["request"].get("headers")
        if hdrs:
            secret = {n.encode() for n in SECRET_HEADERS}
            backup["request"]["headers"] = tuple(
                (
                    k,
                    _mask(k.decode().lower(), v.decode("latin-1")).encode("latin-1")
                    if k.lower() in secret
                    else v,
                )
                for k, v in hdrs
            )


@dataclass(frozen=True, slots=True)
class _FlowState:
    dialect: Dialect
    ctx: Context


def _request_json(flow: http.HTTPFlow) -> dict[str, Any] | None:
    try:
        body = flow.request.get_content(strict=False)
        obj = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _ask_for_stream_usage(flow: http.HTTPFlow, body: dict[str, Any]) -> bool:
    """Add `stream_options.include_usage` to an OpenAI Chat stream request that lacks it."""
    if body.get("stream") is not True:
        return False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    flow.request.content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return True


class UsageFix:
    """Rewrites the usage of LLM responses into normalized, self-consistent, cumulative totals."""

    def __init__(self) -> None:
        self.max_event_bytes = DEFAULT_MAX_EVENT_BYTES
        self.redact_secrets = True
        self.request_stream_usage = False
        self.profiles = ProfileSet()
        # Per-flow state lives here, not in flow.metadata, which must stay serializable.
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, _FlowState] = weakref.WeakKeyDictionary()
        self._in_flight: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "usage_max_event_bytes",
            int,
            DEFAULT_MAX_EVENT_BYTES,
            "The largest streamed event (in bytes) held back to be parsed; a larger one is forwarded "
            "untouched and flagged.",
        )
        loader.add_option(
            "usage_redact_secrets",
            bool,
            True,
            "Mask credentials (Authorization, x-api-key, x-goog-api-key, api-key, cookies, key= query "
            "parameters) in saved flows. The upstream always receives the real ones.",
        )
        loader.add_option(
            "usage_profiles",
            Optional[str],  # type: ignore[arg-type]  # noqa: UP045 (mitmproxy's option types)
            None,
            "A TOML file of upstream profiles: what an upstream gets wrong that a response cannot prove.",
        )
        loader.add_option(
            "usage_request_stream_usage",
            bool,
            False,
            "Ask OpenAI Chat streams for usage (stream_options.include_usage) when the client did not, "
            "record it, and remove it from what the client receives.",
        )

    def configure(self, updated: set[str]) -> None:
        if "usage_max_event_bytes" in updated:
            value = ctx.options.usage_max_event_bytes
            if value < MIN_EVENT_BYTES:
                raise exceptions.OptionsError(  # type: ignore[no-untyped-call]
                    f"usage_max_event_bytes must be at least {MIN_EVENT_BYTES}, not {value}"
                )
            self.max_event_bytes = value
        if "usage_redact_secrets" in updated:
            self.redact_secrets = ctx.options.usage_redact_secrets
        if "usage_request_stream_usage" in updated:
            self.request_stream_usage = ctx.options.usage_request_stream_usage
        if "usage_profiles" in updated:
            path = ctx.options.usage_profiles
            try:
                self.profiles = ProfileSet(load_profiles(Path(path).expanduser()) if path else None)
            except ProfileError as e:
                # `from None`: the message says it all; mitmdump prints the traceback of the cause.
                raise exceptions.OptionsError(f"usage_profiles: {e}") from None  # type: ignore[no-untyped-call]

    # -- request -------------------------------------------------------------------------

    def _is_llm(self, req: http.Request) -> bool:
        return detect(req.method, req.path) is not None or self.profiles.may_set_dialect(
            req.host, req.port, req.path
        )

    def _state(self, flow: http.HTTPFlow) -> _FlowState | None:
        """Dialect and context of a request: detected from its path, or set by a profile."""
        req = flow.request
        if not self._is_llm(req):
            return None  # other traffic: not even its body is parsed
        body = _request_json(flow) or {}
        model = body["model"] if isinstance(body.get("model"), str) else model_from_path(req.path)
        profile = self.profiles.match(req.host, req.port, req.path, model)
        dialect = DIALECTS[profile.dialect] if profile and profile.dialect else detect(req.method, req.path)
        if dialect is None:
            return None
        return _FlowState(dialect, Context(profile=profile, model=model))

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        self._in_flight.add(flow)
        if self._is_llm(flow.request):
            # A compressed stream cannot be rewritten without decoding it: ask for none (the
            # response is decoded anyway if the upstream compresses regardless).
            flow.request.anticomp()

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        state = self._state(flow)
        if state is None:
            return
        if self.request_stream_usage and state.dialect.name == "openai_chat" and flow.is_replay != "response":
            body = _request_json(flow)
            if body is not None and _ask_for_stream_usage(flow, body):
                state = _FlowState(state.dialect, replace(state.ctx, strip_usage_chunk=True))
        self._flows[flow] = state

    # -- response ------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = self._flows.get(flow)
        resp = flow.response
        if state is None or resp is None or not flow.live or flow.is_replay == "response":
            return
        if not 200 <= resp.status_code < 300:
            return  # errors pass untouched
        framing = framing_for(state.dialect, _media_type(resp), flow.request.path)
        if framing is None:
            return  # a whole JSON body: buffered, rewritten in `response`
        decoder = None
        encoding = resp.headers.get("content-encoding", "").strip().lower() or None
        if encoding and encoding != "identity":
            decoder = make_decoder(encoding)
            if decoder is None:
                logger.warning(
                    "usagefix: cannot decode content-encoding %r; streaming it untouched", encoding
                )
                resp.stream = True
                return
            del resp.headers["content-encoding"]
        # The size changes when usage is rewritten: the client must not rely on content-length.
        resp.headers.pop("content-length", None)
        if flow.request.http_version == "HTTP/1.1":
            resp.headers["transfer-encoding"] = "chunked"  # keeps the connection alive
        rewriter = StreamRewriter(state.dialect, self.max_event_bytes, state.ctx, framing, where=_where(flow))
        resp.stream = _Stream(rewriter, decoder, encoding if decoder else None)

    def response(self, flow: http.HTTPFlow) -> None:
        # Keep this fast: the client sees the end of the stream only after it returns.
        state = self._flows.pop(flow, None)
        try:
            resp = flow.response
            if resp is None:
                return
            stream = resp.stream
            if isinstance(stream, _Stream):
                stream.recorded = True
                resp.raw_content = bytes(stream.sent)
                self._record(flow, self._build(stream.rewriter, stream.content_encoding))
            elif not flow.live or flow.is_replay == "response":
                # A flow loaded from a file, or a recorded response served again: normalize the
                # upstream's original anew (idempotent on a file written with the addon).
                state = self._state(flow)
                if state is not None:
                    self._rewrite_whole(flow, state, recorded=True)
            elif state is not None and not resp.stream:
                self._rewrite_whole(flow, state, recorded=False)
        finally:
            self._in_flight.discard(flow)
            if self.redact_secrets:
                redact(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._flows.pop(flow, None)
        self._in_flight.discard(flow)
        if self.redact_secrets:
            redact(flow)
        resp = flow.response
        if resp is None or not isinstance(resp.stream, _Stream) or resp.stream.recorded:
            return
        stream = resp.stream
        stream.recorded = True
        resp.raw_content = bytes(stream.sent)
        rw = stream.rewriter
        if rw.ended:
            # The client hung up after the stream's last event (the OpenAI SDK closes on `[DONE]`,
            # often before the upstream's end of body): a complete response, not a cut-off one.
            self._record(flow, self._build(rw, stream.content_encoding))
            return
        msg = flow.error.msg if flow.error else "stream interrupted"
        self._record(flow, self._build(rw, stream.content_encoding, cut_off=msg))

    def done(self) -> None:
        # Flows still open at shutdown are saved by mitmproxy after this: mask them too.
        if self.redact_secrets:
            for flow in list(self._in_flight):
                redact(flow)

    def _build(self, rw: StreamRewriter, encoding: str | None, cut_off: str | None = None) -> UsageRecord:
        return build_record(
            rw.outcome,
            cut_off=cut_off,
            content_encoding=encoding,
            held_back=rw.pending_bytes() if cut_off else b"",
            stream_usage_added=rw.ctx.strip_usage_chunk,
        )

    def _rewrite_whole(self, flow: http.HTTPFlow, state: _FlowState, *, recorded: bool) -> None:
        """Rewrite a response whose whole body is here: buffered JSON, or a recorded stream."""
        resp = flow.response
        assert resp is not None
        if not 200 <= resp.status_code < 300:
            return
        media = _media_type(resp)
        framing = framing_for(state.dialect, media, flow.request.path)
        if framing is None and media != "application/json" and not media.endswith("+json"):
            return
        body = resp.get_content(strict=False)
        if body is None:
            return
        old = flow.metadata.get(METADATA_KEY) if recorded else None
        old = old if isinstance(old, dict) else {}
        if old:
            try:
                body = rebuild_upstream(body, old)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                logger.warning(
                    "usagefix: %s: cannot rebuild the upstream body (%s); using it as saved", _where(flow), e
                )
        context = replace(state.ctx, strip_usage_chunk=bool(old.get("stream_usage_added")))
        if framing is not None:
            cut = flow.error.msg if recorded and flow.error and old.get("error") == flow.error.msg else None
            new, rw = rewrite_stream(
                state.dialect,
                body,
                complete=not cut,
                max_event_bytes=self.max_event_bytes,
                ctx=context,
                framing=framing,
                where=_where(flow),
            )
            record = self._build(rw, old.get("content_encoding"), cut_off=cut)
        else:
            result = rewrite_body(state.dialect, body, context, where=_where(flow))
            new = body if result.body is None else result.body
            record = build_record(result.outcome)
        if new != resp.get_content(strict=False):
            resp.content = new
        self._record(flow, record)

    def _record(self, flow: http.HTTPFlow, record: UsageRecord) -> None:
        """Put the record on the flow. The flow is saved with a record, always: if this one cannot
        be written (a usage block nested too deep to save), the same without the verbatim usage
        blocks, else a minimal one that says why."""
        state: dict[str, Any] | None = None
        why = ""
        for attempt in range(3):
            try:
                if attempt == 1:
                    update = {"upstream_usage": None, "emitted_usage": None}
                    anomalies = [*record.anomalies, f"usage_blocks_not_recorded: {why}"]
                    record = record.model_copy(update={**update, "anomalies": anomalies})
                elif attempt == 2:
                    error = f"the record could not be written: {why}"
                    record = minimal_record(record.dialect, record.streamed, error, record.changes)
                state = _saveable(record)
                break
            except Exception as e:
                why = f"{type(e).__name__}: {e}"
                logger.warning("usagefix: %s: cannot write the record as it is: %s", _where(flow), why)
        if state is None:
            record = minimal_record(
                record.dialect, record.streamed, f"the record could not be written: {why}"
            )
            state = _saveable(record)
        flow.metadata[METADATA_KEY] = state
        flow.comment = summary(record)
        if record.anomalies or record.status == "passthrough_error":
            flow.marked = ":warning:"
        log = logger.info if record.status in ("rewritten", "passthrough_error") else logger.debug
        log("%s: %s", _where(flow), flow.comment)


def _saveable(record: UsageRecord) -> dict[str, Any]:
    state = record.model_dump(mode="json")
    _check_depth(state)
    return state


# Deeper than this, a record may not be saved: pydantic stops serializing a few hundred levels
# down and mitmproxy's tnetstring writer recurses once per level (an 800-deep usage block,
# verbatim in the record, lost the whole flow). Real usage blocks are three levels deep.
MAX_RECORD_DEPTH = 64


def _check_depth(value: Any) -> None:
    """Raise `ValueError` if `value` (plain JSON data) nests deeper than MAX_RECORD_DEPTH."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_RECORD_DEPTH:
            raise ValueError(f"the record nests deeper than {MAX_RECORD_DEPTH} levels")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
