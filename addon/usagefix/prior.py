"""The record saved with a flow, read back: what re-normalizing it needs, and the upstream's body
rebuilt from the body the client received and the record's changes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from usagefix.record import SCHEMA_VERSION

__all__ = ["PriorChange", "PriorRecord", "read_prior", "rebuild_upstream"]


class _Lenient(BaseModel):
    # Strict types (a hand-edited "12" is not an offset), other keys ignored (a later schema's).
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class PriorChange(_Lenient):
    index: int
    offset: int
    original: str
    rewritten: str


class PriorRecord(_Lenient):
    """What re-normalizing a saved flow reads from its record: enough to rebuild the upstream's
    body and to redo the response as it was recorded."""

    schema_version: int = SCHEMA_VERSION
    changes: list[PriorChange] = []
    held_back: str | None = None
    held_back_base64: str | None = None
    stream_usage_added: bool = False
    error: str | None = None
    content_encoding: str | None = None


def read_prior(saved: object) -> PriorRecord:
    """The record saved with a flow, read for re-normalizing it.

    Raises `ValueError` with a one-line reason when it is not a record this version can use
    (hand-edited, or written by a schema with other types): treat the flow as having none.
    """
    if isinstance(saved, PriorRecord):
        return saved
    try:
        return PriorRecord.model_validate(saved)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise ValueError(f"{where}: {first['msg']} ({e.error_count()} error(s))") from None


def rebuild_upstream(client_body: bytes, record: PriorRecord | Mapping[str, Any]) -> bytes:
    """The body the upstream sent, from the body the client received and the record of changes.

    Each change says where, in the client's body, the text that replaced the upstream's starts
    (`offset`) and what it was (`rewritten`, "" for a dropped event). Event k was emitted after
    every byte of the events before it, so `offset[k+1] >= offset[k] + len(rewritten[k])`: in the
    order (offset, index) the spans follow each other without overlap. Offsets tie only behind a
    zero-length span (a dropped event, `usage_request_stream_usage`), and there the event of the
    lower index came first upstream. So one pass in (offset, index) order, copying the client's
    bytes up to each span and the upstream's original in its place, rebuilds the upstream's body
    exactly (sorting by offset alone put a dropped event after its successor: the rebuild failed).

    Raises `ValueError` when the record does not match the body (one or the other was edited), or
    is not a record (`read_prior`).
    """
    prior = read_prior(record)
    changes = sorted((c.offset, c.index, c.rewritten.encode(), c.original.encode()) for c in prior.changes)
    pieces: list[bytes] = []
    pos = 0
    for off, _, rewritten, original in changes:
        if not pos <= off <= len(client_body):
            raise ValueError(f"the record's change at byte {off} overlaps another or lies outside the body")
        if client_body[off : off + len(rewritten)] != rewritten:
            raise ValueError(f"the record's change at byte {off} does not match the body")
        pieces += (client_body[pos:off], original)
        pos = off + len(rewritten)
    pieces.append(client_body[pos:])
    if prior.held_back_base64:  # bytes that are not UTF-8, exactly
        pieces.append(base64.b64decode(prior.held_back_base64, validate=True))
    elif prior.held_back:
        pieces.append(prior.held_back.encode())
    return b"".join(pieces)
