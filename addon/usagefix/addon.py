"""The mitmproxy glue: arm a rewriter on LLM responses, record what it did.

Every wire-safety rule here comes from a verified mitmproxy behaviour (reference/mitmproxy-notes.md):
the stream callable never returns an empty piece mid-stream, `content-length` goes when sizes may
change, a failure forwards the original bytes, loaded flows are left alone.

Thin hooks, one idea per module beside them: the stream callable (usagefix.stream), a whole body
normalized anew (usagefix.renormalize), the stream-usage request (usagefix.streamusage), the saved
record (usagefix.saving) and the start banner (usagefix.banner) are pure; what a flow says
(usagefix.flowread), its credentials masked (usagefix.flowredact), the options
(usagefix.optionhooks), replays (usagefix.replayhooks), WebSocket turns (usagefix.wshooks) and the
ledger (usagefix.liveledger) are glue too.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import replace
from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from usagefix.banner import Listener, banner, ca_cert_path, capture_path
from usagefix.comment import summary
from usagefix.decoding import make_decoder
from usagefix.dialects import framing_for
from usagefix.flowread import (
    FlowState,
    flow_state,
    is_llm,
    media_type,
    request_json,
    where,
    whole_response,
)
from usagefix.flowredact import redact
from usagefix.framing import DEFAULT_MAX_EVENT_BYTES
from usagefix.liveledger import LiveLedger
from usagefix.optionhooks import checked_options, declare_options
from usagefix.options import DEFAULT_MAX_SAVED_BODY_BYTES, OPTIONS
from usagefix.profiles import ProfileSet
from usagefix.reclaim import Reclaimer
from usagefix.record import METADATA_KEY, UsageRecord
from usagefix.renormalize import normalize_whole
from usagefix.replayed import RecordIndex
from usagefix.replayhooks import adopt_recorded, forget_record, replay_records
from usagefix.rewriter import StreamRewriter
from usagefix.saving import saveable, untouched_record
from usagefix.stream import ResponseStream, stream_of, stream_record
from usagefix.streamusage import ask_for_stream_usage
from usagefix.talk import Tally, live_line
from usagefix.wshooks import record_turn

__all__ = ["UsageFix"]

logger = logging.getLogger(__name__)


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
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, FlowState] = weakref.WeakKeyDictionary()
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
        profiles = checked_options(ours, self.profiles, self.ledger)  # refuses what cannot run
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

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        if flow.is_replay == "request":
            forget_record(flow)
        self._in_flight.add(flow)
        if is_llm(flow, self.profiles):
            # A compressed stream cannot be rewritten without decoding it: ask for none (the
            # response is decoded anyway if the upstream compresses regardless).
            flow.request.anticomp()

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        state = flow_state(flow, self.profiles)
        if state is None:
            return
        if self.request_stream_usage and state.dialect.name == "openai_chat" and flow.is_replay != "response":
            body = request_json(flow)
            asked = ask_for_stream_usage(body) if body is not None else None
            if asked is not None:
                flow.request.content = asked
                state = FlowState(state.dialect, replace(state.context, strip_usage_chunk=True))
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
            framing = framing_for(state.dialect, media_type(resp), flow.request.path)
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
                        where(flow),
                        encoding,
                    )
                    resp.stream = True
                    why = f"content-encoding {encoding!r} cannot be decoded here: passed through untouched"
                    self._record(
                        flow,
                        untouched_record(
                            state.dialect.name, state.context, "undecodable_encoding", why, encoding
                        ),
                        state.context.model,
                    )
                    return
            rewriter = StreamRewriter(
                state.dialect, self.max_event_bytes, state.context, framing, where=where(flow)
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
            resp.stream = stream.__call__  # a bound method: called faster than the instance (`stream_of`)
        except Exception as e:  # fail open: stream it untouched, as bare mitmdump would, and say why
            resp.headers = headers
            resp.stream = True
            why = f"responseheaders failed: {type(e).__name__}: {e}"
            logger.warning("usagefix: %s: %s; streaming it untouched", where(flow), why)
            self._record(
                flow,
                untouched_record(state.dialect.name, state.context, "passthrough_error", why),
                state.context.model,
            )

    def response(self, flow: http.HTTPFlow) -> None:
        # Keep this fast: the client sees the end of the stream only after it returns.
        state = self._flows.pop(flow, None)
        try:
            resp = flow.response
            if resp is None:
                return
            stream = stream_of(resp.stream)
            if stream is not None:
                self._record_stream(flow, stream)
            elif not flow.live or flow.is_replay == "response":
                # A flow loaded from a file, or a recorded response served again: normalize the
                # upstream's original anew (idempotent on a file written with the addon).
                state = flow_state(flow, self.profiles)
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
        stream = stream_of(resp.stream) if resp is not None else None
        if stream is None or stream.recorded:
            return
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
            print("\n".join(banner(listeners, capture, ca_cert_path(ctx.options.confdir))), flush=True)

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
        self._record(flow, record, stream.rewriter.ctx.model, stream.rewriter.where)

    def _normalize_whole(self, flow: http.HTTPFlow, state: FlowState, *, recorded: bool) -> None:
        """Normalize a response whose whole body is here: buffered JSON, or a recorded stream (see
        usagefix.renormalize)."""
        resp = flow.response
        assert resp is not None
        done = normalize_whole(whole_response(flow, state, recorded=recorded), self.max_event_bytes)
        if done is None:
            return
        if done.body is not None:
            resp.content = done.body
        self._record(flow, done.record, state.context.model)

    def _record(self, flow: http.HTTPFlow, record: UsageRecord, model: str | None, name: str = "") -> None:
        """Put the record on the flow. The flow is saved with a record, always: if this one cannot
        be written (a usage block nested too deep to save), the same without the verbatim usage
        blocks, else a minimal one that says why. `model` is the one the request asked for, for
        the log line: read with the flow's state (an agent's request body can be hundreds of KB,
        not parsed again here). `name` names the flow in log lines (its rewriter has it for a
        stream; otherwise it is made here)."""
        name = name or where(flow)
        record, state = saveable(record, name)
        flow.metadata[METADATA_KEY] = state
        flow.comment = summary(record)
        if record.anomalies or record.status == "passthrough_error":
            flow.marked = ":warning:"
        if self.log_lines:
            self._tally.add(record)
            code = flow.response.status_code if flow.response else None
            logger.info(live_line(record, model, code))
            return
        log = logger.info if record.status in ("rewritten", "passthrough_error") else logger.debug
        log("usagefix: %s: %s", name, flow.comment)
