"""Flows to exchange facts and ledger rows: the glue between mitmproxy's objects and the pure ledger.

Live (usagefix.liveledger, used by the addon): at the end of `response` / `error`, a `FlowSnapshot`
takes references to what the row needs (no decoding, no parsing: the hot path stays as fast as
without a ledger) and goes to the writer thread, which decodes, parses, runs the pipeline and writes.
From files (`rows_from_flows`, used by `usagefix ledger import` and reports): the same snapshot,
the same pipeline, flow by flow in file order, so both give the same rows.

A WebSocket (Responses over WebSocket, Realtime) holds many turns: each turn the addon recorded in
`flow.metadata["usagefix_turns"]` is one row, id `<flow id>#<message index>`, live when the
WebSocket ends and from files alike (`turn_snapshots`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitmproxy import exceptions, http
from mitmproxy import io as mio
from mitmproxy.net import encoding

from usagefix.dialects import detect
from usagefix.exchange import ExchangeFacts, ExchangeRow
from usagefix.flowfiles import flow_files
from usagefix.ledger.pipeline import Pipeline
from usagefix.price_overrides import overrides_from_option
from usagefix.record import METADATA_KEY
from usagefix.sessions import SessionTracker
from usagefix.wsturns import TURNS_KEY

__all__ = [
    "FlowSnapshot",
    "facts_from_flow",
    "facts_of",
    "flow_rows",
    "iter_flows",
    "llm_dialect",
    "pipeline_for",
    "rows_from_flows",
    "snapshot",
    "turn_dialect",
    "turn_snapshots",
]


@dataclass(frozen=True, slots=True)
class FlowSnapshot:
    """What a row needs from a flow, taken without decoding or parsing anything."""

    flow_id: str
    ts_start: float
    ts_end: float | None
    method: str
    scheme: str
    host: str
    port: int
    path: str
    request_headers: tuple[tuple[str, str], ...]
    request_raw: bytes | None
    request_encoding: str | None
    status_code: int | None
    response_content_type: str | None
    response_raw: bytes | None
    response_encoding: str | None
    error: str | None
    record: Any
    """`flow.metadata["usagefix"]` as the addon left it (a plain dict), or None."""
    connection: str | None = None
    """For a WebSocket turn, the WebSocket's flow id (`ExchangeFacts.connection`)."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _asked_host(flow: http.HTTPFlow) -> str:
    """The name the client asked for. In transparent (and WireGuard, local) mode `request.host` is
    the destination IP: the SNI, else the Host header, names the upstream. In reverse mode
    `request.host` is the upstream the proxy was set in front of, whatever the client wrote."""
    host = flow.request.host
    mode = getattr(flow.client_conn.proxy_mode, "type_name", "")
    if not _is_ip(host) or mode == "reverse":
        return host
    for name in (flow.client_conn.sni, flow.request.host_header):
        if name:
            bare = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
            if not _is_ip(bare):
                return bare
    return host


def snapshot(flow: http.HTTPFlow) -> FlowSnapshot:
    req, resp = flow.request, flow.response
    ts_end = resp.timestamp_end if resp is not None else None
    if ts_end is None and flow.error is not None:
        ts_end = flow.error.timestamp
    return FlowSnapshot(
        flow_id=flow.id,
        ts_start=req.timestamp_start,
        ts_end=ts_end,
        method=req.method,
        scheme=req.scheme,
        host=_asked_host(flow),
        port=req.port,
        path=req.path,
        request_headers=tuple(req.headers.items(multi=True)),  # type: ignore[no-untyped-call]
        request_raw=req.raw_content,
        request_encoding=req.headers.get("content-encoding"),
        status_code=resp.status_code if resp is not None else None,
        response_content_type=resp.headers.get("content-type") if resp is not None else None,
        response_raw=resp.raw_content if resp is not None else None,
        response_encoding=resp.headers.get("content-encoding") if resp is not None else None,
        error=flow.error.msg if flow.error is not None else None,
        record=flow.metadata.get(METADATA_KEY),
    )


