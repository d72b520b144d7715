"""Where `usagefix renormalize` writes: never over its input unless asked, and then atomically.

`mitmdump -nr same.mitm -w same.mitm` opens the output for writing, which empties the input
before a flow is read: the capture is lost (a 0-byte file). So the output is another file by
default, one that is the input itself (by path, link or hard link) is refused unless
`--in-place` says so, and every output is written beside its destination and moved into place
(`os.replace`), so that an interrupted run leaves the old file whole.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SUFFIX", "OutputError", "output_for", "same_file"]

SUFFIX = ".renormalized"
"""Added to the input's name (before its extension) for the default output."""


class OutputError(ValueError):
    """An output that would overwrite the input, or options that contradict each other."""


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file: the same path once resolved, or (both existing) one
    inode, as a hard link or a bind mount gives."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def output_for(src: Path, out: Path | None, *, in_place: bool) -> Path:
    """The file to write the re-normalized flows of `src` to; `OutputError` when it may not be."""
    if in_place:
        if out is not None and not same_file(src, out):
            raise OutputError("--in-place rewrites IN itself; give -o OUT or --in-place, not both")
        return src
    if out is None:
        return src.with_name(src.stem + SUFFIX + (src.suffix or ".mitm"))
    if same_file(src, out):
        raise OutputError(
            f"{out}: this is the input file; write elsewhere (-o OUT), or pass --in-place "
            "to replace it atomically"
        )
    return out
