"""A whole (non-streamed) JSON body: its usage rewritten by its dialect, or left as it was.

Fail open: a body the dialect cannot read is recorded (`invalid_usage`, `unparseable_body`) and
left untouched; any other exception is a bug, logged, and the body goes as it came.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from usagefix.dialects import NO_CONTEXT, Context, Dialect
from usagefix.normalize import UsageShapeError
from usagefix.result import RewriteResult, changed_span

__all__ = ["RewrittenBody", "describe", "rewrite_body"]

logger = logging.getLogger("usagefix.rewriter")


def describe(exc: BaseException) -> str:
    """An exception in one line, as a record's `error` says it."""
    return "".join(traceback.format_exception_only(exc)).strip()


@dataclass(frozen=True, slots=True)
class RewrittenBody:
    body: bytes | None
    """The new body, or None to leave the response exactly as it was."""
    result: RewriteResult


def rewrite_body(
    dialect: Dialect, body: bytes, ctx: Context = NO_CONTEXT, *, where: str = ""
) -> RewrittenBody:
    """Rewrite the usage of a whole JSON body; never raises."""
    out = RewriteResult(dialect.name, streamed=False, profile=ctx.profile.name if ctx.profile else None)
    try:
        text = body.decode("utf-8")
        new = dialect.normalize_body(text, out.tally, ctx)
        if new is None:
            return RewrittenBody(None, out)
        new_body = new.encode("utf-8")
        change = changed_span(0, 0, body, new_body)
    except UsageShapeError as e:
        out.tally.flag(f"invalid_usage: {e}")
        return RewrittenBody(None, out)
    except (ValueError, UnicodeDecodeError) as e:
        out.tally.flag(f"unparseable_body: {describe(e)}")
        return RewrittenBody(None, out)
    except Exception as e:
        out.error = describe(e)
        logger.warning(
            "usagefix: %s: rewriting a body failed, forwarding it untouched: %s", where or "a body", out.error
        )
        return RewrittenBody(None, out)
    out.changes.append(change)
    return RewrittenBody(new_body, out)