def turn_snapshots(flow: http.HTTPFlow) -> list[FlowSnapshot]:
    """One snapshot per recorded WebSocket turn: the upgrade request's headers (where Codex names
    its session), the client's last text message before the turn as the request body, the
    server's turn message (as the client received it) as the response body, and the turn's record."""
    ws, turns = flow.websocket, flow.metadata.get(TURNS_KEY)
    if ws is None or not isinstance(turns, list):
        return []
    base, out = snapshot(flow), []
    for entry in turns:
        i = entry.get("message_index") if isinstance(entry, dict) else None
        if not isinstance(i, int) or not 0 <= i < len(ws.messages):
            continue
        asked = next((m for m in reversed(ws.messages[:i]) if m.from_client and m.is_text), None)
        said = ws.messages[i]
        out.append(
            dataclasses.replace(
                base,
                flow_id=f"{flow.id}#{i}",
                ts_start=asked.timestamp if asked is not None else base.ts_start,
                ts_end=said.timestamp,
                request_raw=asked.content if asked is not None else None,
                request_encoding=None,
                response_content_type=None,
                response_raw=said.content,
                response_encoding=None,
                error=None,  # a recorded turn ended; the connection's own end is not its error
                record=entry.get("record"),
                connection=flow.id,
            )
        )
    return out


def turn_dialect(snap: FlowSnapshot) -> str | None:
    rec = snap.record
    return rec.get("dialect") if isinstance(rec, dict) and isinstance(rec.get("dialect"), str) else None


def _decoded(raw: bytes | None, coding: str | None) -> bytes | None:
    if raw is None or not coding or coding.strip().lower() == "identity":
        return raw
    try:
        out = encoding.decode(raw, coding.strip().lower())
        return out if isinstance(out, bytes) else None
    except ValueError:
        return None  # undecodable: the row says nothing of the body rather than something wrong


def _json(body: bytes | None) -> Any | None:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def facts_of(snap: FlowSnapshot) -> ExchangeFacts:
    """The facts of a snapshot: the bodies decoded, the request parsed (on the writer thread)."""
    return ExchangeFacts(
        flow_id=snap.flow_id,
        ts_start=snap.ts_start,
        ts_end=snap.ts_end,
        method=snap.method,
        scheme=snap.scheme,
        host=snap.host,
        port=snap.port,
        path=snap.path,
        request_headers=snap.request_headers,
        request_body=_json(_decoded(snap.request_raw, snap.request_encoding)),
        status_code=snap.status_code,
        response_content_type=snap.response_content_type,
        response_body=_decoded(snap.response_raw, snap.response_encoding),
        error=snap.error,
        connection=snap.connection,
    )


def facts_from_flow(flow: http.HTTPFlow) -> ExchangeFacts:
    return facts_of(snapshot(flow))


def llm_dialect(flow: http.HTTPFlow) -> str | None:
    """The dialect of an LLM exchange in a flow file (its record's, else detected from the path),
    or None for other traffic."""
    rec = flow.metadata.get(METADATA_KEY)
    if isinstance(rec, dict) and isinstance(name := rec.get("dialect"), str):
        return name
    dialect = detect(flow.request.method, flow.request.path)
    return dialect.name if dialect is not None else None


def iter_flows(paths: Iterable[Path]) -> Iterator[http.HTTPFlow]:
    """The HTTP flows of flow files and of the flow files in directories (`flow_files`), in
    order. An unreadable file raises, naming it."""
    for path in (f for given in paths for f in flow_files(given)):
        try:
            with path.open("rb") as f:
                for flow in mio.FlowReader(f).stream():
                    if isinstance(flow, http.HTTPFlow):
                        yield flow
        except exceptions.FlowReadException as e:
            raise exceptions.FlowReadException(f"{path}: {e}") from None  # type: ignore[no-untyped-call]


def pipeline_for(session_headers: Iterable[str] = (), prices: str | None = None) -> Pipeline:
    """The pipeline with the user's `usage_session_header` names and `usage_prices` table, as the
    live addon builds it; ValueError (one line) for a price file it cannot use."""
    return Pipeline(SessionTracker(extra_headers=tuple(session_headers)), overrides_from_option(prices))


def flow_rows(flow: http.HTTPFlow, pipeline: Pipeline) -> list[ExchangeRow]:
    """The rows of one flow: one per recorded turn of a WebSocket, one for an LLM exchange, none
    for other traffic."""
    if flow.websocket is not None:  # its turns are the exchanges, not the upgrade
        snaps = [(s, name) for s in turn_snapshots(flow) if (name := turn_dialect(s)) is not None]
        return [pipeline.row(facts_of(s), s.record, name) for s, name in snaps]
    dialect = llm_dialect(flow)
    if dialect is None:
        return []
    snap = snapshot(flow)
    return [pipeline.row(facts_of(snap), snap.record, dialect)]


def rows_from_flows(paths: Iterable[Path], pipeline: Pipeline | None = None) -> Iterator[ExchangeRow]:
    """One row per LLM exchange in the flow files, by the pipeline the live addon runs."""
    pipeline = pipeline if pipeline is not None else Pipeline()
    for flow in iter_flows(paths):
        yield from flow_rows(flow, pipeline)
