"""mitmweb's flow list columns, with the Comment column (where the addon's one-line summary is) on.

mitmweb's `web_columns` is a sequence option: `--set web_columns=path,comment` is one column
named "path,comment", which mitmweb shows as a blank table; the option has to be repeated per
column. The Comment column is off by default, at the bottom of Options → Columns.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["COMMENT", "with_comment"]

COMMENT = "comment"


def with_comment(columns: Sequence[str], available: Sequence[str]) -> list[str] | None:
    """The user's columns, in their order, with any `a,b` entry split into its columns (when each
    is one mitmweb knows) and the Comment column appended if it is missing; None when they need no
    change."""
    out: list[str] = []
    for col in columns:
        parts = [p.strip() for p in col.split(",")]
        out += parts if len(parts) > 1 and all(p in available for p in parts) else [col]
    out = list(dict.fromkeys(out))
    if COMMENT not in out and COMMENT in available:
        out.append(COMMENT)
    return None if out == list(columns) else out
