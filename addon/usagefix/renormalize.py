"""Normalizing a response whose whole body is here: a buffered JSON body, or a recorded one (a flow
loaded from a file, a response served again by server replay), normalized anew from the upstream's
original, which the prior record rebuilds (idempotent on a file written with the addon).

Pure: the response and its prior record in, the body and the record out. The glue (addon.py, with
usagefix.flowread) reads them off the flow and puts the result back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from usagefix.dialects import Context, Dialect, framing_for
from usagefix.prior import PriorRecord, read_prior, rebuild_upstream
from usagefix.record import METADATA_KEY, UsageRecord
from usagefix.recordbuild import build_record, http_error_record
from usagefix.rewriter import rewrite_body, rewrite_stream
from usagefix.stream import stream_record

__all__ = ["Normalized", "WholeResponse", "normalize_whole"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WholeResponse:
    """What the flow says of a response whose whole body is here."""

    dialect: Dialect
    context: Context
    path: str
    """The request's path (some dialects' framing depends on it)."""
    status_code: int
    reason: str
    media_type: str
    """The response's content type, lower case, without parameters."""
    headers: tuple[tuple[str, str], ...]
    """The response's headers, names in lower case (Bedrock InvokeModel reports counts in them)."""
    body: bytes | None
    """The body as saved, decoded; None when it was saved without it ("content missing")."""
    where: str
    """The flow, as log lines name it."""
    metadata: Mapping[str, object] | None = None
    """The flow's metadata when the response is a recorded one (its prior record is read from it);
    None for a live response."""
    error: str | None = None
    """The flow's error message, if any: a recorded stream cut off with this same error stays cut."""
    by_replay: bool = False
    """Served by server replay, not by the upstream."""


@dataclass(frozen=True, slots=True)
class Normalized:
    body: bytes | None
    """The body the client gets; None when it is the body as saved."""
    record: UsageRecord


def _prior_of(resp: WholeResponse) -> PriorRecord | None:
    if resp.metadata is None or METADATA_KEY not in resp.metadata:
        return None
    try:
        return read_prior(resp.metadata[METADATA_KEY])
    except ValueError as e:  # hand-edited, or another schema: as if there were none
        logger.warning("usagefix: %s: unreadable record (%s); normalizing the body as saved", resp.where, e)
        return None


def normalize_whole(resp: WholeResponse, max_event_bytes: int) -> Normalized | None:
    """The body and record of a whole response, or None when there is nothing to normalize (not a
    body the dialect reads, or saved without its body). An error status passes untouched, and the
    record says why."""
    if not 200 <= resp.status_code < 300:
        by = "server replay" if resp.by_replay else "the upstream"
        profile = resp.context.profile.name if resp.context.profile else None
        record = http_error_record(resp.dialect.name, profile, resp.status_code, resp.reason, by)
        return Normalized(None, record)
    media = resp.media_type
    framing = framing_for(resp.dialect, media, resp.path)
    if framing is None and media != "application/json" and not media.endswith("+json"):
        return None
    if resp.body is None:
        return None
    body = resp.body
    prior = _prior_of(resp)
    if prior is not None:
        try:
            body = rebuild_upstream(body, prior)
        except ValueError as e:
            logger.warning(
                "usagefix: %s: cannot rebuild the upstream body (%s); using it as saved", resp.where, e
            )
    context = replace(
        resp.context,
        strip_usage_chunk=prior is not None and prior.stream_usage_added,
        response_headers=resp.headers,
    )
    if framing is not None:
        cut = (
            resp.error if prior is not None and resp.error is not None and prior.error == resp.error else None
        )
        new, rw = rewrite_stream(
            resp.dialect,
            body,
            complete=not cut,
            max_event_bytes=max_event_bytes,
            ctx=context,
            framing=framing,
            where=resp.where,
        )
        changed = None if new == resp.body else new
        return Normalized(changed, stream_record(rw, prior.content_encoding if prior else None, cut_off=cut))
    result = rewrite_body(resp.dialect, body, context, where=resp.where)
    new = body if result.body is None else result.body
    return Normalized(None if new == resp.body else new, build_record(result.result))
