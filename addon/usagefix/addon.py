"""The mitmproxy glue: arm a rewriter on LLM responses, record what it did.

Every wire-safety rule here comes from a verified mitmproxy behaviour (reference/mitmproxy-notes.md):
the stream callable never returns an empty piece mid-stream, `content-length` goes when sizes may
change, a failure forwards the original bytes, loaded flows are left alone.

Thin hooks, one idea per module beside them: the stream callable (usagefix.stream), a whole body
normalized anew (usagefix.renormalize), the stream-usage request (usagefix.streamusage), the saved
record (usagefix.saving) are pure; the options (usagefix.optionhooks), replays
(usagefix.replayhooks) and WebSocket turns (usagefix.wshooks) are glue too.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net.http import url

from usagefix.decoding import make_decoder
from usagefix.dialects import DIALECTS, Context, Dialect, detect, framing_for, model_from_path
from usagefix.flowfacts import LiveLedger
from usagefix.framing import DEFAULT_MAX_EVENT_BYTES
from usagefix.optionhooks import declare_options, refuse
from usagefix.options import (
    DEFAULT_MAX_SAVED_BODY_BYTES,
    OPTIONS,
    OptionError,
    check_value,
    header_names,
)
from usagefix.profiles import ProfileError, ProfileSet, load_profiles
from usagefix.reclaim import Reclaimer
from usagefix.record import (
    METADATA_KEY,
    UsageRecord,
    summary,
)
from usagefix.redaction import redact_fields, redact_message_state, redact_path
from usagefix.renormalize import WholeResponse, normalize_whole
from usagefix.replayed import RecordIndex
from usagefix.replayhooks import adopt_recorded, forget_record, replay_records
from usagefix.rewriter import StreamRewriter
from usagefix.saving import saveable, untouched_record
from usagefix.stream import ResponseStream, stream_record
from usagefix.streamusage import ask_for_stream_usage
from usagefix.talk import Listener, Tally, banner, capture_path, live_line
from usagefix.wshooks import record_turn

__all__ = ["UsageFix"]

logger = logging.getLogger(__name__)


def _asked_names(flow: http.HTTPFlow) -> tuple[str, ...]:
    """The names the client asked for: the Host header's (or :authority's) and the TLS SNI. In
    transparent mode `request.host` is the destination IP, so profiles match these too."""
    names = []
    if flow.request.host_header:
        host, _ = url.parse_authority(flow.request.host_header, check=False)
        names.append(host)
    if flow.client_conn.sni:
        names.append(flow.client_conn.sni)
    return tuple(dict.fromkeys(n for n in names if n and n != flow.request.host))


def _where(flow: http.HTTPFlow) -> str:
    """The flow, as log lines name it."""
    return f"{flow.request.method} {flow.request.pretty_url}"


def _media_type(message: http.Message) -> str:
    return str(message.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def redact(flow: http.HTTPFlow) -> None:
    """Mask credentials in the flow as it will be saved (the request was sent, so harmless)."""
    req = flow.request
    if (fields := redact_fields(req.headers.fields)) is not None:
        req.headers.fields = fields
    if (path := redact_path(req.path)) is not None:
        req.path = path
    if flow.response is not None and (fields := redact_fields(flow.response.headers.fields)) is not None:
        flow.response.headers.fields = fields
    # A backup (client replay, edits) is saved with the flow: it holds the originals too.
    backup = getattr(flow, "_backup", None)
    if isinstance(backup, dict):
        redact_message_state(backup.get("request"), is_request=True)
        redact_message_state(backup.get("response"), is_request=False)


@dataclass(frozen=True, slots=True)
class _FlowState:
    dialect: Dialect
    context: Context


def _request_json(flow: http.HTTPFlow) -> dict[str, Any] | None:
    try:
        body = flow.request.get_content(strict=False)
        obj = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON, or nested past Python's limit
        return None
    return obj if isinstance(obj, dict) else None


class UsageFix:
    """Rewrites the usage of LLM responses into normalized, self-consistent, cumulative totals."""

    def __init__(self) -> None:
        self.max_event_bytes = DEFAULT_MAX_EVENT_BYTES
        self.max_saved_body_bytes = DEFAULT_MAX_SAVED_BODY_BYTES
        self.redact_secrets = True
        self.request_stream_usage = False
        self.log_lines = False
        self._tally = Tally()
        self.profiles = ProfileSet()
        self.ledger = LiveLedger()  # off until `usage_ledger` names one
        # Per-flow state lives here, not in flow.metadata, which must stay serializable.
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, _FlowState] = weakref.WeakKeyDictionary()
        self._in_flight: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()
        self._open_websockets: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()
        """WebSockets with recorded turns that have not ended: their turns go to the ledger then."""
        self._replayed = RecordIndex()
        """The records of the server-replay files, for the responses they serve."""
        self.reclaim = Reclaimer()
        """Runs CPython's full collection as the bodies of finished streamed flows add up: only it
        frees mitmproxy's finished flows (see usagefix.reclaim)."""

    def load(self, loader: Loader) -> None:
        declare_options(loader)

    def configure(self, updated: set[str]) -> None:
        ours = updated & OPTIONS.keys()
        try:  # check every changed option before any takes effect
            for name in ours:
                check_value(OPTIONS[name], getattr(ctx.options, name))
            profiles = self.profiles
            if "usage_profiles" in ours:
                path = ctx.options.usage_profiles
                try:
                    profiles = ProfileSet(load_profiles(Path(path).expanduser()) if path else None)
                except ProfileError as e:
                    raise OptionError(f"usage_profiles: {e}") from None
            if ours & {"usage_ledger", "usage_ledger_spool_rows", "usage_session_header", "usage_prices"}:
                try:
                    self.ledger.configure(
                        ctx.options.usage_ledger,
                        ctx.options.usage_ledger_spool_rows,
                        session_headers=header_names(ctx.options.usage_session_header),
                        prices=ctx.options.usage_prices,
                    )
                except ValueError as e:
                    raise OptionError(str(e)) from None
        except OptionError as e:
            refuse([str(e)])
        if "usage_max_event_bytes" in ours:
            self.max_event_bytes = ctx.options.usage_max_event_bytes
        if "usage_max_saved_body_bytes" in ours:
            self.max_saved_body_bytes = ctx.options.usage_max_saved_body_bytes
        if "usage_redact_secrets" in ours:
            self.redact_secrets = ctx.options.usage_redact_secrets
        if "usage_request_stream_usage" in ours:
            self.request_stream_usage = ctx.options.usage_request_stream_usage
        if "usage_log_lines" in ours:
            self.log_lines = ctx.options.usage_log_lines
        self.profiles = profiles
        if "server_replay" in updated and hasattr(ctx.options, "server_replay"):
            self._replayed = replay_records(ctx.options.server_replay)

    # -- request -------------------------------------------------------------------------

    def _is_llm(self, flow: http.HTTPFlow) -> bool:
        req = flow.request
        return detect(req.method, req.path) is not None or self.profiles.may_set_dialect(
            req.host, req.port, req.path, _asked_names(flow)
        )

    def _state(self, flow: http.HTTPFlow) -> _FlowState | None:
        """Dialect and context of a request: detected from its path, or set by a profile."""
        req = flow.request
        if not self._is_llm(flow):
            return None  # other traffic: not even its body is parsed
        body = _request_json(flow) or {}
        model = body["model"] if isinstance(body.get("model"), str) else model_from_path(req.path)
        profile = self.profiles.match(req.host, req.port, req.path, model, _asked_names(flow))
        dialect = DIALECTS[profile.dialect] if profile and profile.dialect else detect(req.method, req.path)
        if dialect is None:
            return None
        return _FlowState(dialect, Context(profile=profile, model=model))

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        if flow.is_replay == "request":
            forget_record(flow)
        self._in_flight.add(flow)
        if self._is_llm(flow):
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
            asked = ask_for_stream_usage(body) if body is not None else None
            if asked is not None:
                flow.request.content = asked
                state = _FlowState(state.dialect, replace(state.context, strip_usage_chunk=True))
        self._flows[flow] = state

    # -- response ------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = self._flows.get(flow)
        resp = flow.response
        if state is None or resp is None or not flow.live or flow.is_replay == "response":
            return
        if not 200 <= resp.status_code < 300:
            return  # errors pass untouched
        headers = resp.headers.copy()
        try:
            framing = framing_for(state.dialect, _media_type(resp), flow.request.path)
            if framing is None:
                return  # a whole JSON body: buffered, rewritten in `response`
            decoder = None
            encoding = resp.headers.get("content-encoding", "").strip().lower() or None
            if encoding and encoding != "identity":
                decoder = make_decoder(encoding)
                if decoder is None:
                    # Streamed as bare mitmdump would: the client decodes it, we cannot.
                    logger.warning(
                        "usagefix: %s: cannot decode content-encoding %r; streaming it untouched",
                        _where(flow),
                        encoding,
                    )
                    resp.stream = True
                    why = f"content-encoding {encoding!r} cannot be decoded here: passed through untouched"
                    self._record(
                        flow,
                        untouched_record(
                            state.dialect.name, state.context, "undecodable_encoding", why, encoding
                        ),
                    )
                    return
            rewriter = StreamRewriter(
                state.dialect, self.max_event_bytes, state.context, framing, where=_where(flow)
            )
            stream = ResponseStream(
                rewriter, decoder, encoding if decoder else None, self.max_saved_body_bytes
            )
            if decoder is not None:
                del resp.headers["content-encoding"]
            # The size changes when usage is rewritten: the client must not rely on content-length.
            resp.headers.pop("content-length", None)
            if flow.request.http_version == "HTTP/1.1":
                resp.headers["transfer-encoding"] = "chunked"  # keeps the connection alive
            resp.stream = stream
        except Exception as e:  # fail open: stream it untouched, as bare mitmdump would, and say why
            resp.headers = headers
            resp.stream = True
            why = f"responseheaders failed: {type(e).__name__}: {e}"
            logger.warning("usagefix: %s: %s; streaming it untouched", _where(flow), why)
            self._record(flow, untouched_record(state.dialect.name, state.context, "passthrough_error", why))

    def response(self, flow: http.HTTPFlow) -> None:
        # Keep this fast: the client sees the end of the stream only after it returns.
        state = self._flows.pop(flow, None)
        try:
            resp = flow.response
            if resp is None:
                return
            stream = resp.stream
            if isinstance(stream, ResponseStream):
                self._record_stream(flow, stream)
            elif not flow.live or flow.is_replay == "response":
                # A flow loaded from a file, or a recorded response served again: normalize the
                # upstream's original anew (idempotent on a file written with the addon).
                state = self._state(flow)
                if state is not None:
                    if flow.is_replay == "response":
                        adopt_recorded(flow, self._replayed)
                    self._normalize_whole(flow, state, recorded=True)
            elif state is not None and not resp.stream:
                self._normalize_whole(flow, state, recorded=False)
        finally:
            self._in_flight.discard(flow)
            if self.redact_secrets:
                redact(flow)
            if state is not None and flow.live:  # the ledger's writer thread does the rest
                self.ledger.record(flow, state.dialect.name)

    def error(self, flow: http.HTTPFlow) -> None:
        state = self._flows.pop(flow, None)
        try:
            self._error(flow)
        finally:
            if state is not None and flow.live:
                self.ledger.record(flow, state.dialect.name)

    def _error(self, flow: http.HTTPFlow) -> None:
        self._in_flight.discard(flow)
        if self.redact_secrets:
            redact(flow)
        resp = flow.response
        if resp is None or not isinstance(resp.stream, ResponseStream) or resp.stream.recorded:
            return
        stream = resp.stream
        if stream.rewriter.ended:
            # The client hung up after the stream's last event (the OpenAI SDK closes on `[DONE]`,
            # often before the upstream's end of body): a complete response, not a cut-off one.
            self._record_stream(flow, stream)
        else:
            self._record_stream(flow, stream, cut_off=flow.error.msg if flow.error else "stream interrupted")

    def running(self) -> None:
        self.reclaim.start()
        server = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        if not self.log_lines or server is None:
            return
        listeners = [
            Listener(s.mode.type_name, s.mode.data, str(addr[0]), int(addr[1]))
            for s in server.servers
            for addr in s.listen_addrs[:1]  # the first of each server's (IPv4 and IPv6: one)
        ]
        if listeners:  # none with -n
            capture = capture_path(ctx.options.save_stream_file, Path.cwd())
            ca = os.path.join(os.path.expanduser(ctx.options.confdir), "mitmproxy-ca-cert.pem")
            print("\n".join(banner(listeners, capture, ca)), flush=True)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        """A server message on an LLM WebSocket (Responses, Realtime): one turn's usage, read,
        normalized and recorded in `flow.metadata["usagefix_turns"]` (see usagefix.wshooks)."""
        if record_turn(flow, self.profiles):
            self._open_websockets.add(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        """The WebSocket closed: each recorded turn becomes a ledger row (on the writer thread)."""
        self._open_websockets.discard(flow)
        if flow.live:
            self.ledger.record_turns(flow)

    def done(self) -> None:
        for flow in list(self._open_websockets):  # still open at shutdown: their turns are kept
            self.ledger.record_turns(flow)
        if self.log_lines:
            logger.info(self._tally.summary())
        # Flows still open at shutdown are saved by mitmproxy after this: mask them too.
        if self.redact_secrets:
            for flow in list(self._in_flight):
                redact(flow)
        self.ledger.close()  # writes what is queued

    def _record_stream(self, flow: http.HTTPFlow, stream: ResponseStream, cut_off: str | None = None) -> None:
        """Record a streamed response once: the body the client got (when kept), and what was done."""
        assert flow.response is not None
        stream.recorded = True
        body = stream.take_body()
        flow.response.raw_content = body
        self.reclaim.add(len(body) if body is not None else 0)
        record = stream_record(stream.rewriter, stream.content_encoding, cut_off)
        if stream.too_large:
            anomalies = [*record.anomalies, f"body_not_saved:{stream.too_large}"]
            record = record.model_copy(update={"body_saved": False, "anomalies": anomalies})
        self._record(flow, record)

    def _normalize_whole(self, flow: http.HTTPFlow, state: _FlowState, *, recorded: bool) -> None:
        """Normalize a response whose whole body is here: buffered JSON, or a recorded stream (see
        usagefix.renormalize)."""
        resp = flow.response
        assert resp is not None
        whole = WholeResponse(
            state.dialect,
            state.context,
            flow.request.path,
            resp.status_code,
            resp.reason,
            _media_type(resp),
            tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in resp.headers.fields),
            resp.get_content(strict=False) if 200 <= resp.status_code < 300 else None,
            _where(flow),
            metadata=flow.metadata if recorded else None,
            error=flow.error.msg if flow.error else None,
            by_replay=flow.is_replay == "response",
        )
        done = normalize_whole(whole, self.max_event_bytes)
        if done is None:
            return
        if done.body is not None:
            resp.content = done.body
        self._record(flow, done.record)

    def _record(self, flow: http.HTTPFlow, record: UsageRecord) -> None:
        """Put the record on the flow. The flow is saved with a record, always: if this one cannot
        be written (a usage block nested too deep to save), the same without the verbatim usage
        blocks, else a minimal one that says why."""
        record, state = saveable(record, _where(flow))
        flow.metadata[METADATA_KEY] = state
        flow.comment = summary(record)
        if record.anomalies or record.status == "passthrough_error":
            flow.marked = ":warning:"
        if self.log_lines:
            self._tally.add(record)
            code = flow.response.status_code if flow.response else None
            logger.info(live_line(record, _model(flow), code))
            return
        log = logger.info if record.status in ("rewritten", "passthrough_error") else logger.debug
        log("usagefix: %s: %s", _where(flow), flow.comment)


def _model(flow: http.HTTPFlow) -> str | None:
    """The model the request asked for (its body, or a Gemini/Bedrock path), for the log."""
    body = _request_json(flow) or {}
    return body["model"] if isinstance(body.get("model"), str) else model_from_path(flow.request.path)
