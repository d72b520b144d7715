"""The record as the flow saves it: always one, however odd what it holds.

Pure: the glue (addon.py) puts the state this returns in `flow.metadata["usagefix"]`.
"""

from __future__ import annotations

import logging
from typing import Any

from usagefix.dialects import Context
from usagefix.record import Status, UsageRecord
from usagefix.recordbuild import build_record, minimal_record
from usagefix.rewriter import RewriteResult

__all__ = ["MAX_RECORD_DEPTH", "saveable", "untouched_record"]

logger = logging.getLogger(__name__)

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


def _state(record: UsageRecord) -> dict[str, Any]:
    state = record.model_dump(mode="json")
    # Only the verbatim usage blocks can nest deeper than the record's own fields do.
    _check_depth([state["upstream_usage"], state["emitted_usage"]])
    return state


def saveable(record: UsageRecord, where: str) -> tuple[UsageRecord, dict[str, Any]]:
    """The record and its saveable state. If this one cannot be written (a usage block nested too
    deep to save), the same without the verbatim usage blocks, else a minimal one that says why.
    `where` names the flow in the log lines."""
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
            return record, _state(record)
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
            logger.warning("usagefix: %s: cannot write the record as it is: %s", where, why)
    record = minimal_record(record.dialect, record.streamed, f"the record could not be written: {why}")
    return record, _state(record)


def untouched_record(
    dialect: str, context: Context, status: Status, why: str, encoding: str | None = None
) -> UsageRecord:
    """The record of a stream passed through untouched before its first byte: nothing was read."""
    profile = context.profile.name if context.profile else None
    rec = build_record(RewriteResult(dialect, streamed=True, profile=profile, error=why))
    anomalies = [f"undecodable_encoding:{encoding}"] if encoding else []
    return rec.model_copy(update={"status": status, "anomalies": anomalies, "events": None})
